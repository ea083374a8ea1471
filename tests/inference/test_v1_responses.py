"""The response side of API.md §11 on both /v1 doors: usage with its details and `cost` (the ledger's charge),
`: keep-alive` before the first token, the error chunk that ends a broken stream, and `x-should-retry`.

The lean door is a real uvicorn process (with a short keep-alive interval) reached by the `openai` SDK and raw
HTTP; the web door is Django's view, reached in-process (it serves streams with an Idempotency-Key, SQLite, ...).
"""

import json
import time
from decimal import Decimal

import httpx
import openai
import pytest
import redis
from django.conf import settings

from clients.services import api_key_create
from inference.models import InferenceRequest
from tests.conftest import bearer
from tests.inference.conftest import MODEL, balance, fund, settle_usage, sse_events, streamed

MESSAGES = [{"role": "user", "content": "Say something nice"}]
URL = "/v1/chat/completions"
KEEPALIVE_S = 0.25
NODE_USAGE = {
    "prompt_tokens": 6,
    "completion_tokens": 3,
    "total_tokens": 9,
    "prompt_tokens_details": {"cached_tokens": 4},
    "completion_tokens_details": {"reasoning_tokens": 2},
}


def live(test):  # type: ignore[no-untyped-def]
    """A test against the `service` process: what it writes is committed, and the usage journal starts empty."""
    for mark in (
        pytest.mark.live_server,
        pytest.mark.django_db(transaction=True),
        pytest.mark.usefixtures("usage_journal_clean"),
    ):
        test = mark(test)
    return test


@pytest.fixture(scope="module")
def service(django_db_setup, django_db_blocker, tmp_path_factory):  # type: ignore[no-untyped-def]
    """The service under uvicorn (the lean door in front), sending keep-alives every KEEPALIVE_S."""
    from tests.inference.conftest import start_service
    from tests.llm_models.conftest import _stop

    with django_db_blocker.unblock():
        process = start_service(
            tmp_path_factory.mktemp("uvicorn") / "server.log", INFERENCE_KEEPALIVE_S=str(KEEPALIVE_S)
        )
    try:
        yield process
    finally:
        _stop(process)


def counted_sdk(service, key: str, *, max_retries: int = 0) -> tuple[openai.OpenAI, list[str]]:  # type: ignore[no-untyped-def]
    """The SDK, and the list of every HTTP request it sends (its retries included)."""
    sent: list[str] = []
    http = httpx.Client(event_hooks={"request": [lambda request: sent.append(request.url.path)]})
    sdk = openai.OpenAI(
        base_url=f"{service.base_url}/v1", api_key=key, max_retries=max_retries, timeout=30, http_client=http
    )
    return sdk, sent


def post_stream(service, key: str, body: dict) -> tuple[httpx.Response, str]:  # type: ignore[no-untyped-def]
    with httpx.stream(
        "POST",
        f"{service.base_url}{URL}",
        json={"model": MODEL, "messages": MESSAGES, "stream": True, "max_tokens": 50, **body},
        headers={"Authorization": f"Bearer {key}"},
        timeout=30,
    ) as r:
        return r, r.read().decode()


def charged(client, before: Decimal) -> Decimal:  # type: ignore[no-untyped-def]
    return before - balance(client)


# --- Usage: details and cost -----------------------------------------------------------------------------------


@live
def test_the_nodes_usage_details_reach_the_sdk_and_cost_is_the_ledger_charge(service, user_client, node_on):
    client, key = user_client
    fund(client, "1.00")
    _, stub = node_on(input_price="1000.00", output_price="2000.00")
    stub.behaviour.answer = "You are great"
    stub.behaviour.usage = NODE_USAGE
    sdk, _ = counted_sdk(service, key)

    reply = sdk.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=50)

    assert reply.usage.prompt_tokens_details.cached_tokens == 4
    assert reply.usage.completion_tokens_details.reasoning_tokens == 2
    assert (reply.usage.prompt_tokens, reply.usage.completion_tokens, reply.usage.total_tokens) == (6, 3, 9)
    settle_usage()
    cost = Decimal(str(reply.usage.model_extra["cost"]))
    assert cost == Decimal("0.012") == charged(client, Decimal("1.00")) == InferenceRequest.objects.get().cost


@live
def test_the_usage_chunk_of_a_stream_carries_the_details_and_the_charge(service, user_client, node_on):
    client, key = user_client
    fund(client, "1.00")
    _, stub = node_on(input_price="1000.00", output_price="2000.00")
    stub.behaviour.answer = "You are great"
    stub.behaviour.usage = NODE_USAGE
    sdk, _ = counted_sdk(service, key)

    chunks = list(
        sdk.chat.completions.create(
            model=MODEL, messages=MESSAGES, max_tokens=50, stream=True, stream_options={"include_usage": True}
        )
    )

    usage = chunks[-1].usage
    assert chunks[-1].choices == [] and usage.prompt_tokens_details.cached_tokens == 4
    assert usage.completion_tokens_details.reasoning_tokens == 2
    settle_usage()
    assert Decimal(str(usage.model_extra["cost"])) == charged(client, Decimal("1.00")) == Decimal("0.012")


@pytest.mark.django_db(transaction=True)
def test_usage_without_details_has_none_and_a_web_door_answer_costs_its_charge(api_client, user_client, node_on):
    client, key = user_client
    fund(client, "1.00")
    _, stub = node_on(input_price="1000.00", output_price="1000.00")
    stub.behaviour.answer = "hello there"

    r = api_client.post(URL, {"model": MODEL, "messages": MESSAGES, "max_tokens": 50}, format="json", **bearer(key))

    usage = r.json()["usage"]
    assert set(usage) == {"prompt_tokens", "completion_tokens", "total_tokens", "cost"}
    assert Decimal(str(usage["cost"])) == charged(client, Decimal("1.00")) == InferenceRequest.objects.get().cost > 0


@pytest.mark.django_db(transaction=True)
def test_a_plan_covered_request_shows_cost_zero_its_charge_to_the_client(api_client, user_client, node_on):
    from plans.models import Plan

    client, key = user_client
    fund(client, "3.00")
    node_on(input_price="1000.00", output_price="1000.00")
    plan = Plan.objects.create(name="Starter", price_per_month=Decimal("3.00"), daily_requests=5, overage="block")
    assert api_client.post(f"/api/v1/plans/{plan.pk}/subscribe/", **bearer(key)).status_code == 201

    r = api_client.post(URL, {"model": MODEL, "messages": MESSAGES, "max_tokens": 16}, format="json", **bearer(key))

    record = InferenceRequest.objects.get()
    assert r.status_code == 200 and record.plan_covered and record.cost > 0  # what it would have cost
    assert r.json()["usage"]["cost"] == 0 and balance(client) == 0  # the subscription took the 3.00


# --- Keep-alive and the error chunk ------------------------------------------------------------------------------


@live
def test_a_slow_first_token_is_preceded_by_keep_alives(service, user_client, node_on):
    client, key = user_client
    fund(client, "1.00")
    _, stub = node_on()
    stub.behaviour.answer = "late but fine"
    stub.behaviour.first_byte_delay_s = 1.5

    started = time.monotonic()
    with httpx.stream(
        "POST",
        f"{service.base_url}{URL}",
        json={"model": MODEL, "messages": MESSAGES, "stream": True},
        headers={"Authorization": f"Bearer {key}"},
        timeout=30,
    ) as r:
        parts = r.iter_bytes()
        first = next(parts)
        first_at = time.monotonic() - started
        raw = (first + b"".join(parts)).decode()

    assert r.status_code == 200 and raw.startswith(": keep-alive\n\n") and first_at < 1.2  # the 200 came with it
    head = raw.split("data:", 1)[0]
    assert head.count(": keep-alive") >= 3  # every KEEPALIVE_S until the node's first token
    events = sse_events(raw)
    assert events[-1] == (None, "[DONE]")
    assert "".join(json.loads(d)["choices"][0]["delta"].get("content") or "" for _, d in events[:-1]) == "late but fine"
    # The SDK reads through the comments.
    sdk, _ = counted_sdk(service, key)
    pieces = [
        c.choices[0].delta.content or ""
        for c in sdk.chat.completions.create(model=MODEL, messages=MESSAGES, stream=True)
    ]
    assert "".join(pieces) == "late but fine"


@live
def test_a_client_leaving_during_the_keep_alives_is_charged_nothing_and_the_node_is_let_go(
    service, user_client, node_on
):
    client, key = user_client
    fund(client, "1.00")
    _, stub = node_on()
    stub.behaviour.first_byte_delay_s = 2.0

    with httpx.stream(
        "POST",
        f"{service.base_url}{URL}",
        json={"model": MODEL, "messages": MESSAGES, "stream": True},
        headers={"Authorization": f"Bearer {key}"},
        timeout=30,
    ) as r:
        first = next(r.iter_bytes())
    assert first.startswith(b": keep-alive")

    settle_usage()
    record = InferenceRequest.objects.get()
    assert (record.status, record.error_code, record.cost) == ("failed", "client_disconnected", Decimal(0))
    assert balance(client) == Decimal("1.00")
    deadline = time.monotonic() + 10
    while not any(r.method == "DISCONNECT" for r in stub.requests) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert any(r.method == "DISCONNECT" for r in stub.requests), "the node's request was not closed"


@live
def test_a_node_dying_mid_stream_ends_with_the_usage_chunk_then_the_error_chunk(service, user_client, node_on):
    client, key = user_client
    fund(client, "1.00")
    _, stub = node_on(input_price="1000.00", output_price="1000.00")
    stub.behaviour.answer = "a b c d e f g h"
    stub.behaviour.die_after_chunks = 3

    r, raw = post_stream(service, key, {"stream_options": {"include_usage": True}})

    assert r.status_code == 200
    events = sse_events(raw)
    assert all(name is None for name, _ in events) and "[DONE]" not in [d for _, d in events]
    *content, usage, error = [json.loads(d) for _, d in events]
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in content) == "a b c "
    assert usage["choices"] == [] and usage["usage"]["completion_tokens"] == 2
    assert error["object"] == "chat.completion.chunk" and error["id"] == usage["id"] == content[0]["id"]
    assert error["error"]["code"] == "node_broken_stream" and error["error"]["type"] == "server_error"
    assert error["choices"] == [{"index": 0, "delta": {}, "finish_reason": "error"}]
    settle_usage()
    assert Decimal(str(usage["usage"]["cost"])) == charged(client, Decimal("1.00")) == Decimal("0.002")


@live
def test_the_sdk_raises_the_error_chunk_after_what_was_delivered(service, user_client, node_on):
    client, key = user_client
    fund(client, "1.00")
    _, stub = node_on()
    stub.behaviour.answer = "a b c d e f g h"
    stub.behaviour.die_after_chunks = 3
    sdk, _ = counted_sdk(service, key)
    received = []

    with pytest.raises(openai.APIError) as exc:
        for chunk in sdk.chat.completions.create(
            model=MODEL, messages=MESSAGES, stream=True, stream_options={"include_usage": True}
        ):
            received.append(chunk)

    assert "".join(c.choices[0].delta.content or "" for c in received if c.choices) == "a b c "
    assert received[-1].choices == [] and received[-1].usage.completion_tokens == 2  # the usage chunk came first
    assert exc.value.body["code"] == "node_broken_stream"


@live
def test_a_failure_after_a_keep_alive_is_the_error_chunk_of_the_status_it_would_have_had(service, user_client, node_on):
    client, key = user_client
    fund(client, "1.00")
    _, stub = node_on()
    stub.behaviour.first_byte_delay_s = 0.8
    stub.behaviour.status = 500

    r, raw = post_stream(service, key, {})

    assert r.status_code == 200 and raw.startswith(": keep-alive\n\n")
    (event,) = sse_events(raw)
    error = json.loads(event[1])
    assert error["error"]["code"] == "no_capacity" and error["choices"][0]["finish_reason"] == "error"
    settle_usage()
    assert balance(client) == Decimal("1.00")


@pytest.mark.django_db(transaction=True)
def test_the_web_door_sends_keep_alives_and_the_error_chunk_too(api_client, user_client, node_on, settings):
    settings.INFERENCE_KEEPALIVE_S = KEEPALIVE_S
    fund(user_client[0], "1.00")
    _, stub = node_on()
    stub.behaviour.answer = "a b c d e f g h"
    stub.behaviour.first_byte_delay_s = 0.8
    stub.behaviour.die_after_chunks = 2

    r = api_client.post(
        URL,
        {"model": MODEL, "messages": MESSAGES, "stream": True, "stream_options": {"include_usage": True}},
        format="json",
        **bearer(user_client[1]),
    )
    raw = streamed(r)

    assert r.status_code == 200 and raw.startswith(": keep-alive\n\n")
    *_, usage, error = [json.loads(d) for _, d in sse_events(raw)]
    assert usage["usage"]["completion_tokens"] == 1 and error["error"]["code"] == "node_broken_stream"
    assert "[DONE]" not in raw and "event:" not in raw
    assert Decimal(str(usage["usage"]["cost"])) == InferenceRequest.objects.get().cost


# --- x-should-retry --------------------------------------------------------------------------------------------


@pytest.fixture
def no_key_counters():  # type: ignore[no-untyped-def]
    client = redis.Redis.from_url(settings.KEY_LIMITS_REDIS_URL)
    for name in client.scan_iter("gm:keylim:*"):
        client.delete(name)
    yield
    client.close()


@live
def test_the_lean_door_says_do_not_retry_on_a_4xx_and_the_sdk_sends_it_once(
    service, user_client, node_on, no_key_counters
):
    client, _ = user_client
    fund(client, "1.00")
    node_on()
    _, raw = api_key_create(client=client, name="other-models", allowed_models=["org/other"])
    sdk, sent = counted_sdk(service, raw, max_retries=2)

    with pytest.raises(openai.PermissionDeniedError) as exc:
        sdk.chat.completions.create(model=MODEL, messages=MESSAGES)

    assert exc.value.response.headers["x-should-retry"] == "false" and len(sent) == 1


@live
def test_a_409_that_cannot_succeed_is_not_retried_by_the_sdk(service, user_client, node_on):
    fund(user_client[0], "1.00")
    node_on()
    sdk, sent = counted_sdk(service, user_client[1], max_retries=2)
    once = {"Idempotency-Key": "stream-once"}
    list(sdk.chat.completions.create(model=MODEL, messages=MESSAGES, stream=True, extra_headers=once))

    with pytest.raises(openai.ConflictError) as exc:
        sdk.chat.completions.create(model=MODEL, messages=MESSAGES, stream=True, extra_headers=once)

    assert exc.value.code == "stream_not_replayable" and exc.value.response.headers["x-should-retry"] == "false"
    assert len(sent) == 2  # the first stream, and the 409 once: without the header the SDK sends it twice more


@live
def test_a_429_of_the_lean_door_is_retried_by_the_sdk(service, user_client, node_on, no_key_counters):
    # The SDK waits the 429's Retry-After (the rest of the key's minute, under 60 s), and the retry is served.
    if time.gmtime().tm_sec >= 55:  # both first requests in one minute
        time.sleep(61 - time.gmtime().tm_sec)
    client, _ = user_client
    fund(client, "1.00")
    node_on()
    _, raw = api_key_create(client=client, name="capped", rpm=1)
    plain, _ = counted_sdk(service, raw)
    plain.chat.completions.create(model=MODEL, messages=MESSAGES)
    with pytest.raises(openai.RateLimitError) as exc:
        plain.chat.completions.create(model=MODEL, messages=MESSAGES)
    assert "x-should-retry" not in exc.value.response.headers
    sdk, sent = counted_sdk(service, raw, max_retries=1)

    reply = sdk.chat.completions.create(model=MODEL, messages=MESSAGES)

    assert reply.choices[0].message.content and len(sent) == 2
