"""Reads of rentals, their jobs and the rentable inventory."""

from datetime import datetime

from django.db.models import Count, Exists, Min, OuterRef, Q, QuerySet, Sum
from django.db.models.functions import Coalesce
from django.utils import timezone

from clients.models import Client
from core.errors import NotFound
from llm_models.models import Node, NodeCommand
from llm_models.selectors import node_live_q
from rentals.choices import RentalStatus
from rentals.models import Rental


def rental_active_q(*, now: datetime, prefix: str = "") -> Q:
    """A rental that holds its node at `now`."""
    p = prefix
    return Q(**{f"{p}status": RentalStatus.ACTIVE, f"{p}starts_at__lte": now, f"{p}ends_at__gt": now})


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
