"""API.md §12 on the Django doors: /v1 (in process), the seed resource's sync, stream and batch. The lean /v1 path
and several processes sharing one rpm: test_key_limits_live.py."""

import json
from datetime import timedelta
from decimal import Decimal

import pytest
import redis
from django.conf import settings
from django.test import override_settings
from django.utils import timezone

from clients.key_periods import key_usage
from clients.models import ApiKey, KeyRateWindow
from clients.services import api_key_create
from inference.models import InferenceRequest
from tests.conftest import bearer
from tests.inference.conftest import MODEL, balance, fund, sse_events, streamed

V1 = "/v1/chat/completions"
SEED = "/api/v1/inference/"
CHAT = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 20}


@pytest.fixture(autouse=True)
def _fresh_counters():  # type: ignore[no-untyped-def]
    """Counters of keys of earlier runs (ids are reused after a flush) are gone."""
    client = redis.Redis.from_url(settings.KEY_LIMITS_REDIS_URL)
    for name in client.scan_iter("gm:keylim:*"):
        client.delete(name)
    yield
    client.close()


def _key(client, **limits):  # type: ignore[no-untyped-def]
    return api_key_create(client=client, name="capped", **limits)


def test_v1_refuses_a_model_outside_the_allow_list(api_client, user_client, node_on):
    fund(user_client[0])
    _, stub = node_on()
    _, raw = _key(user_client[0], allowed_models=["other/model"])

    r = api_client.post(V1, CHAT, format="json", **bearer(raw))

    assert r.status_code == 403
    assert r.json()["error"]["code"] == "model_not_allowed"
    assert stub.chat_requests == [] and not InferenceRequest.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_v1_rpm_sends_ratelimit_headers_then_429_with_retry_after(api_client, user_client, node_on):
    fund(user_client[0])
    _, stub = node_on()
    _, raw = _key(user_client[0], rpm=2)

    first, second, third = (api_client.post(V1, CHAT, format="json", **bearer(raw)) for _ in range(3))

    assert (first.status_code, second.status_code) == (200, 200)
    assert (first["x-ratelimit-limit-requests"], first["x-ratelimit-remaining-requests"]) == ("2", "1")
    assert second["x-ratelimit-remaining-requests"] == "0" and second["x-ratelimit-reset-requests"].endswith("s")
    assert third.status_code == 429 and third.json()["error"]["code"] == "rate_limited"
    assert 1 <= int(third["Retry-After"]) <= 60
    assert len(stub.chat_requests) == 2


@pytest.mark.django_db(transaction=True)
def test_v1_stream_carries_the_headers_and_counts_against_rpm(api_client, user_client, node_on):
    fund(user_client[0])
    node_on()
    _, raw = _key(user_client[0], rpm=1, tpm=10_000)

    r = api_client.post(V1, {**CHAT, "stream": True}, format="json", **bearer(raw))
    streamed(r)
    again = api_client.post(V1, {**CHAT, "stream": True}, format="json", **bearer(raw))

    assert r.status_code == 200 and r["x-ratelimit-remaining-requests"] == "0"
    assert r["x-ratelimit-limit-tokens"] == "10000"
    assert again.status_code == 429 and again.json()["error"]["code"] == "rate_limited"


@pytest.mark.django_db(transaction=True)
def test_v1_tpm_refuses_once_the_minute_tokens_are_spent(api_client, user_client, node_on):
    fund(user_client[0])
    _, stub = node_on()
    stub.behaviour.prompt_tokens = 8
    _, raw = _key(user_client[0], tpm=5)

    first = api_client.post(V1, CHAT, format="json", **bearer(raw))
    second = api_client.post(V1, CHAT, format="json", **bearer(raw))

    assert first.status_code == 200 and first["x-ratelimit-remaining-tokens"] == "5"
    assert second.status_code == 429 and second["x-ratelimit-remaining-tokens"] == "0"


@pytest.mark.django_db(transaction=True)
def test_v1_budget_reached_is_402_while_the_account_still_has_money(api_client, user_client, node_on):
    client, _ = user_client
    fund(client, "10.00")
    node_on(input_price="1000.00", output_price="1000.00")
    key, raw = _key(client, budget=Decimal("0.005"), budget_period="day")

    first = api_client.post(V1, CHAT, format="json", **bearer(raw))
    second = api_client.post(V1, CHAT, format="json", **bearer(raw))

    assert first.status_code == 200
    cost = InferenceRequest.objects.get().cost
    assert cost > Decimal("0.005")  # a running request may take the key past its budget by its own cost
    assert second.status_code == 402 and second.json()["error"]["code"] == "key_budget_exceeded"
    assert balance(client) == Decimal("10.00") - cost > 0
    key.refresh_from_db()
    assert key_usage(key=key)["spent"] == cost and key_usage(key=key)["remaining"] == 0
    assert InferenceRequest.objects.get().api_key_id == key.pk
    # The next day the budget is whole again.
    tomorrow = key_usage(key=key, now=timezone.now() + timedelta(days=1))
    assert (tomorrow["spent"], tomorrow["remaining"]) == (Decimal("0"), Decimal("0.005"))


@pytest.mark.django_db(transaction=True)
def test_seed_sync_request_counts_against_the_budget(api_client, user_client, node_on):
    client, _ = user_client
    fund(client, "10.00")
    node_on(input_price="1000.00", output_price="1000.00")
    key, raw = _key(client, budget=Decimal("0.001"))
    ask = {"question_text": "hi", "desired_model": MODEL, "max_tokens": 20}

    first = api_client.post(SEED, ask, format="json", **bearer(raw))
    second = api_client.post(SEED, ask, format="json", **bearer(raw))

    assert first.status_code == 201, first.content
    assert second.status_code == 402 and second.json()["errors"][0]["code"] == "key_budget_exceeded"
    key.refresh_from_db()
    assert key.spent == Decimal(first.json()["cost"]) > 0


def test_seed_refuses_a_model_outside_the_allow_list_on_sync_stream_and_batch(api_client, user_client, node_on):
    fund(user_client[0])
    node_on()
    _, raw = _key(user_client[0], allowed_models=["other/model"])
    ask = {"question_text": "hi", "desired_model": MODEL}

    sync = api_client.post(SEED, ask, format="json", **bearer(raw))
    stream = api_client.post(f"{SEED}stream/", ask, format="json", **bearer(raw))
    batch = api_client.post(f"{SEED}batch/", {"model": MODEL, "prompts": ["a"]}, format="json", **bearer(raw))

    for r in (sync, stream, batch):
        assert r.status_code == 403, r.content
        assert r.json()["errors"][0]["code"] == "model_not_allowed"
    assert not InferenceRequest.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_seed_stream_spend_and_rpm(api_client, user_client, node_on):
    client, _ = user_client
    fund(client, "10.00")
    node_on(input_price="1000.00", output_price="1000.00")
    key, raw = _key(client, budget=Decimal("0.001"), rpm=5)
    ask = {"question_text": "hi", "desired_model": MODEL}

    r = api_client.post(f"{SEED}stream/", ask, format="json", **bearer(raw))
    record = json.loads(sse_events(streamed(r))[-2][1])
    again = api_client.post(f"{SEED}stream/", ask, format="json", **bearer(raw))

    key.refresh_from_db()
    assert key.spent == Decimal(record["cost"]) > 0
    assert again.status_code == 402 and again.json()["errors"][0]["code"] == "key_budget_exceeded"


@pytest.mark.django_db(transaction=True)
def test_a_batch_is_billed_to_the_key_and_the_next_is_refused(api_client, user_client, node_on):
    client, _ = user_client
    fund(client, "10.00")
    node_on(input_price="1000.00", output_price="1000.00")
    key, raw = _key(client, budget=Decimal("0.001"))
    body = {"model": MODEL, "prompts": ["a", "b"], "max_tokens": 16}

    first = api_client.post(f"{SEED}batch/", body, format="json", **bearer(raw))
    second = api_client.post(f"{SEED}batch/", body, format="json", **bearer(raw))

    assert first.status_code == 202
    key.refresh_from_db()
    rows = InferenceRequest.objects.filter(batch_id=first.json()["id"])
    assert {r.api_key_id for r in rows} == {key.pk}
    assert key.spent == sum(r.cost for r in rows) > 0
    assert second.status_code == 402 and second.json()["errors"][0]["code"] == "key_budget_exceeded"


@pytest.mark.django_db(transaction=True)
@override_settings(KEY_LIMITS_REDIS_URL="")
def test_without_redis_the_rpm_counter_is_a_database_row(api_client, user_client, node_on):
    fund(user_client[0])
    node_on()
    key, raw = _key(user_client[0], rpm=1)

    first = api_client.post(V1, CHAT, format="json", **bearer(raw))
    second = api_client.post(V1, CHAT, format="json", **bearer(raw))

    assert first.status_code == 200 and first["x-ratelimit-remaining-requests"] == "0"
    assert second.status_code == 429 and second.json()["error"]["code"] == "rate_limited"
    assert KeyRateWindow.objects.get(api_key=key).requests == 1


def test_a_session_has_no_key_limits(api_client, user_client, node_on):
    fund(user_client[0])
    node_on()
    ApiKey.objects.filter(client=user_client[0]).update(rpm=1)
    api_client.force_login(user_client[0].user)

    statuses = [api_client.post(V1, CHAT, format="json").status_code for _ in range(2)]

    assert 429 not in statuses
