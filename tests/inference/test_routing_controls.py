"""OpenRouter's routing controls (inference/routing_controls.py): parsing, applying to ranked candidates, and the
routed relay with real stub nodes."""

from decimal import Decimal

import pytest
from asgiref.sync import async_to_sync

from inference import metering, relay, routing
from inference.errors import BadChatRequest, NoCapacity, NoNodeWithinPrice
from inference.routing import Candidate
from inference.v1.routing_controls import (
    NO_CONTROLS,
    MaxPrice,
    NodeFacts,
    ProviderControls,
    apply_controls,
    model_order,
    node_facts,
    parse_provider,
    route_models,
    route_models_async,
)
from tests.inference.conftest import MODEL

BODY = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}]}


def cand(node_id: int, inp: str = "1", out: str = "2") -> Candidate:
    return Candidate(
        node_id=node_id,
        owner_id=1,
        base_url=f"http://127.0.0.1:9/{node_id}/v1",
        api_key_encrypted="",
        input_price_per_million=Decimal(inp),
        output_price_per_million=Decimal(out),
    )


def facts(**names: float | None) -> dict[int, NodeFacts]:
    """`facts(a=100, b=None)`: node 1 named a (100 ms), node 2 named b (no latency yet), ..."""
    return {i: NodeFacts(name=n, latency_ms=ms) for i, (n, ms) in enumerate(names.items(), start=1)}


# --- Parsing --------------------------------------------------------------------------------------------------


def test_no_provider_object_is_no_controls():
    assert parse_provider(BODY) is NO_CONTROLS
    assert parse_provider({**BODY, "provider": None}).unused
    assert not NO_CONTROLS.needs_facts


def test_a_full_provider_object_is_parsed():
    controls = parse_provider(
        {
            **BODY,
            "provider": {
                "order": ["b", "a"],
                "only": ["a", "b"],
                "ignore": ["c"],
                "allow_fallbacks": False,
                "sort": "latency",
                "max_price": {"prompt": 1.5, "completion": "2"},
                "data_collection": "deny",  # OpenRouter's, not ours: ignored
            },
        }
    )

    assert controls == ProviderControls(
        order=("b", "a"),
        only=frozenset({"a", "b"}),
        ignore=frozenset({"c"}),
        allow_fallbacks=False,
        sort="latency",
        max_price=MaxPrice(prompt=Decimal("1.5"), completion=Decimal("2")),
    )
    assert controls.needs_facts and not controls.unused


@pytest.mark.parametrize(
    ("provider", "attr"),
    [
        ("cheap", "provider"),
        ({"only": "node-a"}, "provider.only"),
        ({"order": ["a", 7]}, "provider.order.1"),
        ({"ignore": [""]}, "provider.ignore.0"),
        ({"allow_fallbacks": "no"}, "provider.allow_fallbacks"),
        ({"sort": "throughput"}, "provider.sort"),
        ({"max_price": 3}, "provider.max_price"),
        ({"max_price": {"prompt": -1}}, "provider.max_price.prompt"),
        ({"max_price": {"completion": "lots"}}, "provider.max_price.completion"),
        ({"max_price": {"prompt": True}}, "provider.max_price.prompt"),
        ({"max_price": {"prompt": "NaN"}}, "provider.max_price.prompt"),
    ],
)
def test_a_bad_provider_value_is_a_400_naming_the_field(provider, attr):
    with pytest.raises(BadChatRequest) as exc:
        parse_provider({**BODY, "provider": provider})

    assert (exc.value.status, exc.value.code, exc.value.attr) == (400, "invalid_request", attr)


def test_fallback_models_follow_the_model_each_once():
    assert model_order(BODY) == [MODEL]
    assert model_order({**BODY, "models": ["x/b", MODEL, "x/c", "x/b"]}) == [MODEL, "x/b", "x/c"]


@pytest.mark.parametrize(
    ("models", "attr"), [("x/b", "models"), (["x/b", 3], "models.1"), ([""], "models.0"), (["m"] * 10, "models")]
)
def test_bad_fallback_models_are_a_400_naming_the_entry(models, attr):
    with pytest.raises(BadChatRequest) as exc:
        model_order({**BODY, "models": models})

    assert exc.value.attr == attr


# --- Applying -------------------------------------------------------------------------------------------------


def test_unused_controls_keep_the_route_as_ranked():
    ranked = [cand(2), cand(1)]

    assert apply_controls(ranked, NO_CONTROLS) == ranked


def test_only_and_ignore_filter_by_node_name():
    ranked, names = [cand(1), cand(2), cand(3)], facts(a=None, b=None, c=None)

    only = apply_controls(ranked, ProviderControls(only=frozenset({"a", "c"})), names)
    ignored = apply_controls(ranked, ProviderControls(ignore=frozenset({"a"})), names)

    assert [c.node_id for c in only] == [1, 3]
    assert [c.node_id for c in ignored] == [2, 3]


def test_no_node_satisfying_the_controls_is_503_no_capacity():
    with pytest.raises(NoCapacity) as exc:
        apply_controls([cand(1), cand(2)], ProviderControls(only=frozenset({"zzz"})), facts(a=None, b=None))

    assert (exc.value.status, exc.value.code) == (503, "no_capacity") and exc.value.retry_after > 0


def test_a_price_ceiling_below_every_node_is_400_no_node_within_price():
    ranked = [cand(1, "1", "2"), cand(2, "3", "1")]

    with pytest.raises(NoNodeWithinPrice) as exc:
        apply_controls(ranked, ProviderControls(max_price=MaxPrice(prompt=Decimal("0.5"))))

    assert (exc.value.status, exc.value.code) == (400, "no_node_within_price")


def test_a_price_ceiling_keeps_the_nodes_within_it_on_both_sides():
    ranked = [cand(1, "1", "5"), cand(2, "3", "1"), cand(3, "1", "1")]

    kept = apply_controls(ranked, ProviderControls(max_price=MaxPrice(prompt=Decimal("2"), completion=Decimal("2"))))

    assert [c.node_id for c in kept] == [3]


def test_only_naming_nodes_that_are_all_too_dear_is_a_price_error_not_capacity():
    ranked, names = [cand(1, "9", "9"), cand(2, "1", "1")], facts(a=None, b=None)
    controls = ProviderControls(only=frozenset({"a"}), max_price=MaxPrice(prompt=Decimal("2")))

    with pytest.raises(NoNodeWithinPrice):
        apply_controls(ranked, controls, names)


def test_sort_by_price_and_by_latency():
    ranked = [cand(1, "5", "5"), cand(2, "1", "1"), cand(3, "2", "2")]
    names = facts(a=50.0, b=None, c=10.0)  # b has no measurement: the prior (1000 ms)

    by_price = apply_controls(ranked, ProviderControls(sort="price"), names)
    by_latency = apply_controls(ranked, ProviderControls(sort="latency"), names)

    assert [c.node_id for c in by_price] == [2, 3, 1]
    assert [c.node_id for c in by_latency] == [3, 1, 2]


def test_order_puts_named_nodes_first_and_others_after_unless_fallbacks_are_off():
    ranked, names = [cand(1), cand(2), cand(3)], facts(a=None, b=None, c=None)

    with_fallbacks = apply_controls(ranked, ProviderControls(order=("c", "b")), names)
    without = apply_controls(ranked, ProviderControls(order=("c", "b"), allow_fallbacks=False), names)
    first_only = apply_controls(ranked, ProviderControls(allow_fallbacks=False), names)

    assert [c.node_id for c in with_fallbacks] == [3, 2, 1]
    assert [c.node_id for c in without] == [3, 2]
    assert [c.node_id for c in first_only] == [1]


def test_order_naming_no_live_node_without_fallbacks_is_503():
    with pytest.raises(NoCapacity):
        apply_controls([cand(1)], ProviderControls(order=("gone",), allow_fallbacks=False), facts(a=None))


def test_node_facts_reads_names_and_latency(node_on):
    node, _ = node_on("alpha", latency_ewma_ms=42.0)

    assert node_facts([node.pk, 999_999]) == {node.pk: NodeFacts(name="alpha", latency_ms=42.0)}


# --- With the router and real nodes ---------------------------------------------------------------------------


def _relay(candidates: list[Candidate]) -> tuple[dict | None, metering.Delivery]:
    delivery = metering.Delivery()
    payload = async_to_sync(relay.relay_complete)(candidates=candidates, body=BODY, delivery=delivery)
    return payload, delivery


@pytest.mark.django_db(transaction=True)
def test_ignore_routes_around_a_node(node_on):
    _, first = node_on("first")
    _, second = node_on("second")
    ranked = routing.route(model=MODEL)
    controls = parse_provider({**BODY, "provider": {"ignore": [_name_of_best(ranked)]}})

    payload, _ = _relay(apply_controls(ranked, controls, node_facts(c.node_id for c in ranked)))

    assert payload is not None
    assert sorted([len(first.chat_requests), len(second.chat_requests)]) == [0, 1]


def _name_of_best(ranked: list[Candidate]) -> str:
    return node_facts([ranked[0].node_id])[ranked[0].node_id].name


def test_max_price_below_every_routed_node_is_400_no_node_within_price(node_on):
    node_on("a", input_price="1.00", output_price="2.00")
    node_on("b", input_price="3.00", output_price="1.00")
    controls = parse_provider({**BODY, "provider": {"max_price": {"prompt": 0.5, "completion": 0.5}}})

    with pytest.raises(NoNodeWithinPrice) as exc:
        apply_controls(routing.route(model=MODEL), controls)

    assert exc.value.attr == "provider.max_price"


# --- Fallback models ------------------------------------------------------------------------------------------


def _router(table: dict[str, list[Candidate] | Exception]):  # type: ignore[no-untyped-def]
    def route(model: str) -> list[Candidate]:
        found = table[model]
        if isinstance(found, Exception):
            raise found
        return found

    return route


def test_fallback_models_are_routed_in_order_leaving_out_those_without_nodes():
    route = _router({"a": NoCapacity("none", retry_after=1), "b": [cand(2)], "c": [cand(3)]})

    routed = route_models(["a", "b", "c"], NO_CONTROLS, route=route)

    assert [(r.model, [c.node_id for c in r.candidates]) for r in routed] == [("b", [2]), ("c", [3])]


def test_no_routable_model_raises_the_first_models_error_or_the_price_ceiling():
    from inference.errors import ModelNotFound

    unknown = _router({"a": ModelNotFound("no a"), "b": NoCapacity("none", retry_after=1)})
    dear = _router({"a": NoCapacity("none", retry_after=1), "b": [cand(2, "9", "9")]})
    ceiling = ProviderControls(max_price=MaxPrice(prompt=Decimal(1)))

    with pytest.raises(ModelNotFound):
        route_models(["a", "b"], NO_CONTROLS, route=unknown)
    with pytest.raises(NoNodeWithinPrice):
        route_models(["a", "b"], ceiling, route=dear)


@pytest.mark.django_db(transaction=True)
def test_fallback_models_route_with_the_controls_async(node_on):
    node, _ = node_on("alpha")
    node_on("beta", model="other/model")

    async def route(model: str) -> list[Candidate]:
        from asgiref.sync import sync_to_async

        return await sync_to_async(routing.route)(model=model)

    controls = parse_provider({**BODY, "provider": {"only": ["alpha"]}})
    routed = async_to_sync(route_models_async)(["other/model", MODEL], controls, route=route)

    assert [(r.model, [c.node_id for c in r.candidates]) for r in routed] == [(MODEL, [node.pk])]
