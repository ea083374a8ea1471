"""The route step's strategies: the candidate nodes of a request, best first (inference/routing.py ranks them).

- `CachedRoutes` (lean door): the route cached per process for INFERENCE_ROUTE_CACHE_S (inference/v1/lookups.py),
  re-ranked by what this process is relaying to each node now; no route hands the request to the web door.
- `LiveRoutes` (web door): routing.route now, the caller's own fine-tuned models included; no route is its 404 or
  503 (ModelNotFound, NoCapacity).
"""

from collections import defaultdict
from collections.abc import Callable

from asgiref.sync import sync_to_async
from django.conf import settings

from inference import routing
from inference.routing import Candidate
from inference.v1 import lookups
from inference.v1.pipeline import Caller, ChatCall
from inference.v1.protocol import ChatRequest


class CachedRoutes:
    def __init__(self) -> None:
        self.running: dict[int, int] = defaultdict(int)  # requests this process is relaying, by first-choice node

    async def __call__(self, request: ChatRequest, caller: Caller) -> list[Candidate] | None:
        candidates = await lookups.route(request.model)
        return self._by_load(candidates) if candidates else None

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


class LiveRoutes:
    async def __call__(self, request: ChatRequest, caller: Caller) -> list[Candidate] | None:
        return await sync_to_async(routing.route)(model=request.model, client_id=caller.client_id)
