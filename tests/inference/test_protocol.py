"""The /v1 protocol helpers: our ids in the node's chunks (API.md §11 "Our ids")."""

import json

from inference.v1.protocol import response_id, with_our_id


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
