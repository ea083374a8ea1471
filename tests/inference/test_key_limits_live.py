"""API.md §12 on the lean /v1 path (a real uvicorn process), and one rpm shared by two web processes."""

import time
from decimal import Decimal

import httpx
import pytest
import redis
from django.conf import settings

from clients.services import api_key_create
from inference.journal import stream as usage_journal
from inference.models import InferenceRequest
from tests.inference.conftest import MODEL, by_lean_path, fund, settle_usage, start_service

pytestmark = [
    pytest.mark.live_server,
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("usage_journal_clean"),
]
CHAT = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 20}


@pytest.fixture(autouse=True)
def _fresh_counters():  # type: ignore[no-untyped-def]
    client = redis.Redis.from_url(settings.KEY_LIMITS_REDIS_URL)
    for name in client.scan_iter("gm:keylim:*"):
        client.delete(name)
    yield
    client.close()


def chat(base_url: str, raw: str, **extra: object) -> httpx.Response:
    return httpx.post(
        f"{base_url}/v1/chat/completions",
        json={**CHAT, **extra},
        headers={"Authorization": f"Bearer {raw}"},
        timeout=30,
    )


def test_lean_path_rpm_headers_then_429(live_service, user_client, node_on, api_client):
    fund(user_client[0])
    _, stub = node_on()
    key, raw = api_key_create(client=user_client[0], name="capped", rpm=2)

    replies = [chat(live_service.base_url, raw) for _ in range(3)]

    assert [r.status_code for r in replies] == [200, 200, 429]
    assert [r.headers["x-ratelimit-remaining-requests"] for r in replies[:2]] == ["1", "0"]
    assert replies[0].headers["x-ratelimit-limit-requests"] == "2"
    assert replies[2].json()["error"]["code"] == "rate_limited" and int(replies[2].headers["retry-after"]) >= 1
    assert len(stub.chat_requests) == 2
    settle_usage()
    assert [by_lean_path(r) for r in InferenceRequest.objects.all()] == [True, True]
    by_key = api_client.get("/api/v1/client/usage/", {"group_by": "key"}, HTTP_AUTHORIZATION=f"Bearer {raw}").json()
    assert [(row["key"]["id"], row["requests"]) for row in by_key] == [(key.pk, 2)]


def test_lean_path_stream_carries_the_headers(live_service, user_client, node_on):
    fund(user_client[0])
    node_on()
    _, raw = api_key_create(client=user_client[0], name="capped", rpm=5, tpm=1000)

    r = chat(live_service.base_url, raw, stream=True)

    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    assert r.headers["x-ratelimit-remaining-requests"] == "4" and r.headers["x-ratelimit-limit-tokens"] == "1000"


def test_lean_path_refuses_a_model_outside_the_allow_list(live_service, user_client, node_on):
    fund(user_client[0])
    _, stub = node_on()
    _, raw = api_key_create(client=user_client[0], name="narrow", allowed_models=["other/model"])

    r = chat(live_service.base_url, raw)

    assert r.status_code == 403 and r.json()["error"]["code"] == "model_not_allowed"
    assert stub.chat_requests == []


def test_lean_path_budget_reached_is_402_while_the_account_has_money(live_service, user_client, node_on):
    client, _ = user_client
    fund(client, "10.00")
    node_on(input_price="1000.00", output_price="1000.00")
    key, raw = api_key_create(client=client, name="capped", budget=Decimal("0.001"))

    first = chat(live_service.base_url, raw)
    deadline = time.monotonic() + 10
    while key.spent == 0 and time.monotonic() < deadline:  # recorded when the journal is applied (beat's drain)
        usage_journal.drain()
        time.sleep(0.05)
        key.refresh_from_db()
    second = chat(live_service.base_url, raw)

    assert first.status_code == 200
    assert key.spent > Decimal("0.001")
    assert second.status_code == 402 and second.json()["error"]["code"] == "key_budget_exceeded"
    settle_usage()
    row = InferenceRequest.objects.get()
    assert (row.cost, by_lean_path(row), row.api_key_id) == (key.spent, True, key.pk)


def test_two_web_processes_share_one_rpm(live_service, user_client, node_on, tmp_path, django_db_blocker):
    from tests.llm_models.conftest import _stop

    fund(user_client[0])
    _, stub = node_on()
    _, raw = api_key_create(client=user_client[0], name="shared", rpm=3)
    with django_db_blocker.unblock():
        other = start_service(tmp_path / "second.log")
    try:
        # Four at each process, alternating; one calendar minute is not crossed unless the clock is at :59.
        while time.time() % 60 > 50:
            time.sleep(1)
        statuses = [chat(base, raw).status_code for _ in range(4) for base in (live_service.base_url, other.base_url)]
    finally:
        _stop(other)

    assert statuses.count(200) == 3 and statuses.count(429) == 5
    assert len(stub.chat_requests) == 3


def test_the_spend_counter_equals_the_ledger_and_a_second_process_refuses_the_budget(
    live_service, user_client, node_on, tmp_path, django_db_blocker
):
    from clients.choices import LedgerEntryKind
    from clients.models import LedgerEntry
    from tests.llm_models.conftest import _stop

    client, _ = user_client
    fund(client, "10.00")
    node_on(input_price="100.00", output_price="100.00")
    key, raw = api_key_create(client=client, name="capped", budget=Decimal("0.001"), rpm=100)
    store = redis.Redis.from_url(settings.KEY_LIMITS_REDIS_URL, decode_responses=True)
    with django_db_blocker.unblock():
        other = start_service(tmp_path / "second.log")
    try:
        served = [chat(live_service.base_url, raw).status_code for _ in range(2)]
        settle_usage()  # the journal applied: the spend recorded in the row and the counter
        refused = chat(other.base_url, raw)
    finally:
        _stop(other)

    key.refresh_from_db()
    charged = -sum(e.amount for e in LedgerEntry.objects.filter(account__client=client, kind=LedgerEntryKind.INFERENCE))
    counters = [store.get(name) for name in store.scan_iter(f"gm:keylim:{key.pk}:s:*")]
    assert served == [200, 200] and key.spent > Decimal("0.001")
    assert charged == key.spent == sum(r.cost for r in InferenceRequest.objects.filter(api_key=key))
    assert counters == [str(int(key.spent * 1_000_000))]
    assert refused.status_code == 402 and refused.json()["error"]["code"] == "key_budget_exceeded"
