"""The relay engine: failover before the first byte, never after; metering bills at most what was relayed."""

import asyncio
from decimal import Decimal

from inference import metering, relay
from inference.completion import MAX_TOOL_CALLS, Completion
from inference.metering import Delivery, PromptSize
from inference.routing import route
from tests.inference.conftest import MODEL

BODY = {"model": MODEL, "messages": [{"role": "user", "content": "Tell me something"}], "max_tokens": 64}


def _stream(candidates, body=BODY):  # type: ignore[no-untyped-def]
    delivery = Delivery()

    async def run():  # type: ignore[no-untyped-def]
        return [c async for c, _ in relay.relay_stream(candidates=candidates, body=body, delivery=delivery)]

    return asyncio.run(run()), delivery


def test_a_stream_relays_the_answer_and_the_nodes_usage(node_on):
    node, stub = node_on()
    stub.behaviour.answer = "one two three"
    stub.behaviour.prompt_tokens = 5

    _chunks, delivery = _stream(route(model=MODEL))

    assert delivery.ok and delivery.answer_text == "one two three"
    assert delivery.candidate.node_id == node.pk
    usage = metering.meter(delivery, prompt=PromptSize.of(BODY), max_tokens=64)
    assert (usage.prompt_tokens, usage.completion_tokens, usage.estimated) == (5, 3, False)
    assert stub.chat_requests[0].body["stream_options"] == {"include_usage": True}


def test_failover_before_the_first_byte_reaches_the_next_node(node_on):
    broken, broken_stub = node_on("broken", latency_ewma_ms=10.0)
    good, _good_stub = node_on("good", latency_ewma_ms=500.0)
    broken_stub.behaviour.status = 503

    _chunks, delivery = _stream(route(model=MODEL))

    assert delivery.ok and delivery.candidate.node_id == good.pk
    assert [node_id for node_id, _ in delivery.failures] == [broken.pk]
    assert len(broken_stub.chat_requests) == 1


def test_attempts_are_bounded(node_on, settings):
    settings.INFERENCE_MAX_ATTEMPTS = 2
    stubs = [node_on(f"n{i}")[1] for i in range(3)]
    for stub in stubs:
        stub.behaviour.status = 500

    _, delivery = _stream(route(model=MODEL))

    assert not delivery.started and delivery.error.code == "node_bad_status"
    assert sum(len(s.chat_requests) for s in stubs) == 2


def test_a_node_dying_mid_stream_is_not_retried_and_only_what_was_relayed_is_metered(node_on):
    _first, first_stub = node_on("first", latency_ewma_ms=10.0)
    _second, second_stub = node_on("second", latency_ewma_ms=900.0)
    first_stub.behaviour.answer = "alpha beta gamma delta epsilon"
    first_stub.behaviour.completion_tokens = 1000  # what it would claim; it never gets to say it
    first_stub.behaviour.die_after_chunks = 2

    _chunks, delivery = _stream(route(model=MODEL))

    assert delivery.started and delivery.error.code == "node_broken_stream"
    assert delivery.answer_text == "alpha beta "
    assert second_stub.chat_requests == []
    usage = metering.meter(delivery, prompt=PromptSize.of(BODY), max_tokens=64)
    assert usage.completion_tokens == 3  # ceil(11 chars / 4)
    assert usage.estimated


def test_usage_beyond_what_was_relayed_is_capped():
    delivery = Delivery(
        started=True, relayed_bytes=10, relayed_chars=10, usage={"prompt_tokens": 10**6, "completion_tokens": 500}
    )

    usage = metering.meter(delivery, prompt=PromptSize.of(BODY), max_tokens=64)

    assert usage.completion_tokens == 10
    assert usage.prompt_tokens == PromptSize.of(BODY).cap
    assert usage.estimated


def test_missing_usage_is_estimated_from_text():
    delivery = Delivery(started=True, relayed_bytes=41, relayed_chars=41, usage=None)

    usage = metering.meter(delivery, prompt=PromptSize.of(BODY), max_tokens=64)

    assert usage.completion_tokens == 11
    assert usage.prompt_tokens == PromptSize.of(BODY).estimate
    assert usage.estimated


def test_price_is_per_million_tokens_in_decimal():
    cost = metering.price(
        prompt_tokens=1000, completion_tokens=500, input_per_million=Decimal("1.00"), output_per_million=Decimal("2.00")
    )

    assert cost == Decimal("0.002000")


def test_a_non_stream_completion_fails_over_too(node_on):
    _broken, broken_stub = node_on("broken", latency_ewma_ms=10.0)
    good, good_stub = node_on("good", latency_ewma_ms=500.0)
    broken_stub.behaviour.status = 500
    good_stub.behaviour.answer = "fine"
    delivery = Delivery()

    payload = asyncio.run(relay.relay_complete(candidates=route(model=MODEL), body=BODY, delivery=delivery))

    assert payload["choices"][0]["message"]["content"] == "fine"
    assert delivery.ok and delivery.candidate.node_id == good.pk


def test_a_non_stream_completion_fails_over_from_a_node_that_breaks_mid_answer(node_on):
    """Nothing of a non-stream answer reaches the caller before it is whole, so another node may still answer."""
    broken, broken_stub = node_on("broken", latency_ewma_ms=10.0)
    good, good_stub = node_on("good", latency_ewma_ms=500.0)
    broken_stub.behaviour.answer = "alpha beta gamma delta"
    broken_stub.behaviour.die_after_chunks = 2
    good_stub.behaviour.answer = "whole answer"
    delivery = Delivery()

    payload = asyncio.run(relay.relay_complete(candidates=route(model=MODEL), body=BODY, delivery=delivery))

    assert payload["choices"][0]["message"]["content"] == "whole answer"
    assert delivery.ok and delivery.candidate.node_id == good.pk and delivery.answer_text == "whole answer"
    assert [(node_id, error.code) for node_id, error in delivery.failures] == [(broken.pk, "node_broken_stream")]
    assert metering.meter(delivery, prompt=PromptSize.of(BODY), max_tokens=64).completion_tokens == 2


def test_a_non_stream_completion_is_assembled_from_the_nodes_stream():
    completion = Completion()
    head = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 7, "model": "m"}
    for delta, finish in [
        ({"role": "assistant", "content": ""}, None),
        ({"content": "Hel"}, None),
        ({"content": "lo", "reasoning_content": "think"}, None),
        (
            {
                "tool_calls": [
                    {"index": 0, "id": "call_1", "type": "function", "function": {"name": "f", "arguments": ""}}
                ]
            },
            None,
        ),
        ({"tool_calls": [{"index": 0, "function": {"arguments": '{"a":'}}]}, None),
        ({"tool_calls": [{"index": 0, "function": {"arguments": " 1}"}}]}, None),
        ({}, "tool_calls"),
    ]:
        completion.add({**head, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})

    payload = completion.payload(usage={"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3})

    assert payload == {
        "object": "chat.completion",
        "id": "chatcmpl-1",
        "created": 7,
        "model": "m",
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": "Hello",
                    "reasoning_content": "think",
                    "tool_calls": [
                        {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": '{"a": 1}'}}
                    ],
                },
                "finish_reason": "tool_calls",
            }
        ],
        "usage": {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3},
    }


def test_a_nodes_tool_call_index_cannot_grow_the_answer_without_bound():
    completion = Completion()
    for index in (10**9, -1, *range(2 * MAX_TOOL_CALLS)):
        delta = {"tool_calls": [{"index": index, "function": {"name": "f", "arguments": "x"}}]}
        completion.add({"id": "chatcmpl-1", "choices": [{"index": 0, "delta": delta}]})

    calls = completion.payload(usage=None)["choices"][0]["message"]["tool_calls"]

    assert len(calls) == MAX_TOOL_CALLS
