"""The stream pieces of API.md §11 in openai_protocol: the mid-stream error chunk and the keep-alive comment."""

import json

from inference.v1.keep_alive import interval_s
from inference.v1.protocol import KEEP_ALIVE, KEEP_ALIVE_INTERVAL_S, error_chunk, sse
from tests.inference.conftest import sse_events


def test_the_error_chunk_has_openrouters_shape():
    chunk = error_chunk(completion_id="chatcmpl-abc", model="stub/model", message="node died", code="node_error")

    assert chunk["id"] == "chatcmpl-abc" and chunk["object"] == "chat.completion.chunk"
    assert chunk["model"] == "stub/model" and isinstance(chunk["created"], int)
    assert chunk["error"] == {"message": "node died", "type": "server_error", "code": "node_error"}
    assert chunk["choices"] == [{"index": 0, "delta": {}, "finish_reason": "error"}]


def test_the_error_chunk_is_a_plain_data_event_not_an_error_event():
    raw = sse(error_chunk(completion_id="chatcmpl-abc", model="m", message="x", code="node_error")).decode()

    [(name, data)] = sse_events(raw)
    assert name is None and json.loads(data)["choices"][0]["finish_reason"] == "error"


def test_keep_alive_is_an_sse_comment_that_carries_no_event():
    raw = (KEEP_ALIVE + sse({"a": 1}) + KEEP_ALIVE).decode()

    assert KEEP_ALIVE.startswith(b":") and KEEP_ALIVE.endswith(b"\n\n")
    assert sse_events(raw) == [(None, '{"a":1}')]


def test_the_keep_alive_interval_is_the_setting_never_above_the_contracts_10_s(settings):
    settings.INFERENCE_KEEPALIVE_S = 0.5
    short = interval_s()
    settings.INFERENCE_KEEPALIVE_S = 60.0

    assert (short, interval_s()) == (0.5, KEEP_ALIVE_INTERVAL_S) and KEEP_ALIVE_INTERVAL_S <= 10
