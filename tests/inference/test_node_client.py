"""Calls to nodes: the backend key goes to the node only, addresses re-checked at connect time, errors classified."""

import asyncio
import ipaddress
import socket
import time

import pytest

from inference import node_client
from inference.node_client import NodeCallError
from inference.routing import route
from llm_models import endpoint_guard
from tests.inference.conftest import MODEL, NODE_KEY, live_node

BODY = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 16}


def _complete(candidate):  # type: ignore[no-untyped-def]
    """The node's answer, streamed (the relay asks every node to stream): its chunks, out of their batches."""

    async def run():  # type: ignore[no-untyped-def]
        async with node_client.new_http_client() as http, node_client.stream(http, candidate, BODY) as events:
            return [chunk async for batch in events for chunk, _payload in batch]

    return asyncio.run(run())


def _text(chunks) -> str:  # type: ignore[no-untyped-def]
    return "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c.get("choices"))


@pytest.fixture
def dns(monkeypatch):  # type: ignore[no-untyped-def]
    """DNS is outside our system: the guard's resolver answers from this table."""
    table: dict[str, list[str]] = {}

    def resolve(host: str, port: int):  # type: ignore[no-untyped-def]
        if host not in table:
            raise socket.gaierror(socket.EAI_NONAME, "unknown")
        return [ipaddress.ip_address(a) for a in table[host]]

    monkeypatch.setattr(endpoint_guard, "resolve_host", resolve)
    return table


def test_the_node_gets_its_backend_key_and_the_body(node_on):
    _node, stub = node_on()
    stub.behaviour.answer = "pong"

    chunks = _complete(route(model=MODEL)[0])

    assert _text(chunks) == "pong"
    assert stub.chat_requests[0].headers["Authorization"] == f"Bearer {NODE_KEY}"
    assert stub.chat_requests[0].body["messages"] == BODY["messages"]


def test_a_host_name_is_resolved_checked_and_connected_to_by_address(node_on, dns):
    node, stub = node_on()
    dns["node.example.test"] = ["127.0.0.1"]
    node.endpoint_url = f"http://node.example.test:{stub.port}/v1"
    node.save()

    _complete(route(model=MODEL)[0])

    assert stub.chat_requests[0].headers["Host"] == f"node.example.test:{stub.port}"


def test_a_host_that_now_resolves_to_a_metadata_address_is_never_contacted(node_on, dns):
    node, stub = node_on()
    dns["rebind.example.test"] = ["169.254.169.254"]
    node.endpoint_url = f"http://rebind.example.test:{stub.port}/v1"
    node.save()

    with pytest.raises(NodeCallError) as exc:
        _complete(route(model=MODEL)[0])

    assert exc.value.code == "node_unsafe_endpoint"
    assert NODE_KEY not in str(exc.value)


def test_a_private_address_is_refused_unless_the_operator_allows_it(node_on, settings):
    _node, stub = node_on()
    candidate = route(model=MODEL)[0]
    settings.ALLOW_PRIVATE_NODE_ENDPOINTS = False

    with pytest.raises(NodeCallError) as exc:
        _complete(candidate)

    assert exc.value.code == "node_unsafe_endpoint"
    assert stub.chat_requests == []


def test_a_5xx_is_retryable_and_a_400_is_the_clients_fault(node_on):
    _node, stub = node_on()
    candidate = route(model=MODEL)[0]

    stub.behaviour.status = 502
    with pytest.raises(NodeCallError) as exc:
        _complete(candidate)
    assert (exc.value.code, exc.value.retryable, exc.value.node_fault) == ("node_bad_status", True, True)

    stub.behaviour.status = 400
    with pytest.raises(NodeCallError) as exc:
        _complete(candidate)
    assert (exc.value.code, exc.value.retryable, exc.value.node_fault) == ("upstream_rejected", False, False)


def test_a_hanging_node_times_out_after_the_first_token_timeout(node_on, settings):
    settings.INFERENCE_FIRST_TOKEN_TIMEOUT_S = 0.5
    _node, stub = node_on()
    stub.behaviour.hang = True

    began = time.monotonic()
    with pytest.raises(NodeCallError) as exc:
        _complete(route(model=MODEL)[0])

    assert (exc.value.code, exc.value.retryable, exc.value.node_fault) == ("node_timeout", True, True)
    assert 0.4 < time.monotonic() - began < 3


def test_a_node_that_sends_headers_and_then_nothing_times_out_after_the_first_token_timeout(node_on, settings):
    settings.INFERENCE_FIRST_TOKEN_TIMEOUT_S = 0.5
    _node, stub = node_on()
    stub.behaviour.hang_after_headers = True

    began = time.monotonic()
    with pytest.raises(NodeCallError) as exc:
        _complete(route(model=MODEL)[0])

    assert (exc.value.code, exc.value.retryable) == ("node_timeout", True)
    assert 0.4 < time.monotonic() - began < 3


def test_a_slow_steady_stream_outlasts_the_first_token_timeout(node_on, settings):
    settings.INFERENCE_FIRST_TOKEN_TIMEOUT_S = 0.5
    settings.INFERENCE_STREAM_IDLE_TIMEOUT_S = 1.8
    _node, stub = node_on()
    stub.slow_steady(3)

    chunks = _complete(route(model=MODEL)[0])

    assert _text(chunks) == "t0 t1 t2 t3"


def test_a_stream_silent_for_longer_than_the_idle_timeout_is_cut(node_on, settings):
    settings.INFERENCE_STREAM_IDLE_TIMEOUT_S = 0.5
    _node, stub = node_on()
    stub.behaviour.answer = "one two"
    stub.behaviour.chunk_delay_s = 2.0

    with pytest.raises(NodeCallError) as exc:
        _complete(route(model=MODEL)[0])

    assert exc.value.code == "node_timeout"


def test_a_refused_connection_is_unreachable(provider, private_endpoints):
    live_node(owner=provider[0], endpoint_url="http://127.0.0.1:9/v1")  # discard port: nothing listens

    with pytest.raises(NodeCallError) as exc:
        _complete(route(model=MODEL)[0])

    assert exc.value.code == "node_unreachable"


def test_an_oversized_answer_is_cut_off(node_on, settings):
    settings.INFERENCE_MAX_RESPONSE_BYTES = 200
    _node, stub = node_on()
    stub.behaviour.answer = "word " * 200

    with pytest.raises(NodeCallError) as exc:
        _complete(route(model=MODEL)[0])

    assert exc.value.code == "node_response_too_large"


@pytest.mark.parametrize(
    ("base_url", "host", "address"),
    [
        ("http://[::1]:8000/v1", "[::1]:8000", "::1"),
        ("http://[::1]/v1", "[::1]", "::1"),
        ("http://127.0.0.1:8000/v1", "127.0.0.1:8000", "127.0.0.1"),
    ],
)
def test_an_address_node_gets_a_host_header_it_can_parse(settings, base_url, host, address):  # type: ignore[no-untyped-def]
    """An IPv6 address goes in brackets in `Host` (a bare `::1:8000` is not a host and port)."""
    settings.ALLOW_PRIVATE_NODE_ENDPOINTS = True

    pinned = asyncio.run(node_client.pin(base_url, "/chat/completions"))

    assert pinned.host_header == host
    assert pinned.origin.address == address
    assert pinned.target == "/v1/chat/completions"
