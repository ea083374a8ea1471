"""Reads of nodes and models."""

from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import Count, Max, Min, Q, QuerySet
from django.utils import timezone

from llm_models.choices import NodeStatus
from llm_models.models import Node, NodeModel


def node_live_q(*, now: datetime | None = None, prefix: str = "") -> Q:
    """Live: online, heard from within the timeout, and owned by an approved provider (or an admin)."""
    now = now or timezone.now()
    cutoff = now - timedelta(seconds=settings.NODE_HEARTBEAT_TIMEOUT_S)
    p = prefix
    return Q(
        **{f"{p}status": NodeStatus.ONLINE, f"{p}last_heartbeat_at__gte": cutoff, f"{p}owner__user__is_active": True}
    ) & (Q(**{f"{p}owner__is_gpu_provider_approved": True}) | Q(**{f"{p}owner__user__is_staff": True}))


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


def model_list_available(*, now: datetime | None = None) -> list[dict]:
    """Every model with at least one live node: live node count, lowest prices, context window. One query."""
    rows = (
        NodeModel.objects.filter(node_live_q(now=now, prefix="node__"))
        .values("model__name")
        .annotate(
            live_nodes=Count("node", distinct=True),
            input_price_per_million=Min("input_price_per_million"),
            output_price_per_million=Min("output_price_per_million"),
            node_context_window=Max("context_window"),
            model_context_window=Max("model__context_window"),
        )
        .order_by("model__name")
    )
    return [
        {
            "name": row["model__name"],
            "live_nodes": row["live_nodes"],
            "input_price_per_million": row["input_price_per_million"],
            "output_price_per_million": row["output_price_per_million"],
            "context_window": row["node_context_window"] or row["model_context_window"],
        }
        for row in rows
    ]
