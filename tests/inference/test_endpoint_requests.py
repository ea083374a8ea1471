"""The request checks and sizes of /v1/completions and /v1/embeddings (inference/v1/completions.py, embeddings.py),
and the text completion assembled from a node's stream."""

import pytest

from inference.errors import BadChatRequest
from inference.v1.completions import TextCompletion, parse_completion_request
from inference.v1.embeddings import parse_embeddings_request


@pytest.mark.parametrize("prompt", ["Hi", ["Hi"], [1, 2, 3], [[1, 2, 3]]])
def test_a_text_completion_takes_one_prompt_in_any_of_openais_forms(prompt, settings):
    request = parse_completion_request({"model": "m", "prompt": prompt, "top_k": 3})

    one = prompt if isinstance(prompt, str) or isinstance(prompt[0], int) else prompt[0]
    assert request.body["prompt"] == one
    assert request.requested_max_tokens == settings.INFERENCE_DEFAULT_MAX_TOKENS
    assert request.body["max_tokens"] == settings.INFERENCE_DEFAULT_MAX_TOKENS and request.body["top_k"] == 3
    assert request.endpoint.path == "/completions"


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"prompt": ["a", "b"]}, "prompt"),
        ({"prompt": ""}, "prompt"),
        ({"prompt": [1, -2]}, "prompt"),
        ({"prompt": "a", "n": 2}, "n"),
        ({"prompt": "a", "best_of": 3}, "best_of"),
        ({"prompt": "a", "max_tokens": 0}, "max_tokens"),
        ({"prompt": "a", "logprobs": 21}, "logprobs"),
        ({"prompt": "a", "suffix": 1}, "suffix"),
    ],
)
def test_a_bad_text_completion_is_refused_naming_the_parameter(body, param):
    with pytest.raises(BadChatRequest) as caught:
        parse_completion_request({"model": "m", **body})
    assert caught.value.attr == param


def test_token_prompts_are_sized_by_their_tokens():
    tokens = parse_completion_request({"model": "m", "prompt": list(range(100))})
    embeddings = parse_embeddings_request({"model": "m", "input": [list(range(10)), "abcdefgh"]})

    assert tokens.endpoint.prompt_of(tokens.body).estimate == 100 + 4
    size = embeddings.endpoint.prompt_of(embeddings.body)
    assert (size.estimate, size.cap) == (10 + 2 + 2 * 4, 18 + 2 * 16 + 64)
    assert not embeddings.requested_max_tokens  # no output tokens held for


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"input": ""}, "input"),
        ({"input": ["a", ""]}, "input"),
        ({"input": ["a"] * 2049}, "input"),
        ({"input": {"text": "a"}}, "input"),
        ({"input": "a", "dimensions": 0}, "dimensions"),
        ({"input": "a", "encoding_format": "int8"}, "encoding_format"),
        ({"input": "a", "stream": True}, "stream"),
        ({"input": "a", "model": ""}, "model"),
    ],
)
def test_a_bad_embeddings_request_is_refused_naming_the_parameter(body, param):
    with pytest.raises(BadChatRequest) as caught:
        parse_embeddings_request({"model": "m", **body})
    assert caught.value.attr == param


def test_a_text_completion_is_assembled_from_its_chunks():
    answer = TextCompletion()
    for text, finish, logprobs in (("Hel", None, {"tokens": ["Hel"]}), ("lo", "length", {"tokens": ["lo"]})):
        answer.add(
            {
                "id": "cmpl-node",
                "object": "text_completion",
                "created": 1,
                "model": "m",
                "choices": [{"index": 0, "text": text, "logprobs": logprobs, "finish_reason": finish}],
            }
        )

    payload = answer.payload(usage={"prompt_tokens": 1})
    assert payload["object"] == "text_completion" and payload["usage"] == {"prompt_tokens": 1}
    assert payload["choices"] == [
        {"index": 0, "text": "Hello", "logprobs": {"tokens": ["Hel", "lo"]}, "finish_reason": "length"}
    ]
