"""The official `openai` SDK against a real uvicorn process serving /v1/, with real stub nodes."""

import concurrent.futures
import threading
import time
from decimal import Decimal

import httpx
import openai
import pytest

from clients import ledger
from clients.models import LedgerEntry
from inference.models import InferenceRequest
from tests.inference.conftest import MODEL, NODE_KEY, balance, fund, live_node, settle_usage, stale

pytestmark = [
    pytest.mark.live_server,
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("usage_journal_clean"),
]
MESSAGES = [{"role": "user", "content": "Say something nice"}]


def sdk(live_service, key: str) -> openai.OpenAI:  # type: ignore[no-untyped-def]
    return openai.OpenAI(base_url=f"{live_service.base_url}/v1", api_key=key, max_retries=0, timeout=30)


def test_the_sdk_completes_a_chat_and_the_node_gets_its_own_key(live_service, user_client, node_on):
    client, key = user_client
    fund(client, "1.00")
    node, stub = node_on(input_price="1000.00", output_price="1000.00")
    stub.behaviour.answer = "You are great"
    stub.behaviour.prompt_tokens = 6

    reply = sdk(live_service, key).chat.completions.create(
        model=MODEL, messages=MESSAGES, max_tokens=50, temperature=0.2, seed=7
    )

    assert reply.choices[0].message.content == "You are great"
    assert (reply.usage.prompt_tokens, reply.usage.completion_tokens) == (6, 3)
    sent = stub.chat_requests[0]
    assert sent.headers["Authorization"] == f"Bearer {NODE_KEY}"
    assert (sent.body["temperature"], sent.body["seed"], sent.body["max_tokens"]) == (0.2, 7, 50)
    settle_usage()
    record = InferenceRequest.objects.get()
    assert (record.status, record.channel, record.node_id, record.cost) == (
        "completed",
        "direct",
        node.pk,
        Decimal("0.009"),
    )
    assert balance(client) == Decimal("0.991")
    assert reply.id == f"chatcmpl-{record.request_key}"  # ours, not the node's (API.md §11 "Our ids")


def test_the_sdk_streams_a_chat_with_usage(live_service, user_client, node_on):
    client, key = user_client
    fund(client, "1.00")
    _, stub = node_on()
    stub.behaviour.answer = "one two three four"

    chunks = list(
        sdk(live_service, key).chat.completions.create(
            model=MODEL, messages=MESSAGES, stream=True, stream_options={"include_usage": True}
        )
    )

    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "one two three four"
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 4
    settle_usage()
    record = InferenceRequest.objects.get()
    assert record.status == "completed" and record.answer_text == text
    assert balance(client) == Decimal("1.00") - record.cost
    assert {c.id for c in chunks} == {f"chatcmpl-{record.request_key}"}  # every chunk, the usage chunk too


def test_the_sdk_lists_models_with_live_nodes(live_service, user_client, node_on, provider):
    node_on()
    stale(live_node(owner=provider[0], model="org/dormant"))

    models = sdk(live_service, user_client[1]).models.list()

    assert [m.id for m in models.data] == [MODEL]


def test_the_sdk_raises_not_found_for_an_unknown_model(live_service, user_client):
    with pytest.raises(openai.NotFoundError) as exc:
        sdk(live_service, user_client[1]).chat.completions.create(model="nobody/has-this", messages=MESSAGES)

    assert exc.value.code == "model_not_found"


def test_the_sdk_raises_authentication_error_for_a_bad_key(live_service, node_on):
    node_on()

    with pytest.raises(openai.AuthenticationError):
        sdk(live_service, "gmk_not-a-real-key").chat.completions.create(model=MODEL, messages=MESSAGES)


def test_the_sdk_raises_402_when_the_balance_is_too_low(live_service, user_client, node_on):
    node_on()

    with pytest.raises(openai.APIStatusError) as exc:
        sdk(live_service, user_client[1]).chat.completions.create(model=MODEL, messages=MESSAGES)

    assert exc.value.status_code == 402
    assert exc.value.code == "insufficient_funds"


def test_bad_input_is_400_in_openais_shape(live_service, user_client, node_on):
    node_on()
    fund(user_client[0])

    with pytest.raises(openai.BadRequestError) as exc:
        sdk(live_service, user_client[1]).chat.completions.create(model=MODEL, messages=MESSAGES, n=2)

    assert exc.value.body["param"] == "n"


def test_no_live_node_is_503_with_retry_after(live_service, user_client, provider):
    stale(live_node(owner=provider[0]))

    r = httpx.post(
        f"{live_service.base_url}/v1/chat/completions",
        json={"model": MODEL, "messages": MESSAGES},
        headers={"Authorization": f"Bearer {user_client[1]}"},
    )

    assert r.status_code == 503
    assert r.json()["error"]["code"] == "no_capacity" and set(r.json()["error"]) == {"message", "type", "param", "code"}
    assert int(r.headers["Retry-After"]) > 0


def test_a_node_dying_mid_stream_raises_in_the_sdk_and_charges_only_what_was_delivered(
    live_service, user_client, node_on
):
    client, key = user_client
    fund(client, "1.00")
    _node, stub = node_on(input_price="1000.00", output_price="1000.00")
    stub.behaviour.answer = "a b c d e f g h"
    stub.behaviour.die_after_chunks = 3

    received = []
    with pytest.raises(openai.APIError):
        # max_tokens given: omitted, the hold is the whole context window's worth at these prices (API.md §11)
        for chunk in sdk(live_service, key).chat.completions.create(
            model=MODEL, messages=MESSAGES, stream=True, max_tokens=50
        ):
            received.append(chunk.choices[0].delta.content or "")

    assert "".join(received) == "a b c "
    settle_usage()
    record = InferenceRequest.objects.get()
    assert (record.status, record.error_code, record.completion_tokens) == ("failed", "node_broken_stream", 2)
    assert record.cost == Decimal("0.002")  # ceil(6 characters / 4) output tokens; no usage arrived
    assert balance(client) == Decimal("0.998")


def test_a_client_disconnect_cancels_the_upstream_and_settles_what_was_delivered(live_service, user_client, node_on):
    client, key = user_client
    fund(client, "1.00")
    _, stub = node_on()
    stub.behaviour.answer = " ".join(f"w{i}" for i in range(40))
    stub.behaviour.chunk_delay_s = 0.2

    with httpx.stream(
        "POST",
        f"{live_service.base_url}/v1/chat/completions",
        json={"model": MODEL, "messages": MESSAGES, "stream": True},
        headers={"Authorization": f"Bearer {key}"},
        timeout=30,
    ) as r:
        lines = r.iter_lines()
        got = [line for line, _ in zip(lines, range(6), strict=False)]
    assert any("w0" in line for line in got)

    settle_usage()
    record = InferenceRequest.objects.get()
    assert (record.status, record.error_code) == ("failed", "client_disconnected")
    assert 0 < record.completion_tokens < 40 and record.cost > 0
    assert balance(client) == Decimal("1.00") - record.cost
    deadline = time.monotonic() + 10
    while not any(r.method == "DISCONNECT" for r in stub.requests) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert any(r.method == "DISCONNECT" for r in stub.requests), "the upstream request was not cancelled"


def test_forty_parallel_requests_against_a_balance_for_ten_never_overspend(live_service, user_client, node_on):
    client, key = user_client
    # Each request holds max_tokens x output price = 100 x 1000 / 1M = 0.1; the prompt is free: 10 holds fit.
    fund(client, "1.00")
    _, stub = node_on(input_price="0", output_price="1000.00")
    stub.behaviour.answer = "ok"
    stub.behaviour.gate = threading.Event()  # no answer (no refund) until every request got its hold or its 402
    codes: list[int] = []

    def one(_: int) -> None:
        codes.append(
            httpx.post(
                f"{live_service.base_url}/v1/chat/completions",
                json={"model": MODEL, "messages": MESSAGES, "max_tokens": 100},
                headers={"Authorization": f"Bearer {key}"},
                timeout=90,
            ).status_code
        )

    with concurrent.futures.ThreadPoolExecutor(max_workers=40) as pool:
        futures = [pool.submit(one, i) for i in range(40)]
        deadline = time.monotonic() + 60
        while len(stub.chat_requests) + codes.count(402) < 40 and time.monotonic() < deadline:
            time.sleep(0.05)
        held = len(stub.chat_requests)
        stub.behaviour.gate.set()
        for future in futures:
            future.result()

    assert held == codes.count(200) == 10
    assert codes.count(402) == 30
    settle_usage()
    assert InferenceRequest.objects.filter(status="completed").count() == 10
    assert sum(LedgerEntry.objects.values_list("amount", flat=True)) == 0
    assert ledger.reconcile() == []
    spent = sum(InferenceRequest.objects.values_list("cost", flat=True))
    assert balance(client) == Decimal("1.00") - spent >= 0


def test_the_sdk_retrying_with_an_idempotency_key_is_charged_once(live_service, user_client, node_on):
    client, key = user_client
    fund(client, "1.00")
    _, stub = node_on()
    api = sdk(live_service, key)

    first = api.chat.completions.create(model=MODEL, messages=MESSAGES, extra_headers={"Idempotency-Key": "sdk-1"})
    again = api.chat.completions.create(model=MODEL, messages=MESSAGES, extra_headers={"Idempotency-Key": "sdk-1"})

    assert again.id == first.id and again.choices[0].message.content == first.choices[0].message.content
    assert len(stub.chat_requests) == 1
    assert balance(client) == Decimal("1.00") - InferenceRequest.objects.get().cost
