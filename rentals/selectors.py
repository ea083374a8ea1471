"""Reads of rentals, their jobs and the rentable inventory."""

from datetime import datetime

from django.db.models import Count, Exists, F, Min, OuterRef, Q, QuerySet, Sum, Value
from django.db.models.functions import Coalesce
from django.utils import timezone

from clients.models import Client
from core.errors import NotFound
from llm_models.choices import NodeStatus
from llm_models.models import Node, NodeCommand
from llm_models.selectors import node_live_q
from llm_models.uptime import node_uptime_annotations
from rentals.choices import RentalStatus
from rentals.models import Rental, Snapshot


class SnapshotNotFound(NotFound):
    code, attr = "snapshot_not_found", None


def rental_active_q(*, now: datetime, prefix: str = "") -> Q:
    """A rental that holds its node at `now`."""
    p = prefix
    # A pay-as-you-go rental has no end (ends_at NULL): it holds its node until it is ended.
    return Q(**{f"{p}status": RentalStatus.ACTIVE, f"{p}starts_at__lte": now}) & (
        Q(**{f"{p}ends_at__gt": now}) | Q(**{f"{p}ends_at__isnull": True})
    )


def node_rented_q(*, now: datetime | None = None, prefix: str = "") -> Q:
    """Nodes with an active rental at `now` (`prefix` reaches the node from another model, e.g. "node__").

    inference.routing.unrented_q is `~node_rented_q(now=now, prefix=prefix)`: a rented node gets no public work."""
    now = now or timezone.now()
    rented = Rental.objects.filter(rental_active_q(now=now), node_id=OuterRef(f"{prefix}pk"))
    return Q(Exists(rented))


def rental_list_own(*, client: Client) -> QuerySet[Rental]:
    return Rental.objects.filter(client=client).select_related("node__gpu")


def rental_get_own(*, client: Client, rental_id: int) -> Rental:
    """The client's rental; someone else's is a 404, as a missing one (API.md §0)."""
    rental = rental_list_own(client=client).filter(pk=rental_id).first()
    if rental is None:
        raise NotFound(f"Rental {rental_id} not found.")
    return rental


def snapshot_list_own(*, client: Client) -> QuerySet[Snapshot]:
    return Snapshot.objects.filter(client=client)


def snapshot_get_own(*, client: Client, snapshot_id: int) -> Snapshot:
    """The client's snapshot; someone else's is a 404, as a missing one."""
    snapshot = snapshot_list_own(client=client).filter(pk=snapshot_id).first()
    if snapshot is None:
        raise SnapshotNotFound(f"Snapshot {snapshot_id} not found.")
    return snapshot


def job_list_own(*, client: Client) -> QuerySet[NodeCommand]:
    """The commands (jobs) of the client's rentals."""
    return NodeCommand.objects.filter(rental__client=client)


def inventory_list(*, now: datetime | None = None, gpu_model: str = "", region: str = "") -> list[dict]:
    """Rentable nodes (live, with a priced GPU record) by GPU model and region, with what is free now."""
    now = now or timezone.now()
    nodes = Node.objects.filter(node_live_q(now=now), gpu__isnull=False, gpu__price_per_hour__gt=0)
    if gpu_model:
        nodes = nodes.filter(gpu__gpu_model__iexact=gpu_model)
    if region:
        nodes = nodes.filter(region__iexact=region)
    free = ~node_rented_q(now=now)
    rows = (
        nodes.values("gpu__gpu_model", "region")
        .annotate(
            nodes_total=Count("pk"),
            nodes_available=Count("pk", filter=free),
            gpus_available=Coalesce(Sum("gpu__gpu_count", filter=free), 0),
            lowest_price_per_hour=Min("gpu__price_per_hour", filter=free),
        )
        .order_by("gpu__gpu_model", "region")
    )
    return [
        {
            "gpu_model": row["gpu__gpu_model"],
            "region": row["region"],
            "nodes_total": row["nodes_total"],
            "nodes_available": row["nodes_available"],
            "gpus_available": row["gpus_available"],
            "lowest_price_per_hour": row["lowest_price_per_hour"],
        }
        for row in rows
    ]


def _rentable_nodes() -> QuerySet[Node]:
    """Nodes that could be rented: registered, with a priced GPU record."""
    return Node.objects.exclude(status=NodeStatus.DEREGISTERED).filter(gpu__isnull=False, gpu__price_per_hour__gt=0)


def region_list(*, now: datetime | None = None) -> list[dict]:
    """Regions with rentable nodes: how many there are, how many are free now (live, not rented), which GPUs."""
    now = now or timezone.now()
    available = node_live_q(now=now) & ~node_rented_q(now=now)
    rows = (
        _rentable_nodes()
        .exclude(region="")
        .values("region")
        .annotate(nodes_total=Count("pk"), nodes_available=Count("pk", filter=available))
        .order_by("region")
    )
    models: dict[str, set[str]] = {}
    for region, gpu_model in _rentable_nodes().exclude(region="").values_list("region", "gpu__gpu_model"):
        models.setdefault(region, set()).add(gpu_model)
    return [{**row, "gpu_models": sorted(m for m in models.get(row["region"], ()) if m)} for row in rows]


def offer_list(*, now: datetime | None = None) -> QuerySet[Node]:
    """One row per node that can be rented now (live, priced, not rented), with its GPU's figures and its
    reliability: its live share of the last 24 h, measured as the market measures uptime (market.selectors)."""
    now = now or timezone.now()
    return (
        _rentable_nodes()
        .filter(node_live_q(now=now))
        .filter(~node_rented_q(now=now))
        .select_related("gpu")
        .annotate(
            gpu_model=F("gpu__gpu_model"),
            gpu_count=F("gpu__gpu_count"),
            gpu_memory_gb=F("gpu__gpu_memory_gb"),
            price_per_hour=F("gpu__price_per_hour"),
            reliability=Coalesce(node_uptime_annotations(now=now)["uptime_1d"], Value(0.0)),
        )
        .order_by("price_per_hour", "pk")
    )
