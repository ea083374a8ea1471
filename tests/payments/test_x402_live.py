"""x402 through the real ASGI stack (uvicorn, the lean /v1 path in front of Django): a keyless request reaches the
x402 door, a paid one is served, and the openai SDK with a key is served as before."""

import base64
import json
from decimal import Decimal

import httpx
import openai
import pytest

from clients import ledger
from payments.models import X402Payer
from tests.inference.conftest import MODEL, fund, live_node, settle_usage, usage_journal_clean  # noqa: F401
from tests.support.stub_facilitator import StubFacilitator, payment_header

pytestmark = [
    pytest.mark.live_server,
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("usage_journal_clean"),
]
PAY_TO = "0x" + "ab" * 20
PAYER = "0x" + "12" * 20
BODY = {"model": MODEL, "messages": [{"role": "user", "content": "Say something nice"}], "max_tokens": 40}


@pytest.fixture(scope="module")
def facilitator():  # type: ignore[no-untyped-def]
    stub = StubFacilitator().start()
    yield stub
    stub.stop()


@pytest.fixture(scope="module")
def x402_service(django_db_setup, django_db_blocker, tmp_path_factory, facilitator):  # type: ignore[no-untyped-def]
    from tests.inference.conftest import start_service
    from tests.llm_models.conftest import _stop

    with django_db_blocker.unblock():
        process = start_service(
            tmp_path_factory.mktemp("uvicorn-x402") / "server.log",
            X402_PAY_TO=PAY_TO,
            X402_FACILITATOR_URL=facilitator.url,
        )
    try:
        yield process
    finally:
        _stop(process)


@pytest.fixture
def node(provider, private_endpoints, stub_node_factory):  # type: ignore[no-untyped-def]
    stub = stub_node_factory()
    stub.behaviour.answer = "You are great"
    return live_node(owner=provider[0], stub=stub), stub


def test_keyless_request_gets_402_then_pays_over_the_real_server(x402_service, node, facilitator):
    url = f"{x402_service.base_url}/v1/chat/completions"

    first = httpx.post(url, json=BODY, timeout=30)

    assert first.status_code == 402, first.text
    required = first.json()["accepts"][0]
    assert required["payTo"] == PAY_TO and required["resource"] == url
    assert not node[1].chat_requests

    header = payment_header(payer=PAYER, pay_to=PAY_TO, value=required["maxAmountRequired"])
    paid = httpx.post(url, json=BODY, headers={"X-PAYMENT": header}, timeout=30)

    assert paid.status_code == 200, paid.text
    assert paid.json()["choices"][0]["message"]["content"] == "You are great"
    assert json.loads(base64.b64decode(paid.headers["X-PAYMENT-RESPONSE"]))["success"] is True
    payer = X402Payer.objects.get(address=PAYER)
    assert ledger.balance_of(client_id=payer.client.pk) < Decimal(required["maxAmountRequired"]) / 10**6


def test_the_openai_sdk_with_a_key_is_served_as_before(x402_service, node, user_client, facilitator):
    client, key = user_client
    fund(client, "1.00")
    before = len(facilitator.received)
    sdk = openai.OpenAI(base_url=f"{x402_service.base_url}/v1", api_key=key, max_retries=0, timeout=30)

    reply = sdk.chat.completions.create(model=MODEL, messages=BODY["messages"], max_tokens=40)

    assert reply.choices[0].message.content == "You are great"
    assert len(facilitator.received) == before
    settle_usage()
    assert ledger.balance_of(client_id=client.pk) < Decimal("1.00")
