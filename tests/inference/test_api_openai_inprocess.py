"""/v1/ through Django's test client: input checks and the OpenAI error shape (the SDK tests use a real server)."""

import json

import pytest
from asgiref.sync import async_to_sync

from tests.conftest import bearer
from tests.inference.conftest import MODEL, fund

URL = "/v1/chat/completions"


def _error(r):  # type: ignore[no-untyped-def]
    body = r.json()
    assert set(body) == {"error"} and set(body["error"]) == {"message", "type", "param", "code"}, body
    return body["error"]


def test_anonymous_is_401_in_openais_shape(api_client):
    r = api_client.post(URL, {"model": MODEL, "messages": []}, format="json")

    assert r.status_code == 401
    assert _error(r)["code"] == "invalid_api_key"


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"messages": [{"role": "user", "content": "x"}]}, "model"),
        ({"model": MODEL, "messages": []}, "messages"),
        ({"model": MODEL, "messages": [{"role": "wizard", "content": "x"}]}, "messages.0"),
        ({"model": MODEL, "messages": [{"role": "user", "content": "x"}], "max_tokens": 0}, "max_tokens"),
        ({"model": MODEL, "messages": [{"role": "user", "content": "x"}], "stream": "yes"}, "stream"),
        ({"model": MODEL, "messages": [{"role": "user", "content": "x"}], "temperature": "hot"}, "temperature"),
    ],
)
def test_bad_input_is_400_naming_the_param(api_client, user_client, body, param):
    r = api_client.post(URL, body, format="json", **bearer(user_client[1]))

    assert r.status_code == 400
    assert (_error(r)["param"], _error(r)["type"]) == (param, "invalid_request_error")


@pytest.mark.django_db(transaction=True)
def test_a_non_stream_chat_answers_with_the_billed_usage(api_client, user_client, node_on):
    fund(user_client[0], "1.00")
    _, stub = node_on()
    stub.behaviour.answer = "hello there"
    stub.behaviour.completion_tokens = 999  # more than was relayed: capped

    r = api_client.post(
        URL,
        {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "tools": [], "unknown": 1},
        format="json",
        **bearer(user_client[1]),
    )

    assert r.status_code == 200, r.content
    assert r.json()["choices"][0]["message"]["content"] == "hello there"
    assert r.json()["usage"]["completion_tokens"] == len("hello there")
    from inference.models import InferenceRequest

    assert r.json()["id"] == f"chatcmpl-{InferenceRequest.objects.get().request_key}" != "chatcmpl-stub"
    # Every field reaches the node (API.md §11), an unknown one too; an omitted max_tokens is the node's default.
    sent = stub.chat_requests[0].body
    assert sent["unknown"] == 1 and sent["tools"] == [] and "max_tokens" not in sent


@pytest.mark.django_db(transaction=True)
def test_when_every_node_fails_before_answering_it_is_503(api_client, user_client, node_on):
    fund(user_client[0], "1.00")
    _, stub = node_on()
    stub.behaviour.status = 500

    r = api_client.post(
        URL, {"model": MODEL, "messages": [{"role": "user", "content": "hi"}]}, format="json", **bearer(user_client[1])
    )

    assert r.status_code == 503 and _error(r)["code"] == "no_capacity"
    assert int(r["Retry-After"]) > 0


@pytest.mark.django_db(transaction=True)
def test_a_stream_through_the_django_view_relays_chunks_then_the_billed_usage(api_client, user_client, node_on):
    # The live-server tests reach the lean door (inference/v1/asgi.py); this view serves streams sent with an
    # Idempotency-Key, and every stream where the lean path is off (SQLite, no Redis).
    from decimal import Decimal

    from inference.models import InferenceRequest
    from tests.inference.conftest import balance, sse_events

    fund(user_client[0], "1.00")
    _, stub = node_on()
    stub.behaviour.answer = "one two three"

    r = api_client.post(
        URL,
        {
            "model": MODEL,
            "messages": [{"role": "user", "content": "count"}],
            "stream": True,
            "stream_options": {"include_usage": True},
        },
        format="json",
        **bearer(user_client[1]),
    )

    assert r.status_code == 200 and r["Content-Type"] == "text/event-stream"

    async def read() -> bytes:  # the view's stream is an async iterator, as it is under ASGI
        return b"".join([part async for part in r.streaming_content])

    events = sse_events(async_to_sync(read)().decode())
    assert events[-1] == (None, "[DONE]")
    chunks = [json.loads(data) for _, data in events[:-1]]
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert text == "one two three"
    assert chunks[-1]["choices"] == [] and chunks[-1]["model"] == MODEL
    assert chunks[-1]["usage"]["completion_tokens"] == 3
    record = InferenceRequest.objects.get()
    assert record.status == "completed" and record.answer_text == text
    assert balance(user_client[0]) == Decimal("1.00") - record.cost
    assert {c["id"] for c in chunks} == {f"chatcmpl-{record.request_key}"}  # ours on every chunk


@pytest.mark.django_db(transaction=True)
def test_a_web_door_stream_the_client_leaves_is_recorded_and_settles_what_was_delivered(user_client, node_on):
    # The pipeline's own close path (Django's response closes its iterator when the client goes away).
    from decimal import Decimal

    from inference.models import InferenceRequest
    from inference.v1 import web
    from inference.v1.pipeline import Caller
    from inference.v1.protocol import parse_chat_request
    from tests.inference.conftest import balance

    client = user_client[0]
    fund(client, "1.00")
    _, stub = node_on()
    stub.behaviour.answer = " ".join(f"w{i}" for i in range(40))
    stub.behaviour.chunk_delay_s = 0.05
    chat = parse_chat_request({"model": MODEL, "messages": [{"role": "user", "content": "go"}], "stream": True})

    async def leave_after_two_chunks():  # type: ignore[no-untyped-def]
        call = await web.PIPELINE.open(chat, Caller(client_id=client.pk))
        events = web.PIPELINE.events(call)
        got = [await anext(events), await anext(events)]
        await events.aclose()
        return call, got

    call, got = async_to_sync(leave_after_two_chunks)()

    assert all(json.loads(frame[len(b"data: ") :])["id"] == call.id for frame in got)
    record = InferenceRequest.objects.get()
    assert (record.status, record.error_code, record.request_key) == ("failed", "client_disconnected", call.key)
    assert 0 < record.completion_tokens < 40 and record.cost > 0
    assert balance(client) == Decimal("1.00") - record.cost  # the rest of the hold released
