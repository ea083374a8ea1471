"""GET /api/v1/llm_models/all-models/ (API.md §3): the models some live node serves, at their lowest prices."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.core.cache import cache
from django.utils import timezone

from llm_models.choices import NodeStatus
from llm_models.models import NodeModel
from tests.conftest import bearer
from tests.factories import LlmModelFactory, make_node
from tests.llm_models.conftest import ALL_MODELS_URL, errors_of


def live_node(owner, **fields):  # type: ignore[no-untyped-def]
    fields.setdefault("last_heartbeat_at", timezone.now())
    return make_node(owner=owner, status=NodeStatus.ONLINE, **fields)[0]


def serve(node, name: str, inp: str, out: str, context_window: int | None = 8192) -> NodeModel:  # type: ignore[no-untyped-def]
    return NodeModel.objects.create(
        node=node,
        model=LlmModelFactory(name=name),
        input_price_per_million=Decimal(inp),
        output_price_per_million=Decimal(out),
        context_window=context_window,
    )


def results(api_client, **params) -> list[dict]:  # type: ignore[no-untyped-def]
    r = api_client.get(ALL_MODELS_URL, params)
    assert r.status_code == 200, r.json()
    return r.json()["results"]


def names(api_client, **params) -> list[str]:  # type: ignore[no-untyped-def]
    return [m["name"] for m in results(api_client, **params)]


def test_a_model_served_by_live_nodes_is_listed_with_count_and_lowest_prices(api_client, provider, other_provider):
    serve(live_node(provider[0]), "org/llama", "0.30", "0.90")
    serve(live_node(other_provider[0]), "org/llama", "0.20", "1.10")

    assert results(api_client) == [
        {
            "name": "org/llama",
            "live_nodes": 2,
            "input_price_per_million": "0.200000",
            "output_price_per_million": "0.900000",
            "context_window": 8192,
        }
    ]


def test_anyone_may_read_the_menu(api_client, user_client, provider):
    serve(live_node(provider[0]), "org/llama", "0.30", "0.90")

    assert api_client.get(ALL_MODELS_URL).status_code == 200
    assert api_client.get(ALL_MODELS_URL, **bearer(user_client[1])).status_code == 200


def test_nothing_is_listed_without_live_nodes(api_client):
    LlmModelFactory(name="org/known-but-unserved")

    r = api_client.get(ALL_MODELS_URL)

    assert r.json() == {"count": 0, "next": None, "previous": None, "results": []}


@pytest.mark.parametrize(
    "how",
    ["offline", "deregistered", "stale", "never_heard_from", "revoked_provider", "deactivated_owner"],
)
def test_nodes_that_are_not_live_do_not_count(api_client, provider, other_provider, settings, how):
    settings.NODE_HEARTBEAT_TIMEOUT_S = 90
    serve(live_node(provider[0]), "org/shared", "0.50", "1.50")
    owner = other_provider[0]
    fields: dict = {}
    if how == "offline":
        fields = {"status": NodeStatus.OFFLINE}
    elif how == "deregistered":
        fields = {"status": NodeStatus.DEREGISTERED, "deregistered_at": timezone.now()}
    elif how == "stale":
        fields = {"last_heartbeat_at": timezone.now() - timedelta(seconds=91)}
    elif how == "never_heard_from":
        fields = {"last_heartbeat_at": None}
    elif how == "revoked_provider":
        owner.is_gpu_provider_approved = False
        owner.save()
    elif how == "deactivated_owner":
        owner.user.is_active = False
        owner.user.save()
    status = fields.pop("status", NodeStatus.ONLINE)
    fields.setdefault("last_heartbeat_at", timezone.now())
    node, _ = make_node(owner=owner, status=status, **fields)
    serve(node, "org/shared", "0.01", "0.01")
    serve(node, "org/only-on-the-dead-node", "0.01", "0.01")

    assert results(api_client) == [
        {
            "name": "org/shared",
            "live_nodes": 1,
            "input_price_per_million": "0.500000",
            "output_price_per_million": "1.500000",
            "context_window": 8192,
        }
    ]


def test_a_node_heard_from_just_within_the_timeout_is_live(api_client, provider, settings):
    settings.NODE_HEARTBEAT_TIMEOUT_S = 90
    serve(live_node(provider[0], last_heartbeat_at=timezone.now() - timedelta(seconds=85)), "org/a", "1", "1")

    assert names(api_client) == ["org/a"]


def test_an_admins_node_counts_without_provider_approval(api_client, admin):
    serve(live_node(admin[0]), "org/a", "1", "1")

    assert names(api_client) == ["org/a"]


def test_the_models_context_window_is_used_when_nodes_give_none(api_client, provider):
    LlmModelFactory(name="org/a", context_window=4096)
    serve(live_node(provider[0]), "org/a", "1", "1", context_window=None)

    assert results(api_client)[0]["context_window"] == 4096


def test_the_largest_context_window_across_nodes_is_shown(api_client, provider, other_provider):
    serve(live_node(provider[0]), "org/a", "1", "1", context_window=8192)
    serve(live_node(other_provider[0]), "org/a", "1", "1", context_window=32768)

    assert results(api_client)[0]["context_window"] == 32768


QWEN = "Qwen/Qwen2.5-72B-Instruct"
LLAMA = "meta-llama/Llama-3.1-8B-Instruct"
MISTRAL = "mistralai/Mistral-7B-Instruct"


@pytest.fixture
def menu(provider, other_provider):  # type: ignore[no-untyped-def]
    LlmModelFactory(name="Qwen/Qwen2.5-72B-Instruct", context_window=None)
    first = live_node(provider[0])
    second = live_node(other_provider[0])
    serve(first, "meta-llama/Llama-3.1-8B-Instruct", "0.20", "0.60", context_window=131072)
    serve(second, "meta-llama/Llama-3.1-8B-Instruct", "0.25", "0.50", context_window=131072)
    serve(first, "mistralai/Mistral-7B-Instruct", "0.10", "0.30", context_window=32768)
    serve(second, "Qwen/Qwen2.5-72B-Instruct", "0.90", "2.00", context_window=None)


def test_models_are_listed_by_name_by_default(api_client, menu):
    assert names(api_client) == [
        "Qwen/Qwen2.5-72B-Instruct",
        "meta-llama/Llama-3.1-8B-Instruct",
        "mistralai/Mistral-7B-Instruct",
    ]


def test_search_matches_part_of_the_name_ignoring_case(api_client, menu):
    assert names(api_client, search="LLAMA") == ["meta-llama/Llama-3.1-8B-Instruct"]
    assert names(api_client, search="instruct") == [
        "Qwen/Qwen2.5-72B-Instruct",
        "meta-llama/Llama-3.1-8B-Instruct",
        "mistralai/Mistral-7B-Instruct",
    ]
    assert names(api_client, search="gpt") == []


@pytest.mark.parametrize(
    ("ordering", "expected"),
    [
        ("live_nodes", [QWEN, MISTRAL, LLAMA]),
        ("-live_nodes", [LLAMA, QWEN, MISTRAL]),
        ("input_price_per_million", [MISTRAL, LLAMA, QWEN]),
        ("-output_price_per_million", [QWEN, LLAMA, MISTRAL]),
        ("-name", [MISTRAL, LLAMA, QWEN]),
        ("context_window", [MISTRAL, LLAMA, QWEN]),
        ("-context_window", [QWEN, LLAMA, MISTRAL]),
    ],
)
def test_ordering(api_client, menu, ordering, expected):
    assert names(api_client, ordering=ordering) == expected


@pytest.mark.parametrize("ordering", ["price", "-owner", "node__token_digest", "-"])
def test_unknown_ordering_is_400(api_client, menu, ordering):
    r = api_client.get(ALL_MODELS_URL, {"ordering": ordering})

    assert r.status_code == 400
    assert [attr for _, attr in errors_of(r)] == ["ordering"]


def test_the_menu_is_paginated(api_client, menu):
    first = api_client.get(ALL_MODELS_URL, {"page_size": 2}).json()
    second = api_client.get(ALL_MODELS_URL, {"page_size": 2, "page": 2}).json()

    assert set(first) == {"count", "next", "previous", "results"}
    assert first["count"] == 3
    assert len(first["results"]) == 2
    assert first["previous"] is None
    assert "page=2" in first["next"]
    assert [m["name"] for m in second["results"]] == ["mistralai/Mistral-7B-Instruct"]
    assert second["next"] is None


def test_a_page_past_the_end_is_404(api_client, menu):
    assert api_client.get(ALL_MODELS_URL, {"page": 5}).status_code == 404


def test_search_and_ordering_combine_with_pagination(api_client, menu):
    body = api_client.get(
        ALL_MODELS_URL, {"search": "instruct", "ordering": "-input_price_per_million", "page_size": 1}
    ).json()

    assert body["count"] == 3
    assert [m["name"] for m in body["results"]] == ["Qwen/Qwen2.5-72B-Instruct"]


def test_the_menu_is_served_from_the_cache_for_all_models_cache_s(api_client, provider, settings):
    settings.ALL_MODELS_CACHE_S = 60
    node = live_node(provider[0])
    serve(node, "org/cached", "0.20", "0.60")
    assert names(api_client) == ["org/cached"]

    node.status = NodeStatus.OFFLINE
    node.save()
    assert names(api_client) == ["org/cached"], "a menu up to ALL_MODELS_CACHE_S old is served"

    cache.clear()  # what the timeout does
    assert names(api_client) == []
