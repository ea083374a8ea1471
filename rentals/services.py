"""Writes for rentals: start, cancel, lifecycle commands, expiry, and ending rentals of nodes that left.

Money goes through clients.ledger only: the total is charged up front (a hold of kind `rental` under the key
`rental:<id>`) and settled once (operator 70 / platform 25 / treasury 5 of the used part, the rest refunded to the
renter); the renter's lines read `rental` (minus the total) and `refund`, both with ref `rental:<id>`.
"""

import math
from datetime import datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal

from django.db import IntegrityError, transaction
from django.utils import timezone

from clients import ledger
from clients.choices import LedgerEntryKind
from clients.models import Client
from llm_models import services as node_services
from llm_models.choices import NodeCommandAction, NodeStatus
from llm_models.models import Node, NodeCommand
from llm_models.selectors import node_live_q
from rentals.choices import RentalAction, RentalStatus
from rentals.errors import (
    ActionNotSupported,
    NodeAlreadyRented,
    NodeNotFound,
    NodeNotRentable,
    NodeUnavailable,
    OwnNode,
    RentalNotActive,
)
from rentals.models import Rental
from rentals.selectors import rental_active_q

SWEEP_BATCH = 100


def rental_ledger_ref(rental_id: int) -> str:
    """What a rental's ledger lines name (API.md §10 `ref`)."""
    return f"rental:{rental_id}"


def _used_minutes(rental: Rental, now: datetime) -> int:
    """Minutes used so far, any started minute counted in full, capped at the minutes paid for."""
    seconds = max((now - rental.starts_at).total_seconds(), 0)
    return min(math.ceil(seconds / 60), rental.hours * 60)


def rental_charge_for(*, rental: Rental, now: datetime) -> Decimal:
    """What the renter pays for the time used until `now`: total x used minutes / paid minutes (6 places).

    Never more than the total, and exactly the total once the term is over (ends_at is starts_at + hours)."""
    exact = rental.total * _used_minutes(rental, now) / (rental.hours * 60)
    return exact.quantize(ledger.Q6, ROUND_HALF_UP)  # as the ledger rounds a charge


def _queue(rental: Rental, action: str, **params: object) -> NodeCommand:
    return node_services.node_command_queue(
        node=rental.node, rental_id=rental.pk, action=action, params={"rental_id": rental.pk, **params}
    )


@transaction.atomic
def rental_start(*, client: Client, node_id: int, hours: int, ssh_public_key: str = "") -> Rental:
    """Rent a live node with a priced GPU for `hours`, charging the total up front (a ledger hold)."""
    # The node's row lock queues concurrent rentals of one node, so the loser sees the winner's rental and gets a
    # clean 409; the exclusion constraint backs this up for any path that skips the lock.
    node = Node.objects.select_for_update(of=("self",)).select_related("gpu").filter(pk=node_id).first()
    if node is None or node.status == NodeStatus.DEREGISTERED:
        raise NodeNotFound(f"Node {node_id} does not exist.")
    if node.owner_id == client.pk:
        raise OwnNode("You cannot rent your own node.")
    if node.gpu is None or node.gpu.price_per_hour <= 0:
        raise NodeNotRentable(f"Node {node_id} has no priced GPU record, so it cannot be rented.")
    now = timezone.now()
    if not Node.objects.filter(node_live_q(now=now), pk=node.pk).exists():
        raise NodeUnavailable(f"Node {node_id} is not online.")
    if Rental.objects.filter(rental_active_q(now=now), node=node).exists():
        raise NodeAlreadyRented(f"Node {node_id} is already rented.")
    price = node.gpu.price_per_hour
    try:
        with transaction.atomic():
            rental = Rental.objects.create(
                client=client,
                node=node,
                hours=hours,
                price_per_hour=price,
                total=price * hours,
                starts_at=now,
                ends_at=now + timedelta(hours=hours),
                ssh_public_key=ssh_public_key,
            )
    except IntegrityError as exc:  # the exclusion constraint: a rental that skipped the lock got there first
        raise NodeAlreadyRented(f"Node {node_id} is already rented.") from exc
    # Paid up front: the hold is the charge (kind `rental`); settling refunds the unused part (kind `refund`).
    ledger.hold_place(
        client_id=client.pk,
        amount=rental.total,
        key=rental.ledger_key,
        kind=LedgerEntryKind.RENTAL,
        ref=rental_ledger_ref(rental.pk),
        memo=f"Rental #{rental.pk}",
    )
    if ssh_public_key:
        _queue(rental, NodeCommandAction.PROVISION_SSH_KEY, ssh_public_key=ssh_public_key, ssh_user=node.ssh_user)
    return rental


def _settle(rental: Rental, *, status: str, now: datetime, charge: Decimal) -> Rental:
    """Close a locked active rental: settle its hold (charge, refund the rest) and record the figures."""
    ledger.hold_settle(
        key=rental.ledger_key,
        charge=charge,
        operator_id=rental.node.owner_id,
        kind=LedgerEntryKind.RENTAL,
        ref=rental_ledger_ref(rental.pk),
        memo=f"Rental #{rental.pk} {status}",
    )
    rental.status = status
    rental.ended_at = now
    rental.charged = charge
    rental.refunded = rental.total - charge
    rental.save(update_fields=["status", "ended_at", "charged", "refunded", "updated_at"])
    return rental


def _lock_active(rental_id: int) -> Rental | None:
    """The rental, row-locked, if it is still active (a concurrent close makes this None once it commits)."""
    return (
        Rental.objects.select_for_update(of=("self",))
        .select_related("node__owner")
        .filter(pk=rental_id, status=RentalStatus.ACTIVE)
        .first()
    )


@transaction.atomic
def rental_cancel(*, rental: Rental, now: datetime | None = None) -> Rental:
    """End an active rental now: unused minutes refunded, used ones (rounded up) settled; the node gets `end`."""
    now = now or timezone.now()
    locked = _lock_active(rental.pk)
    if locked is None:
        raise RentalNotActive(f"Rental {rental.pk} is not active.")
    if locked.ends_at <= now:  # it ran out before the sweep got to it: it completes, charged in full
        return _complete(locked, now=now)
    _settle(locked, status=RentalStatus.CANCELLED, now=now, charge=rental_charge_for(rental=locked, now=now))
    _queue(locked, NodeCommandAction.END)
    return locked


def _complete(rental: Rental, *, now: datetime) -> Rental:
    _settle(rental, status=RentalStatus.COMPLETED, now=now, charge=rental.total)
    _queue(rental, NodeCommandAction.END)
    return rental


def rentals_complete_ended(*, now: datetime | None = None) -> int:
    """Complete active rentals whose time is up: settle in full and tell the node. Safe to run twice at once."""
    now = now or timezone.now()
    done = 0
    while True:
        ids = list(
            Rental.objects.filter(status=RentalStatus.ACTIVE, ends_at__lte=now)
            .order_by("ends_at")
            .values_list("pk", flat=True)[:SWEEP_BATCH]
        )
        if not ids:
            return done
        for rental_id in ids:
            with transaction.atomic():
                # A second sweep waits on the row lock, then no longer finds the rental active: it settles once.
                rental = _lock_active(rental_id)
                if rental is not None and rental.ends_at <= now:
                    _complete(rental, now=now)
                    done += 1
        if len(ids) < SWEEP_BATCH:
            return done


@transaction.atomic
def rental_end_for_node(*, node_id: int, now: datetime | None = None) -> int:
    """End the active rentals of a node that left (deregistered, provider revoked): unused minutes refunded."""
    now = now or timezone.now()
    count = 0
    for rental_id in Rental.objects.filter(node_id=node_id, status=RentalStatus.ACTIVE).values_list("pk", flat=True):
        rental = _lock_active(rental_id)
        if rental is None:
            continue
        _settle(rental, status=RentalStatus.TERMINATED, now=now, charge=rental_charge_for(rental=rental, now=now))
        count += 1
    node_services.node_commands_abandon(node_id=node_id, reason="The node left the marketplace.")
    return count


def rental_end_for_owner(*, owner_id: int) -> int:
    """End the active rentals of every node of an operator whose approval was revoked."""
    now = timezone.now()
    node_ids = set(
        Rental.objects.filter(node__owner_id=owner_id, status=RentalStatus.ACTIVE).values_list("node_id", flat=True)
    )
    return sum(rental_end_for_node(node_id=node_id, now=now) for node_id in sorted(node_ids))


@transaction.atomic
def rental_command(*, rental: Rental, action: str) -> NodeCommand:
    """Queue start/stop/reset for the rented node: 409 if the rental is over, 501 if its agent cannot do it."""
    locked = _lock_active(rental.pk)
    if locked is None or locked.ends_at <= timezone.now():
        raise RentalNotActive(f"Rental {rental.pk} is not active.")
    if action not in RentalAction.values:
        raise ValueError(action)
    if action in (locked.node.unsupported_actions or []):
        raise ActionNotSupported(f"Node {locked.node_id} does not support {action!r}.")
    return _queue(locked, action)
