"""The /v1 protocol helpers: our ids in the node's chunks (API.md §11 "Our ids"), the request's checks."""

import json

import pytest

from core.parsers import json_loads
from inference.errors import BadChatRequest
from inference.v1.protocol import OurIdFrames, parse_chat_request, response_id, with_our_id


def test_our_id_replaces_the_nodes_leading_id_without_encoding_the_chunk_again():
    payload = (
        b'{"id":"chatcmpl-node","object":"chat.completion.chunk","choices":[{"delta":{"content":"chatcmpl-node"}}]}'
    )
    chunk = json.loads(payload)

    out = with_our_id(chunk, payload, response_id("abc"))

    assert out == payload.replace(b'"chatcmpl-node","object"', b'"chatcmpl-abc","object"')
    assert json.loads(out)["choices"][0]["delta"]["content"] == "chatcmpl-node"  # content untouched


def test_a_chunk_with_its_id_elsewhere_or_none_is_encoded_again_with_ours():
    for chunk in ({"object": "chat.completion.chunk", "id": "x", "choices": []}, {"choices": []}):
        payload = json.dumps(chunk).encode()

        out = json.loads(with_our_id(chunk, payload, "chatcmpl-abc"))

        assert out == {**chunk, "id": "chatcmpl-abc"}


def test_a_node_id_with_spacing_is_replaced_too():
    payload = b'{"id": "n-1", "choices": []}'

    assert json.loads(with_our_id(json.loads(payload), payload, "chatcmpl-abc")) == {
        "id": "chatcmpl-abc",
        "choices": [],
    }


def test_a_sampling_number_that_parses_as_infinity_is_a_400_naming_it():
    """1e400 is valid JSON that Python reads as infinity, which no JSON encoder can send on to a node as it is."""
    body = b'{"model": "m", "messages": [{"role": "user", "content": "hi"}], "temperature": 1e400}'
    with pytest.raises(BadChatRequest) as refused:
        parse_chat_request(json_loads(body))

    assert refused.value.attr == "temperature"


def test_frames_of_one_stream_reuse_the_encoded_ids():
    frames = OurIdFrames("chatcmpl-abc")
    first, second = (b'{"id":"n-1","choices":[{"delta":{"content":"%d"}}]}' % i for i in (1, 2))

    assert (
        frames.frame(json.loads(first), first)
        == b'data: {"id":"chatcmpl-abc","choices":[{"delta":{"content":"1"}}]}\n\n'
    )
    assert frames.frame(json.loads(second), second).startswith(b'data: {"id":"chatcmpl-abc","choices"')
