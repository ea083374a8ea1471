"""Which nodes may take a request for a model, best first.

A node qualifies when it is live (`node_live_q`: online, recently heard from, owned by an approved provider),
serves the model, is not cooling down after failures, and is not rented (`unrented_q`). Qualifying nodes are
ranked by a score that adds three ratios to the best value among them (lower is better), each weighted by a
setting:

    latency: latency_ewma_ms / best          (INFERENCE_LATENCY_PRIOR_MS until a node has answered)
    load:    (1 + active_requests + in-flight) / (1 + best)   (reported by heartbeat + our running requests)
    price:   (input + output price per 1M + 0.01) / (best + 0.01)

so a node twice as slow, twice as loaded or twice as dear as the best loses about one point. Ties go to the
lower node id.
"""

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db.models import Count, IntegerField, Min, OuterRef, Q, Subquery, Value
from django.db.models.functions import Coalesce
from django.utils import timezone

from inference.choices import InferenceStatus
from inference.errors import ModelNotFound, NoCapacity
from inference.models import InferenceRequest
from llm_models.models import LlmModel, NodeModel
from llm_models.selectors import node_live_q, node_training_q
from rentals.selectors import node_rented_q

_PRICE_EPSILON = 0.01


@dataclass(frozen=True)
class Candidate:
    """A node able to answer, with what the relay needs to call and bill it (the backend key stays encrypted)."""

    node_id: int
    owner_id: int
    base_url: str
    api_key_encrypted: str
    input_price_per_million: Decimal
    output_price_per_million: Decimal
    score: float = 0.0
    model: str | None = None  # a fallback model of the request (`models`): the name sent to the node instead


def unrented_q(*, now: datetime, prefix: str = "") -> Q:
    """Nodes not rented out right now: a rented node belongs to its renter and gets no public work."""
    return ~node_rented_q(now=now, prefix=prefix)


def _cooling_q(now: datetime) -> Q:
    return Q(node__cooldown_until__gt=now)


def visible_q(*, client_id: int | None, prefix: str = "") -> Q:
    """Models a client may route to: every public one, and its own private (fine-tuned) ones (API.md §13). The
    one place that rule lives: every inference path routes through `route`."""
    public = Q(**{f"{prefix}owner__isnull": True})
    return public if client_id is None else public | Q(**{f"{prefix}owner_id": client_id})


def route(*, model: str, now: datetime | None = None, client_id: int | None = None) -> list[Candidate]:
    """Nodes that may serve `model` now to `client_id`, best first. Raises ModelNotFound (404) or NoCapacity (503).

    A private model is another client's: ModelNotFound, as if it did not exist. Without `client_id` (the lean
    path's shared cache) only public models route, so a private one falls to the Django path, which knows the
    client. A node running a fine-tuning job serves no inference (~node_training_q)."""
    now = now or timezone.now()
    live = NodeModel.objects.filter(model__name=model).filter(visible_q(client_id=client_id, prefix="model__"))
    live = live.filter(node_live_q(now=now, prefix="node__"))
    live = live.filter(unrented_q(now=now, prefix="node__")).exclude(node_training_q(prefix="node__"))
    rows = list(
        live.exclude(_cooling_q(now))
        .annotate(inflight=_running_on_node())
        .values(
            "node_id",
            "node__owner_id",
            "node__endpoint_url",
            "node__backend_api_key_encrypted",
            "node__latency_ewma_ms",
            "node__active_requests",
            "inflight",
            "input_price_per_million",
            "output_price_per_million",
        )
    )
    if not rows:
        if not LlmModel.objects.filter(visible_q(client_id=client_id), name=model).exists():
            raise ModelNotFound(f"No node has ever served the model {model!r}.")
        soonest = live.filter(_cooling_q(now)).aggregate(t=Min("node__cooldown_until"))["t"]
        retry_after = (
            max(1, math.ceil((soonest - now).total_seconds())) if soonest else settings.INFERENCE_RETRY_AFTER_S
        )
        raise NoCapacity(f"No node can serve {model!r} right now; retry later.", retry_after=retry_after)
    return rank(rows)


def _running_on_node() -> Coalesce:
    """Our requests running on the row's node, counted in a subquery over the partial index of running rows
    (`inference_running_node_idx`): a join of the node's requests, filtered in the count, would read every request
    the node ever served, and routing would slow down as the table grows."""
    running = (
        InferenceRequest.objects.filter(node_id=OuterRef("node_id"), status=InferenceStatus.RUNNING)
        .order_by()
        .values("node_id")
        .annotate(n=Count("*"))
        .values("n")
    )
    return Coalesce(Subquery(running, output_field=IntegerField()), Value(0))


def rank(rows: Sequence[Mapping[str, Any]]) -> list[Candidate]:
    """Score rows of `route`'s query (see the module docstring) and return them as candidates, best first."""
    prior = settings.INFERENCE_LATENCY_PRIOR_MS
    latency = [r["node__latency_ewma_ms"] or prior for r in rows]
    load = [1 + r["node__active_requests"] + r["inflight"] for r in rows]
    price = [float(r["input_price_per_million"] + r["output_price_per_million"]) + _PRICE_EPSILON for r in rows]
    best_latency, best_load, best_price = max(min(latency), 1.0), min(load), min(price)
    candidates = []
    for i, r in enumerate(rows):
        score = (
            settings.INFERENCE_WEIGHT_LATENCY * latency[i] / best_latency
            + settings.INFERENCE_WEIGHT_LOAD * load[i] / best_load
            + settings.INFERENCE_WEIGHT_PRICE * price[i] / best_price
        )
        candidates.append(
            Candidate(
                node_id=r["node_id"],
                owner_id=r["node__owner_id"],
                base_url=r["node__endpoint_url"],
                api_key_encrypted=r["node__backend_api_key_encrypted"],
                input_price_per_million=r["input_price_per_million"],
                output_price_per_million=r["output_price_per_million"],
                score=score,
            )
        )
    candidates.sort(key=lambda c: (c.score, c.node_id))
    return candidates
