"""What reaches the node and what the hold covers (inference/openai_params.py)."""

import pytest
from django.conf import settings

from inference.errors import BadChatRequest
from inference.v1.params import context_window, hold_max_tokens, node_body, requested_max_tokens, user_hash
from inference.v1.protocol import parse_chat_request
from llm_models.models import LlmModel, NodeModel
from tests.inference.conftest import MODEL

BODY = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}]}


def test_every_field_reaches_the_node_but_the_marketplaces_own():
    data = {
        **BODY,
        "top_k": 20,
        "min_p": 0.05,
        "seed": 7,
        "reasoning_effort": "high",
        "chat_template_kwargs": {"enable_thinking": False},
        "prompt_cache_key": "pc-1",
        "provider": {"only": ["a"]},
        "models": ["x/b"],
        "session_id": "s-1",
    }

    sent = node_body(data)

    assert sent == {
        **BODY,
        "top_k": 20,
        "min_p": 0.05,
        "seed": 7,
        "reasoning_effort": "high",
        "chat_template_kwargs": {"enable_thinking": False},
        "prompt_cache_key": "pc-1",
    }


def test_user_reaches_the_node_only_as_a_stable_salted_hash(settings):
    sent = node_body({**BODY, "user": "alice@example.com"})

    assert sent["user"].startswith("u-") and "alice" not in sent["user"] and len(sent["user"]) == 34
    assert node_body({**BODY, "user": "alice@example.com"})["user"] == sent["user"]
    assert user_hash("bob") != sent["user"]
    settings.INFERENCE_USER_HASH_SALT = "another-salt"
    assert user_hash("alice@example.com") != sent["user"]


@pytest.mark.parametrize("user", [7, "x" * 257])
def test_a_bad_user_is_a_400(user):
    with pytest.raises(BadChatRequest) as exc:
        node_body({**BODY, "user": user})

    assert exc.value.attr == "user"


def test_an_omitted_completion_limit_is_not_sent_and_a_given_one_is():
    assert "max_tokens" not in node_body(BODY) and "max_completion_tokens" not in node_body(BODY)
    assert "max_tokens" not in node_body({**BODY, "max_tokens": None})
    assert node_body({**BODY, "max_completion_tokens": 30})["max_completion_tokens"] == 30
    assert requested_max_tokens({**BODY, "max_completion_tokens": 30, "max_tokens": 10}) == 30
    assert requested_max_tokens({**BODY, "max_tokens": 10}) == 10
    assert requested_max_tokens(BODY) is None


def test_the_parser_sends_the_node_body_and_keeps_the_marketplace_fields_for_routing():
    parsed = parse_chat_request({**BODY, "top_k": 5, "provider": {"only": ["a"]}, "models": ["m2"], "session_id": "s"})

    assert "max_tokens" not in parsed.body and parsed.requested_max_tokens is None
    assert parsed.body["top_k"] == 5 and not {"provider", "models", "session_id"} & parsed.body.keys()
    assert parsed.controls.only == frozenset({"a"}) and parsed.fallbacks == ("m2",) and parsed.session == "s"


def test_the_hold_covers_what_was_asked_or_what_the_window_leaves():
    assert hold_max_tokens(requested=100, context_window=8192, prompt_tokens=50) == 100
    assert hold_max_tokens(requested=None, context_window=8192, prompt_tokens=192) == 8000
    assert hold_max_tokens(requested=None, context_window=100, prompt_tokens=500) == 1
    assert hold_max_tokens(requested=None, context_window=None, prompt_tokens=5) == settings.INFERENCE_MAX_TOKENS_LIMIT


def test_the_context_window_is_the_largest_known_among_the_nodes(node_on):
    first, _ = node_on("a")
    second, _ = node_on("b")
    assert context_window(model=MODEL, node_ids=[first.pk, second.pk]) is None

    LlmModel.objects.filter(name=MODEL).update(context_window=4096)
    assert context_window(model=MODEL, node_ids=[first.pk]) == 4096
    NodeModel.objects.filter(node=second).update(context_window=32768)
    assert context_window(model=MODEL, node_ids=[first.pk, second.pk]) == 32768
    assert context_window(model=MODEL, node_ids=[first.pk]) == 4096
