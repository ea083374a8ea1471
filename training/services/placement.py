"""Choosing a node for a job: which nodes can train now, cheapest first, and the dearest one."""

from datetime import datetime
from decimal import Decimal

from django.utils import timezone

from llm_models.choices import NodeCapability, NodeStatus
from llm_models.models import Node
from llm_models.selectors import node_live_q, node_training_q
from rentals.selectors import node_rented_q
from training.choices import OPEN_TRAINING_STATUSES


def _free_gpu_memory_mb(node: Node) -> float:
    metrics = node.latest_metrics or {}
    total, used = metrics.get("gpu_memory_total_mb"), metrics.get("gpu_memory_used_mb")
    if isinstance(total, int | float) and isinstance(used, int | float):
        return max(0.0, float(total) - float(used))
    return 0.0


def _can_train(node: Node) -> bool:
    return NodeCapability.TRAINING in (node.capabilities or []) and node.gpu is not None


def trainable_nodes(*, now: datetime | None = None) -> list[Node]:
    """Nodes that can take a job now: live, approved, not rented, not training, declaring `training`, with a
    priced GPU; cheapest first, then most free GPU memory, then lowest id."""
    now = now or timezone.now()
    nodes = (
        Node.objects.filter(node_live_q(now=now), gpu__isnull=False)
        .exclude(node_rented_q(now=now))
        .exclude(node_training_q())
        .exclude(training_jobs__status__in=OPEN_TRAINING_STATUSES)
        .select_related("gpu")
    )
    found = [n for n in nodes if _can_train(n)]
    return sorted(found, key=lambda n: (n.gpu.price_per_hour, -_free_gpu_memory_mb(n), n.pk))  # type: ignore[union-attr]


def _highest_training_price() -> Decimal | None:
    """The dearest GPU among registered nodes that declare `training` (a queued job's hold when none is free)."""
    nodes = Node.objects.exclude(status=NodeStatus.DEREGISTERED).filter(gpu__isnull=False).select_related("gpu")
    prices = [n.gpu.price_per_hour for n in nodes if _can_train(n) and n.gpu is not None]
    return max(prices) if prices else None
