"""A balance is not eaten by reservations (API.md §10), on the lean /v1 path as a client sees it.

A real uvicorn server serves /v1/chat/completions with leases and the Redis journal. Money a lease reserved
returns to `balance` within 2 s of the client's last request, nobody draining the journal meanwhile: `balance` is
then what the client had less exactly what it was charged. Once the journal is applied (the Celery beat's drain),
each request reads as its own ledger line of minus its charge, ref `inference:<id>`.
"""

import concurrent.futures
import time
from decimal import Decimal

import httpx
import pytest

from clients import ledger
from inference import metering
from inference.models import InferenceRequest
from tests.inference.conftest import MODEL, balance, fund, settle_usage, start_service
from tests.llm_models.conftest import _stop

pytestmark = [
    pytest.mark.live_server,
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("usage_journal_clean"),
]
PRICE = Decimal("1000.00")  # per 1M tokens, in and out


def chat(base_url: str, key: str) -> httpx.Response:
    return httpx.post(
        f"{base_url}/v1/chat/completions",
        json={"model": MODEL, "messages": [{"role": "user", "content": "Say something nice"}], "max_tokens": 20},
        headers={"Authorization": f"Bearer {key}"},
        timeout=30,
    )


def charge_of(response: httpx.Response) -> Decimal:
    """What the request costs, from the usage its answer reports and the node's prices."""
    used = response.json()["usage"]
    return metering.price(
        prompt_tokens=used["prompt_tokens"],
        completion_tokens=used["completion_tokens"],
        input_per_million=PRICE,
        output_per_million=PRICE,
    )


def balance_within(client, expected: Decimal, *, seconds: float) -> Decimal:  # type: ignore[no-untyped-def]
    """Poll the client's balance until it is `expected` or `seconds` have passed; the last figure seen."""
    deadline = time.monotonic() + seconds
    while True:
        seen = balance(client)
        if seen == expected or time.monotonic() > deadline:
            return seen
        time.sleep(0.05)


@pytest.fixture
def server(tmp_path):  # type: ignore[no-untyped-def]
    # Leases live an hour: only their idleness can give the money back within the 2 s.
    process = start_service(tmp_path / "server.log", INFERENCE_LEASE_TTL_S="3600")
    yield process
    _stop(process)


def test_one_request_leaves_the_balance_at_start_less_its_charge_within_2_s(user_client, node_on, server):
    client, key = user_client
    fund(client, "3.00")
    node_on(input_price=str(PRICE), output_price=str(PRICE))

    r = chat(server.base_url, key)

    assert r.status_code == 200, r.text
    charge = charge_of(r)
    assert charge > 0
    assert balance_within(client, Decimal("3.00") - charge, seconds=2.0) == Decimal("3.00") - charge
    # The charge is its own line once the journal is applied; nothing is left held.
    settle_usage()
    record = InferenceRequest.objects.get()
    assert record.cost == charge
    me = httpx.get(
        f"{server.base_url}/api/v1/client/list/{client.pk}/", headers={"Authorization": f"Bearer {key}"}
    ).json()
    assert (Decimal(me["balance"]), Decimal(me["held"])) == (Decimal("3.00") - charge, 0)
    lines = httpx.get(
        f"{server.base_url}/api/v1/client/ledger/",
        params={"kind": "inference"},
        headers={"Authorization": f"Bearer {key}"},
    ).json()["results"]
    assert [(e["ref"], Decimal(e["amount"])) for e in lines] == [(f"inference:{record.pk}", -charge)]
    assert ledger.reconcile() == []


def test_parallel_requests_leave_the_balance_exact_within_2_s(user_client, node_on, server):
    client, key = user_client
    fund(client, "3.00")
    node_on(input_price=str(PRICE), output_price=str(PRICE))

    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        answers = list(pool.map(lambda _: chat(server.base_url, key), range(16)))

    assert [r.status_code for r in answers] == [200] * 16
    spent = sum((charge_of(r) for r in answers), Decimal(0))
    assert balance_within(client, Decimal("3.00") - spent, seconds=2.0) == Decimal("3.00") - spent
    settle_usage()
    records = list(InferenceRequest.objects.order_by("pk"))
    assert sum(r.cost for r in records) == spent
    charged = ledger.LedgerEntry.objects.filter(account__client=client, kind="inference")  # type: ignore[attr-defined]
    assert sorted(charged.values_list("ref", "amount")) == sorted((f"inference:{r.pk}", -r.cost) for r in records)
    assert balance(client) == Decimal("3.00") - spent
    assert ledger.reconcile() == []


def test_money_in_an_idle_lease_is_not_refused(user_client, node_on, server):
    """A client is never refused (402) for money held only by its own idle leases: after one request, a request
    needing more than is outside the lease is served."""
    client, key = user_client
    fund(client, "3.00")
    node_on(input_price=str(PRICE), output_price=str(PRICE))
    assert chat(server.base_url, key).status_code == 200

    big = httpx.post(  # up to 2,500 tokens at 1000/1M: needs more than the 1.00 the lease of 2.00 left outside
        f"{server.base_url}/v1/chat/completions",
        json={"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2500},
        headers={"Authorization": f"Bearer {key}"},
        timeout=30,
    )

    assert big.status_code == 200, big.text


def test_money_in_another_processs_idle_lease_is_not_refused(user_client, node_on, server, tmp_path):
    """Two web processes: the client's money sits in the first one's lease after its request; a request to the
    second needing more than is left waits for that lease to go idle instead of answering 402."""
    client, key = user_client
    fund(client, "3.00")
    node_on(input_price=str(PRICE), output_price=str(PRICE))
    other = start_service(tmp_path / "other.log", INFERENCE_LEASE_TTL_S="3600")
    try:
        assert chat(server.base_url, key).status_code == 200

        big = httpx.post(  # up to 2,500 tokens at 1000/1M: more than the 1.00 left outside the first's lease
            f"{other.base_url}/v1/chat/completions",
            json={"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2500},
            headers={"Authorization": f"Bearer {key}"},
            timeout=30,
        )

        assert big.status_code == 200, big.text
    finally:
        _stop(other)
