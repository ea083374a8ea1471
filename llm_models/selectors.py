"""Reads of nodes and models."""

from datetime import UTC, datetime, timedelta
from typing import Any

from django.conf import settings
from django.db.models import Count, Exists, Max, Min, OuterRef, Q, QuerySet
from django.utils import timezone

from core.caching import computed_at_most_every
from llm_models.choices import OPEN_COMMAND_STATUSES, NodeCommandAction, NodeStatus
from llm_models.models import LlmModel, Node, NodeCommand, NodeMetricSample, NodeModel


def metrics_slot_start(now: datetime) -> datetime:
    """The start of the NODE_METRICS_SAMPLE_EVERY_S slot, counted from the Unix epoch, that holds `now`.

    A sample is due at the first heartbeat of each slot: aligned slots (rather than "a period since the last
    sample") keep one sample in every slot a node heartbeats in, however its heartbeats jitter, so the number of
    samples in a window measures uptime (market/selectors.py)."""
    every = settings.NODE_METRICS_SAMPLE_EVERY_S
    seconds = int(now.timestamp())
    return datetime.fromtimestamp(seconds - seconds % every, tz=UTC)


def node_live_q(*, now: datetime | None = None, prefix: str = "") -> Q:
    """Live: online, heard from within the timeout, and owned by an approved provider (or an admin)."""
    now = now or timezone.now()
    cutoff = now - timedelta(seconds=settings.NODE_HEARTBEAT_TIMEOUT_S)
    p = prefix
    return Q(
        **{f"{p}status": NodeStatus.ONLINE, f"{p}last_heartbeat_at__gte": cutoff, f"{p}owner__user__is_active": True}
    ) & (Q(**{f"{p}owner__is_gpu_provider_approved": True}) | Q(**{f"{p}owner__user__is_staff": True}))


def node_training_q(*, prefix: str = "") -> Q:
    """Nodes running a fine-tuning job now (an open `train` command, or a `train_cancel` not yet acknowledged: API.md
    §13): they serve no public inference and cannot be rented. Routing and rentals exclude `node_training_q()`."""
    training = NodeCommand.objects.filter(
        node_id=OuterRef(f"{prefix}pk"),
        action__in=(NodeCommandAction.TRAIN, NodeCommandAction.TRAIN_CANCEL),
        status__in=OPEN_COMMAND_STATUSES,
    )
    return Q(Exists(training))


def node_list_live(*, now: datetime | None = None) -> QuerySet[Node]:
    return Node.objects.filter(node_live_q(now=now))


def node_get_by_token_digest(*, digest: str) -> Node | None:
    """The registered (not deregistered) node holding this token, with its owner, in one query."""
    return (
        Node.objects.select_related("owner__user")
        .filter(token_digest=digest)
        .exclude(status=NodeStatus.DEREGISTERED)
        .first()
    )


def model_list_available_cached() -> list[dict]:
    """model_list_available(), computed at most once per ALL_MODELS_CACHE_S in the shared cache.

    The menu is public and the same for everyone, and its query scans every live node (about 20 ms at 10,000
    nodes): a menu a couple of seconds old is a fair trade for not paying that on every page view.
    """
    return computed_at_most_every(settings.ALL_MODELS_CACHE_S, "llm_models:all-models", model_list_available)


def model_get_available(*, name: str, now: datetime | None = None) -> LlmModel | None:
    """The model called `name` if at least one live node serves it (what model_list_available lists), else None."""
    live = Node.objects.filter(node_live_q(now=now)).values("pk")
    served = NodeModel.objects.filter(node_id__in=live).values("model_id")
    return LlmModel.objects.filter(name=name, pk__in=served, owner__isnull=True).first()


def model_list_private(*, client_id: int, now: datetime | None = None) -> QuerySet[LlmModel]:
    """The client's own private (fine-tuned) models that a live node serves: in its `/v1/models` only."""
    live = Node.objects.filter(node_live_q(now=now)).values("pk")
    served = NodeModel.objects.filter(node_id__in=live).values("model_id")
    return LlmModel.objects.filter(owner_id=client_id, pk__in=served)


def model_get_private(*, name: str, client_id: int, now: datetime | None = None) -> LlmModel | None:
    return model_list_private(client_id=client_id, now=now).filter(name=name).first()


def model_list_available(*, now: datetime | None = None) -> list[dict]:
    """Every model with at least one live node: live node count, lowest prices, context window.

    Aggregated by model id (a hash aggregate over integers, no sort of the served rows), then named: two queries,
    the second over at most one row per model. (node, model) is unique, so counting rows counts nodes.
    """
    live = Node.objects.filter(node_live_q(now=now)).values("pk")
    rows = (
        NodeModel.objects.filter(node_id__in=live, model__owner__isnull=True)
        .values("model_id")
        .annotate(
            live_nodes=Count("id"),
            input_price_per_million=Min("input_price_per_million"),
            output_price_per_million=Min("output_price_per_million"),
            node_context_window=Max("context_window"),
        )
        .order_by()
    )
    by_id = {row["model_id"]: row for row in rows}
    names = LlmModel.objects.filter(pk__in=by_id).values_list("pk", "name", "context_window")
    return [
        {
            "name": name,
            "live_nodes": by_id[pk]["live_nodes"],
            "input_price_per_million": by_id[pk]["input_price_per_million"],
            "output_price_per_million": by_id[pk]["output_price_per_million"],
            "context_window": by_id[pk]["node_context_window"] or context_window,
        }
        for pk, name, context_window in sorted(names, key=lambda row: row[1])
    ]


def node_metrics_history(*, node: Node, now: datetime | None = None, hours: int = 24) -> list[dict[str, Any]]:
    """A node's kept metric samples over the last `hours`, oldest first, for its chart."""
    now = now or timezone.now()
    samples = (
        NodeMetricSample.objects.filter(node=node, recorded_at__gte=now - timedelta(hours=hours))
        .order_by("recorded_at")
        .values_list("recorded_at", "metrics", "active_requests")
    )
    return [
        {
            "t": recorded_at.isoformat(),
            "gpu_utilization": (metrics or {}).get("gpu_utilization"),
            "gpu_memory_used_mb": (metrics or {}).get("gpu_memory_used_mb"),
            "gpu_temperature_c": (metrics or {}).get("gpu_temperature_c"),
            "active_requests": active_requests,
        }
        for recorded_at, metrics, active_requests in samples[:5000]
    ]
