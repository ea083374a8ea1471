"""The stub node is a real HTTP server: check it behaves like an OpenAI-compatible node before trusting it."""

import json

import httpx
import pytest

CHAT = {"model": "stub/model", "messages": [{"role": "user", "content": "Say hello please"}]}


def _events(text: str) -> list[str]:
    return [line.removeprefix("data: ") for line in text.splitlines() if line.startswith("data: ")]


def test_it_lists_models_and_answers_a_chat_with_usage(stub_node):
    stub_node.behaviour.answer = "Hi there"
    stub_node.behaviour.prompt_tokens = 7

    models = httpx.get(f"{stub_node.base_url}/models").json()
    r = httpx.post(f"{stub_node.base_url}/chat/completions", json=CHAT, headers={"Authorization": "Bearer sk-x"})

    assert [m["id"] for m in models["data"]] == ["stub/model"]
    assert r.json()["choices"][0]["message"]["content"] == "Hi there"
    assert r.json()["usage"] == {"prompt_tokens": 7, "completion_tokens": 2, "total_tokens": 9}
    assert stub_node.chat_requests[0].headers["Authorization"] == "Bearer sk-x"
    assert stub_node.chat_requests[0].body == CHAT


def test_it_streams_chunks_then_usage_then_done(stub_node):
    stub_node.behaviour.answer = "one two three"

    r = httpx.post(
        f"{stub_node.base_url}/chat/completions",
        json={**CHAT, "stream": True, "stream_options": {"include_usage": True}},
    )

    events = _events(r.text)
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"]) == "one two three"
    assert chunks[-1]["usage"]["completion_tokens"] == 3


def test_it_fails_with_the_status_it_is_told(stub_node):
    stub_node.behaviour.status = 503

    assert httpx.post(f"{stub_node.base_url}/chat/completions", json=CHAT).status_code == 503


def test_it_hangs_until_the_client_gives_up(stub_node):
    stub_node.behaviour.hang = True

    with pytest.raises(httpx.ReadTimeout):
        httpx.post(f"{stub_node.base_url}/chat/completions", json=CHAT, timeout=0.3)


def test_it_can_die_mid_stream(stub_node):
    stub_node.behaviour.answer = "one two three four"
    stub_node.behaviour.die_after_chunks = 2

    received = []
    with (
        pytest.raises(httpx.RemoteProtocolError),
        httpx.stream("POST", f"{stub_node.base_url}/chat/completions", json={**CHAT, "stream": True}) as r,
    ):
        for line in r.iter_lines():
            received.append(line)
    assert "[DONE]" not in "".join(received)
    assert "two" in "".join(received)
