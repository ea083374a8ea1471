"""x402 on POST /v1/chat/completions (the Django view): 402 with requirements, then a paid retry verified and
settled through a stub facilitator and served by a stub node, billed from the payer address's account."""

import base64
import json
from decimal import Decimal

import pytest

from clients import ledger
from clients.choices import LedgerAccountKind, LedgerTransactionKind
from clients.models import LedgerEntry, LedgerTransaction
from inference.models import InferenceRequest
from payments.choices import X402PaymentStatus
from payments.models import X402Payer, X402Payment
from tests.clients.ledger_helpers import account_sum, assert_books_balanced
from tests.conftest import bearer
from tests.inference.conftest import MODEL, live_node
from tests.support.stub_facilitator import payment_header

URL = "/v1/chat/completions"
PAYER = "0x" + "C0FFEE" * 6 + "beef"
PAY_TO = "0x" + "ab" * 20  # the facilitator fixture's X402_PAY_TO
BODY = {"model": MODEL, "messages": [{"role": "user", "content": "Say something nice"}], "max_tokens": 100}
USDC = Decimal(10) ** 6


@pytest.fixture
def node(provider, private_endpoints, stub_node_factory):  # type: ignore[no-untyped-def]
    stub = stub_node_factory()
    stub.behaviour.answer = "You are great"
    stub.behaviour.prompt_tokens = 6
    return live_node(owner=provider[0], stub=stub, input_price="1000.00", output_price="2000.00"), stub


def ask(api_client, *, payment: str | None = None, body: dict | None = None):  # type: ignore[no-untyped-def]
    headers = {"HTTP_X_PAYMENT": payment} if payment is not None else {}
    return api_client.post(URL, body or BODY, format="json", **headers)


def requirements(api_client) -> dict:  # type: ignore[no-untyped-def]
    r = ask(api_client)
    assert r.status_code == 402
    return r.json()["accepts"][0]


def pay(required: dict, *, value: str | None = None, payer: str = PAYER, nonce: str | None = None) -> str:
    return payment_header(
        payer=payer, pay_to=required["payTo"], value=value or required["maxAmountRequired"], nonce=nonce
    )


def decoded(header: str) -> dict:
    return json.loads(base64.b64decode(header))


def test_no_payment_is_402_with_every_requirement(api_client, node, facilitator, settings):
    r = ask(api_client)

    assert r.status_code == 402
    body = r.json()
    assert body["x402Version"] == 1 and body["error"]
    [required] = body["accepts"]
    assert set(required) == {"scheme", "network", "maxAmountRequired", "resource", "description", "mimeType",
                             "payTo", "maxTimeoutSeconds", "asset", "extra"}  # fmt: skip
    assert required["scheme"] == "exact"
    assert required["network"] == "base-sepolia"
    assert required["payTo"] == settings.X402_PAY_TO
    assert required["asset"] == settings.X402_ASSET
    assert required["maxTimeoutSeconds"] == settings.X402_MAX_TIMEOUT_S
    assert required["resource"] == "http://testserver/v1/chat/completions"
    assert required["mimeType"] == "application/json"
    assert required["extra"] == {"name": "USDC", "version": "2"}
    assert int(required["maxAmountRequired"]) > 0
    assert not node[1].chat_requests and not facilitator.received


def test_paid_request_is_verified_served_settled_and_billed(api_client, node, facilitator):
    operator = node[0].owner
    required = requirements(api_client)
    paid = Decimal(required["maxAmountRequired"]) / USDC

    r = ask(api_client, payment=pay(required))

    assert r.status_code == 200, r.content
    assert r.json()["choices"][0]["message"]["content"] == "You are great"
    assert len(facilitator.calls("/verify")) == 1 and len(facilitator.calls("/settle")) == 1
    verify = facilitator.calls("/verify")[0]
    assert verify["x402Version"] == 1 and verify["paymentRequirements"] == required
    settlement = decoded(r["X-PAYMENT-RESPONSE"])
    assert settlement["success"] is True and settlement["transaction"].startswith("0x")
    assert (settlement["network"], settlement["payer"]) == ("base-sepolia", PAYER)
    # The payment covered exactly the request's hold; the charge is the metered cost, 70% to the node's owner.
    record = InferenceRequest.objects.get()
    assert record.held_amount == paid
    assert record.cost == Decimal("0.012")  # 6 x 1000 + 3 x 2000 per 1M
    payer = X402Payer.objects.get(address=PAYER.lower())
    assert record.client == payer.client and payer.client.user.username == f"x402:{PAYER.lower()}"
    assert not payer.client.user.has_usable_password()
    assert ledger.balance_of(client_id=payer.client.pk) == paid - Decimal("0.012")
    assert ledger.balance_of(client_id=operator.pk) == Decimal("0.0084")
    [credited] = LedgerTransaction.objects.filter(kind=LedgerTransactionKind.X402)
    payment = X402Payment.objects.get()
    assert credited.key == f"x402:x402:{payment.pk}" and payment.status == X402PaymentStatus.SETTLED
    assert account_sum(LedgerAccountKind.X402_CLEARING) == -paid
    # 25% to the platform, 5% to the treasury, exactly.
    assert account_sum(LedgerAccountKind.PLATFORM) == Decimal("0.003")
    assert account_sum(LedgerAccountKind.TREASURY) == Decimal("0.0006")
    assert_books_balanced()


def test_invalid_payment_is_402_with_the_reason_and_no_node_is_called(api_client, node, facilitator):
    required = requirements(api_client)
    facilitator.valid = False

    r = ask(api_client, payment=pay(required))

    assert r.status_code == 402
    assert r.json()["error"] == "invalid_exact_evm_payload_signature"
    assert r.json()["accepts"][0] == required
    assert not node[1].chat_requests
    assert len(facilitator.calls("/verify")) == 1 and not facilitator.calls("/settle")
    assert not X402Payment.objects.exists() and not InferenceRequest.objects.exists()
    assert_books_balanced()


def b64(raw: bytes | str) -> str:
    return base64.b64encode(raw.encode() if isinstance(raw, str) else raw).decode()


def altered(*, top: dict | None = None, payload: dict | None = None, **authorization: object) -> str:
    """A payment for the fixture's payee and a big enough value, with some fields replaced (None: removed)."""
    good = decoded(payment_header(payer=PAYER, pay_to=PAY_TO, value="1000000"))
    for part, changes in ((good["payload"]["authorization"], authorization), (good["payload"], payload or {})):
        part.update(changes)
        for name in [k for k, v in changes.items() if v is None]:
            del part[name]
    good.update(top or {})
    return b64(json.dumps(good))


MALFORMED = {
    "not base64": "not base64 !!",
    "not ascii": "é" * 12,
    "base64 of bytes that are not UTF-8": b64(b"\xff\xfe\xfd\xfc"),
    "base64 of not json": b64("not json"),
    "json array": b64("[1, 2]"),
    "json string": b64('"x402"'),
    "json null": b64("null"),
    "json nested too deep": b64("[" * 3000 + "]" * 3000),
    "version 2": b64(json.dumps({"x402Version": 2})),
    "version true": altered(top={"x402Version": True}),
    "version as a string": altered(top={"x402Version": "1"}),
    "another network": b64(json.dumps({"x402Version": 1, "scheme": "exact", "network": "base"})),
    "scheme not a string": altered(top={"scheme": ["exact"]}),
    "no authorization": b64(
        json.dumps({"x402Version": 1, "scheme": "exact", "network": "base-sepolia", "payload": {"signature": "0x00"}})
    ),
    "payload a string": altered(top={"payload": "0xdeadbeef"}),
    "authorization a list": altered(payload={"authorization": [PAYER]}),
    "from not an address": altered(**{"from": "me"}),
    "from with a final newline": altered(**{"from": PAYER + "\n"}),
    "to with a final newline": altered(to=PAY_TO + "\n"),
    "from a number": altered(**{"from": 12345}),
    "nonce of 78 digits and a newline": altered(nonce="0x" + "f" * 78 + "\n"),
    "nonce too long": altered(nonce="0x" + "f" * 79),
    "nonce a list": altered(nonce=["0x01"]),
    "nonce not hex": altered(nonce="0xnothex"),
    "value a superscript digit": altered(value="\u00b2"),
    "value of arabic-indic digits": altered(value="\u0661\u0662\u0663\u0664\u0665\u0666\u0667"),
    "value oversized (30 digits)": altered(value="9" * 30),
    "value just over 15 digits": altered(value="1" + "0" * 15),
    "value a number": altered(value=1000000),
    "value negative": altered(value="-1000000"),
    "value in exponent form": altered(value="1e9"),
    "value with a final newline": altered(value="1000000\n"),
    "value missing": altered(value=None),
    "signature missing": altered(payload={"signature": None}),
    "signature not hex": altered(payload={"signature": "0xzz"}),
    "signature a number": altered(payload={"signature": 7}),
    "validBefore a number": altered(validBefore=99999999999),
    "validAfter missing": altered(validAfter=None),
    "too long": "A" * 10000,
}


@pytest.mark.parametrize("header", list(MALFORMED.values()), ids=list(MALFORMED))
def test_malformed_payment_header_is_402_and_nothing_is_called(api_client, node, facilitator, header):
    r = ask(api_client, payment=header)

    assert r.status_code == 402, r.content
    assert r.json()["error"].startswith(("invalid_payment", "invalid_x402_version", "invalid_scheme"))
    assert r.json()["accepts"][0]["payTo"] == PAY_TO
    assert not facilitator.received and not node[1].chat_requests
    assert not X402Payment.objects.exists() and not X402Payer.objects.exists()


def test_the_largest_value_that_fits_is_accepted_and_credited_exactly(api_client, node, facilitator):
    largest = "9" * 15

    r = ask(api_client, payment=altered(value=largest))

    assert r.status_code == 200, r.content
    assert X402Payment.objects.get().amount == Decimal("999999999.999999")
    assert ledger.balance_of(client_id=X402Payer.objects.get().client_id) == Decimal("999999999.999999") - Decimal(
        "0.012"
    )
    assert_books_balanced()


def test_payment_to_someone_else_or_too_small_is_refused_before_verifying(api_client, node, facilitator):
    required = requirements(api_client)
    too_small = str(int(required["maxAmountRequired"]) - 1)
    elsewhere = payment_header(payer=PAYER, pay_to="0x" + "12" * 20, value=required["maxAmountRequired"])

    for header in (pay(required, value=too_small), elsewhere):
        r = ask(api_client, payment=header)
        assert r.status_code == 402
    assert not facilitator.received and not node[1].chat_requests


def test_an_authorization_is_accepted_once(api_client, node, facilitator):
    required = requirements(api_client)
    header = pay(required, nonce="0x" + "01" * 32)
    assert ask(api_client, payment=header).status_code == 200

    again = ask(api_client, payment=header)

    assert again.status_code == 402 and "used already" in again.json()["error"]
    assert len(node[1].chat_requests) == 1 and len(facilitator.calls("/settle")) == 1


def test_unspent_credit_pays_first_next_time(api_client, node, facilitator):
    required = requirements(api_client)
    generous = str(int(required["maxAmountRequired"]) * 10)
    assert ask(api_client, payment=pay(required, value=generous)).status_code == 200
    payer = X402Payer.objects.get().client
    left = ledger.balance_of(client_id=payer.pk)
    assert left == Decimal(generous) / USDC - Decimal("0.012")

    r = ask(api_client, payment=pay(required))

    assert r.status_code == 200
    assert len(facilitator.calls("/verify")) == 2 and len(facilitator.calls("/settle")) == 1  # not settled
    assert decoded(r["X-PAYMENT-RESPONSE"])["paidFromCredit"] is True
    assert ledger.balance_of(client_id=payer.pk) == left - Decimal("0.012")
    assert X402Payment.objects.filter(status=X402PaymentStatus.UNUSED).count() == 1
    assert LedgerTransaction.objects.filter(kind=LedgerTransactionKind.X402).count() == 1
    assert_books_balanced()


def test_failed_settlement_is_402_and_the_unspent_credit_is_taken_back(api_client, node, facilitator):
    required = requirements(api_client)
    facilitator.settles = False

    r = ask(api_client, payment=pay(required))

    assert r.status_code == 402 and r.json()["error"] == "settlement_failed"
    assert X402Payment.objects.get().status == X402PaymentStatus.FAILED
    payer_id = X402Payer.objects.get().client_id
    assert ledger.balance_of(client_id=payer_id) == 0
    payment = X402Payment.objects.get()
    lines = LedgerEntry.objects.filter(account__client_id=payer_id, kind="x402").order_by("pk")
    assert [(e.ref, e.amount) for e in lines] == [
        (f"x402:{payment.pk}", payment.amount),
        (f"x402:{payment.pk}", -(payment.amount - Decimal("0.012"))),  # what the request did not spend
    ]
    assert_books_balanced()


def test_unknown_model_is_404_before_any_payment(api_client, node, facilitator):
    r = ask(api_client, body={**BODY, "model": "no/such-model"})

    assert r.status_code == 404 and r.json()["error"]["code"] == "model_not_found"


def test_bad_body_is_400_in_openai_shape(api_client, node, facilitator):
    r = ask(api_client, body={"model": MODEL, "messages": []})

    assert r.status_code == 400 and r.json()["error"]["param"] == "messages"


def test_without_x402_configured_a_keyless_request_is_401(api_client, node, settings):
    settings.X402_PAY_TO = ""

    r = ask(api_client)

    assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"


def test_keys_still_work_with_x402_on(api_client, node, facilitator, user_client):
    client, key = user_client
    ledger.credit(client_id=client.pk, amount=Decimal("1"), key="fund")

    r = api_client.post(URL, BODY, format="json", **bearer(key))

    assert r.status_code == 200 and "X-PAYMENT-RESPONSE" not in r
    assert not facilitator.received


def test_a_paid_stream_is_settled_before_it_starts_and_billed(api_client, node, facilitator):
    from tests.inference.conftest import sse_json, streamed

    body = {**BODY, "stream": True}
    r = ask(api_client, body=body)
    assert r.status_code == 402
    required = r.json()["accepts"][0]
    assert required["mimeType"] == "text/event-stream"

    paid = ask(api_client, body=body, payment=pay(required))

    assert paid.status_code == 200 and paid["Content-Type"] == "text/event-stream"
    assert decoded(paid["X-PAYMENT-RESPONSE"])["success"] is True
    chunks = sse_json(streamed(paid))
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c.get("choices")) == "You are great"
    assert len(facilitator.calls("/verify")) == 1 and len(facilitator.calls("/settle")) == 1
    record = InferenceRequest.objects.get()
    assert record.status == "completed" and record.client == X402Payer.objects.get().client
    assert ledger.balance_of(client_id=record.client.pk) == Decimal(required["maxAmountRequired"]) / USDC - record.cost
    assert_books_balanced()


def test_a_stream_whose_settlement_fails_serves_nothing(api_client, node, facilitator):
    body = {**BODY, "stream": True}
    required = ask(api_client, body=body).json()["accepts"][0]
    facilitator.settles = False

    r = ask(api_client, body=body, payment=pay(required))

    assert r.status_code == 402 and r.json()["error"] == "settlement_failed"
    assert not node[1].chat_requests and not InferenceRequest.objects.exists()
    assert ledger.balance_of(client_id=X402Payer.objects.get().client_id) == 0
    assert_books_balanced()
