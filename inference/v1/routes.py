"""The route step's strategies: the candidate nodes of a request, best first (inference/routing.py ranks them).

- `CachedRoutes` (lean door): the route cached per process for INFERENCE_ROUTE_CACHE_S (inference/v1/lookups.py),
  re-ranked by what this process is relaying to each node now; no route hands the request to the web door.
- `LiveRoutes` (web door): routing.route now, the caller's own fine-tuned models included; no route is its 404 or
  503 (ModelNotFound, NoCapacity).

Both apply the request's routing controls (`provider`, fallback `models`: v1/routing_controls.py) and its sticky
session (v1/sessions.py) the same way, each only when the request carries them: a plain request costs no lookup
more. A routing control that refuses (503 `no_capacity`, 400 `no_node_within_price`) refuses before anything is
held; the lean door hands such a request to the web door, which routes it again and answers the error.
"""

import dataclasses
from collections import defaultdict
from collections.abc import Callable

from asgiref.sync import sync_to_async
from django.conf import settings

from core.errors import DomainError
from inference import routing
from inference.errors import NoCapacity
from inference.routing import Candidate
from inference.v1 import lookups
from inference.v1.params import context_window
from inference.v1.pipeline import Caller, ChatCall
from inference.v1.protocol import ChatRequest
from inference.v1.routing_controls import RoutedModel, route_models, route_models_async
from inference.v1.sessions import prefer_node, session_node_async


def with_models(request: ChatRequest, routed: list[RoutedModel]) -> list[Candidate]:
    """The controlled candidates of each model, in the order to try them; those of a model other than the one
    asked carry its name (Candidate.model: node_client sends it, the call is recorded and billed as it)."""
    return [
        c if r.model == request.model else dataclasses.replace(c, model=r.model) for r in routed for c in r.candidates
    ]


def windows(request: ChatRequest, candidates: list[Candidate]) -> dict[str, list[int]]:
    """The candidates' node ids by the model each would answer."""
    by_model: dict[str, list[int]] = {}
    for c in candidates:
        by_model.setdefault(c.model or request.model, []).append(c.node_id)
    return by_model


def largest(found: list[int | None]) -> int | None:
    """The window that covers every model tried: the largest, None (unknown) if any is unknown."""
    return None if not found or None in found else max(w for w in found if w is not None)


async def steer(request: ChatRequest, caller: Caller, candidates: list[Candidate]) -> list[Candidate]:
    """The session's node first, while it is among the candidates (one Redis read, only with a session)."""
    if request.session is None:
        return candidates
    node_id = await session_node_async(client_id=caller.client_id, session=request.session)
    return prefer_node(candidates, node_id)


async def _cached_route(model: str) -> list[Candidate]:
    candidates = await lookups.route(model)
    if not candidates:
        raise NoCapacity("No route.", retry_after=0)  # the web door answers with the precise error
    return candidates


class CachedRoutes:
    def __init__(self) -> None:
        self.running: dict[int, int] = defaultdict(int)  # requests this process is relaying, by first-choice node

    async def __call__(self, request: ChatRequest, caller: Caller) -> list[Candidate] | None:
        if request.plainly_routed:
            candidates = await lookups.route(request.model)
            if not candidates:
                return None
            candidates = self._by_load(candidates)
        else:
            try:
                routed = await route_models_async(
                    request.models, request.controls, route=_cached_route, facts=lookups.node_facts
                )
            except DomainError:
                return None  # the web door routes it again and answers the error (503, 400, 404)
            candidates = with_models(request, routed)
        return await steer(request, caller, candidates)

    async def window(self, request: ChatRequest, candidates: list[Candidate]) -> int | None:
        return largest([await lookups.context_window(m, ids) for m, ids in windows(request, candidates).items()])

    def _by_load(self, candidates: list[Candidate]) -> list[Candidate]:
        """The cached ranking, with what this process is relaying to each node added to its load."""
        if not any(self.running.get(c.node_id) for c in candidates):
            return candidates
        weight = settings.INFERENCE_WEIGHT_LOAD
        return sorted(candidates, key=lambda c: (c.score + weight * self.running.get(c.node_id, 0), c.node_id))

    def relaying(self, call: ChatCall) -> Callable[[], None]:
        """Count the call on its first-choice node while it is relayed; returns what ends the count."""
        first = call.candidates[0].node_id
        self.running[first] += 1

        def done() -> None:
            self.running[first] -= 1

        return done


def live_route(request: ChatRequest, *, client_id: int | None) -> list[Candidate]:
    """The request's candidates now (sync): its models routed for this client and its routing controls applied."""
    if request.plainly_routed:
        return routing.route(model=request.model, client_id=client_id)
    routed = route_models(
        request.models, request.controls, route=lambda model: routing.route(model=model, client_id=client_id)
    )
    return with_models(request, routed)


def live_window(request: ChatRequest, candidates: list[Candidate]) -> int | None:
    return largest([context_window(model=m, node_ids=ids) for m, ids in windows(request, candidates).items()])


class LiveRoutes:
    async def __call__(self, request: ChatRequest, caller: Caller) -> list[Candidate] | None:
        candidates = await sync_to_async(live_route)(request, client_id=caller.client_id)
        return await steer(request, caller, candidates)

    async def window(self, request: ChatRequest, candidates: list[Candidate]) -> int | None:
        return await sync_to_async(live_window)(request, candidates)
