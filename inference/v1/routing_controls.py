"""OpenRouter's routing controls on `/v1` (API.md §11): `provider: {order, only, ignore, allow_fallbacks, sort,
max_price}` and `models: [...]` (fallback models), parsed from the request body and applied to the candidates
`routing.route` ranked.

    controls = parse_provider(data)                      # 400 invalid_request naming the field
    for model in model_order(data):                      # [model, *models]: tried in order
        candidates = routing.route(model=model, ...)
        facts = node_facts([c.node_id for c in candidates]) if controls.needs_facts else {}
        candidates = apply_controls(candidates, controls, facts)   # 503 no_capacity | 400 no_node_within_price

or, all models at once, `route_models(model_order(data), controls, route=...)` (`route_models_async`).

Nodes are named as in the node registry (`Node.name`; several nodes may share a name, and a name then means all
of them). Prices are USD per 1M tokens, compared with the node's input (`prompt`) and output (`completion`) price
for the model. Controls left out cost nothing: `ProviderControls.unused` is true and `apply_controls` returns the
candidates as they are, without a database query (`needs_facts` is false).
"""

from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Literal

from asgiref.sync import sync_to_async
from django.conf import settings

from core.errors import DomainError
from inference.errors import BadChatRequest, NoCapacity, NoNodeWithinPrice
from inference.routing import Candidate
from llm_models.models import Node

SORTS = ("price", "latency")
MAX_NAMES = 100  # node names in one of order / only / ignore
MAX_NAME_LENGTH = 128  # Node.name
MAX_FALLBACK_MODELS = 8  # `models` entries, the request's `model` not counted
MAX_MODEL_NAME_LENGTH = 255  # LlmModel.name
# The price ceiling's precision: the ledger's (6 places); more digits than a price field holds is a 400.
_MAX_PRICE_DIGITS = 12


@dataclass(frozen=True)
class MaxPrice:
    """The most the caller pays, USD per 1M tokens; None: no ceiling on that side."""

    prompt: Decimal | None = None
    completion: Decimal | None = None

    def admits(self, candidate: Candidate) -> bool:
        return (self.prompt is None or candidate.input_price_per_million <= self.prompt) and (
            self.completion is None or candidate.output_price_per_million <= self.completion
        )


@dataclass(frozen=True)
class ProviderControls:
    """The `provider` object of a request; the default is "no controls"."""

    order: tuple[str, ...] = ()
    only: frozenset[str] | None = None  # None: any node; an empty set names no node at all
    ignore: frozenset[str] = frozenset()
    allow_fallbacks: bool = True
    sort: Literal["price", "latency"] | None = None
    max_price: MaxPrice | None = None

    @property
    def unused(self) -> bool:
        return self == NO_CONTROLS

    @property
    def needs_facts(self) -> bool:
        """Whether applying these needs `node_facts` (node names or measured latency): one indexed query."""
        return bool(self.order or self.only is not None or self.ignore or self.sort == "latency")


NO_CONTROLS = ProviderControls()


@dataclass(frozen=True)
class NodeFacts:
    """What the controls read of a node beyond its Candidate: its registry name and measured latency."""

    name: str
    latency_ms: float | None


# --- Parsing -----------------------------------------------------------------------------------------------------


def _names(value: object, field: str) -> tuple[str, ...]:
    if not isinstance(value, list) or len(value) > MAX_NAMES:
        raise BadChatRequest(f"`{field}` must be a list of at most {MAX_NAMES} node names.", attr=field)
    for i, name in enumerate(value):
        if not isinstance(name, str) or not name.strip() or len(name) > MAX_NAME_LENGTH:
            raise BadChatRequest(
                f"`{field}[{i}]` must be a node name of 1 to {MAX_NAME_LENGTH} characters.", attr=f"{field}.{i}"
            )
    return tuple(value)


def _price(value: object, field: str) -> Decimal | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise BadChatRequest(f"`{field}` must be a number of USD per 1M tokens.", attr=field)
    try:
        price = Decimal(str(value))
    except InvalidOperation:
        price = Decimal("NaN")
    if not price.is_finite() or price < 0 or len(price.as_tuple().digits) > _MAX_PRICE_DIGITS:
        raise BadChatRequest(f"`{field}` must be a number of USD per 1M tokens, 0 or more.", attr=field)
    return price


def parse_provider(data: Mapping[str, object]) -> ProviderControls:
    """The request's `provider` object as controls (NO_CONTROLS when absent or null). A value of the wrong kind is
    a 400 `invalid_request` naming the field (`provider.only.2`, `provider.max_price.prompt`, ...). Keys this
    marketplace does not implement (OpenRouter's `data_collection`, `quantizations`, ...) are ignored."""
    provider = data.get("provider")
    if provider is None:
        return NO_CONTROLS
    if not isinstance(provider, dict):
        raise BadChatRequest("`provider` must be an object.", attr="provider")
    order = _names(provider["order"], "provider.order") if provider.get("order") is not None else ()
    only = frozenset(_names(provider["only"], "provider.only")) if provider.get("only") is not None else None
    ignore = _names(provider["ignore"], "provider.ignore") if provider.get("ignore") is not None else ()
    allow_fallbacks = provider.get("allow_fallbacks", True)
    if allow_fallbacks is None:
        allow_fallbacks = True
    if not isinstance(allow_fallbacks, bool):
        raise BadChatRequest("`provider.allow_fallbacks` must be a boolean.", attr="provider.allow_fallbacks")
    sort = provider.get("sort")
    if sort is not None and sort not in SORTS:
        raise BadChatRequest("`provider.sort` must be `price` or `latency`.", attr="provider.sort")
    max_price = None
    raw_max_price = provider.get("max_price")
    if raw_max_price is not None:
        if not isinstance(raw_max_price, dict):
            raise BadChatRequest("`provider.max_price` must be an object.", attr="provider.max_price")
        max_price = MaxPrice(
            prompt=_price(raw_max_price.get("prompt"), "provider.max_price.prompt"),
            completion=_price(raw_max_price.get("completion"), "provider.max_price.completion"),
        )
        if max_price == MaxPrice():
            max_price = None
    return ProviderControls(
        order=order,
        only=only,
        ignore=frozenset(ignore),
        allow_fallbacks=allow_fallbacks,
        sort=sort,
        max_price=max_price,
    )


def model_order(data: Mapping[str, object]) -> list[str]:
    """The models to try, in order: the request's `model`, then its `models` (OpenRouter's fallbacks), each once.
    Call after `parse_chat_request` has checked `model`. A bad `models` is a 400 naming the entry."""
    model = str(data["model"])
    fallbacks = data.get("models")
    if fallbacks is None:
        return [model]
    if not isinstance(fallbacks, list) or len(fallbacks) > MAX_FALLBACK_MODELS + 1:
        raise BadChatRequest(
            f"`models` must be a list of at most {MAX_FALLBACK_MODELS + 1} model names.", attr="models"
        )
    ordered = [model]
    for i, name in enumerate(fallbacks):
        if not isinstance(name, str) or not name.strip() or len(name) > MAX_MODEL_NAME_LENGTH:
            raise BadChatRequest(f"`models[{i}]` must be a model name.", attr=f"models.{i}")
        if name not in ordered:
            ordered.append(name)
    return ordered


# --- Applying ----------------------------------------------------------------------------------------------------


def node_facts(node_ids: Iterable[int]) -> dict[int, NodeFacts]:
    """Name and measured latency of these nodes (one query by primary key)."""
    rows = Node.objects.filter(pk__in=list(node_ids)).values_list("pk", "name", "latency_ewma_ms")
    return {pk: NodeFacts(name=name, latency_ms=latency) for pk, name, latency in rows}


node_facts_async = sync_to_async(node_facts)


def _name(facts: Mapping[int, NodeFacts], candidate: Candidate) -> str | None:
    fact = facts.get(candidate.node_id)
    return fact.name if fact is not None else None


def _latency(facts: Mapping[int, NodeFacts], candidate: Candidate) -> float:
    fact = facts.get(candidate.node_id)
    latency = fact.latency_ms if fact is not None else None
    return latency if latency is not None else settings.INFERENCE_LATENCY_PRIOR_MS


def apply_controls(
    candidates: Sequence[Candidate], controls: ProviderControls, facts: Mapping[int, NodeFacts] | None = None
) -> list[Candidate]:
    """The candidates (best first, as `routing.route` ranked them) that `controls` allow, in the order to try.

    1. `only` keeps the nodes it names, `ignore` drops those it names; none left → NoCapacity (503): a node
       outside `only` is never tried.
    2. `max_price` drops nodes dearer than either ceiling; none left (while step 1 left some) →
       NoNodeWithinPrice (400): the caller must raise the ceiling, retrying is useless.
    3. `sort` reorders by price (input + output) or by measured latency (the route's rank breaks ties); then the
       nodes `order` names come first, in its order.
    4. `allow_fallbacks: false` keeps only the nodes `order` names (or, without `order`, the first node): no
       other node is tried when they fail.

    `facts` (from `node_facts`) is needed when `controls.needs_facts`."""
    if controls.unused:
        return list(candidates)
    facts = facts or {}
    kept = [c for c in candidates if _allowed(_name(facts, c), controls)]
    if not kept:
        raise NoCapacity(
            "No node allowed by `provider` can serve the request right now.",
            retry_after=settings.INFERENCE_RETRY_AFTER_S,
        )
    if controls.max_price is not None:
        ceiling = controls.max_price
        kept = [c for c in kept if ceiling.admits(c)]
        if not kept:
            raise NoNodeWithinPrice(
                "Every node that could serve the request costs more than `provider.max_price`.",
                attr="provider.max_price",
            )
    rank = {c.node_id: i for i, c in enumerate(kept)}
    if controls.sort == "price":
        kept.sort(key=lambda c: (c.input_price_per_million + c.output_price_per_million, rank[c.node_id]))
    elif controls.sort == "latency":
        kept.sort(key=lambda c: (_latency(facts, c), rank[c.node_id]))
    if controls.order:
        position = {name: i for i, name in reversed(list(enumerate(controls.order)))}
        named = [c for c in kept if _name(facts, c) in position]
        named.sort(key=lambda c: position[_name(facts, c) or ""])  # stable: rank/sort within one name
        rest = [c for c in kept if _name(facts, c) not in position]
        if not controls.allow_fallbacks:
            if not named:
                raise NoCapacity(
                    "No node named in `provider.order` can serve the request right now.",
                    retry_after=settings.INFERENCE_RETRY_AFTER_S,
                )
            return named
        return named + rest
    return kept if controls.allow_fallbacks else kept[:1]


def _allowed(name: str | None, controls: ProviderControls) -> bool:
    if controls.only is not None and name not in controls.only:
        return False
    return name not in controls.ignore


# --- Fallback models ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RoutedModel:
    """One model to try and its nodes, in the order to try them (the relay sends `model` in the body to them)."""

    model: str
    candidates: list[Candidate]


def _pick(routed: list[RoutedModel], errors: list[DomainError]) -> list[RoutedModel]:
    if routed:
        return routed
    # Nothing routable: a price ceiling that shut out every model's nodes is the caller's to change (400); else the
    # first model's own error (404 model_not_found, 503 no_capacity).
    priced_out = next((e for e in errors if isinstance(e, NoNodeWithinPrice)), None)
    raise priced_out or errors[0]


def route_models(
    models: Sequence[str],
    controls: ProviderControls,
    *,
    route: Callable[[str], list[Candidate]],
    facts: Callable[[Iterable[int]], Mapping[int, NodeFacts]] = node_facts,
) -> list[RoutedModel]:
    """`models` (from `model_order`) each routed by `route` (e.g. `lambda m: routing.route(model=m, client_id=...)`)
    and controlled, those with no allowed node left out. None left: NoNodeWithinPrice if a price ceiling shut some
    model out, else the first model's error. Routes every model up front: a fallback list is short (at most 9)."""
    routed, errors = [], []
    for model in models:
        try:
            candidates = route(model)
            known = facts(c.node_id for c in candidates) if controls.needs_facts else {}
            routed.append(RoutedModel(model=model, candidates=apply_controls(candidates, controls, known)))
        except DomainError as exc:
            errors.append(exc)
    return _pick(routed, errors)


async def route_models_async(
    models: Sequence[str],
    controls: ProviderControls,
    *,
    route: Callable[[str], Awaitable[list[Candidate]]],
    facts: Callable[[Iterable[int]], Awaitable[Mapping[int, NodeFacts]]] = node_facts_async,
) -> list[RoutedModel]:
    """`route_models` for async callers (the lean path's cached `lean_lookups.route`)."""
    routed, errors = [], []
    for model in models:
        try:
            candidates = await route(model)
            known = await facts([c.node_id for c in candidates]) if controls.needs_facts else {}
            routed.append(RoutedModel(model=model, candidates=apply_controls(candidates, controls, known)))
        except DomainError as exc:
            errors.append(exc)
    return _pick(routed, errors)
