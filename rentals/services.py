"""Writes for rentals: start, cancel, extend, expiry, ending rentals of nodes that left, the outcomes nodes report,
and snapshots.

Money goes through clients.ledger only, every line with ref `rental:<id>`. A fixed rental's total is charged up
front (a hold of kind `rental` under the key `rental:<id>`; an extension charges the extra time up front into that
hold, `rental:<id>:extend:...`) and settled once (operator 70 / platform 25 / treasury 5 of the used part, the rest
refunded to the renter): the renter's lines read `rental` (minus the total, and minus each extension) and `refund`.
A pay-as-you-go rental reserves RENTAL_PAYG_HOLD_HOURS of price and is charged by the minute (rentals/payg.py).
The commands sent to a rented node, and the row lock every write to an active rental takes, are in
rentals/commands.py.
"""

import math
from datetime import datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal

from django.db import IntegrityError, transaction
from django.utils import timezone

from clients import ledger
from clients.choices import LedgerEntryKind
from clients.models import Client
from core.errors import DomainError
from gpus.models import Gpu
from llm_models import services as node_services
from llm_models.choices import NodeCapability, NodeCommandAction, NodeCommandStatus, NodeStatus
from llm_models.models import Node, NodeCommand
from llm_models.selectors import node_live_q, node_training_q
from rentals import billing as billing_rules
from rentals.billing import rental_ledger_ref
from rentals.choices import RentalAction, RentalBilling, RentalStatus
from rentals.commands import end_commands, is_over, lock_active, queue_command, rental_command, start_params
from rentals.errors import (
    NodeAlreadyRented,
    NodeLacksCapability,
    NodeNotFound,
    NodeNotRentable,
    NodeUnavailable,
    OwnNode,
    RentalNotActive,
    RentalNotExtendable,
    SnapshotOnOtherNode,
    TermTooLong,
)
from rentals.models import MAX_TERM_HOURS, Rental, Snapshot
from rentals.payg import payg_close
from rentals.selectors import rental_active_q, rental_get_own, snapshot_get_own

SWEEP_BATCH = 100


def _used_minutes(rental: Rental, now: datetime) -> int:
    """Minutes used so far, any started minute counted in full, capped at the minutes paid for."""
    seconds = max((now - rental.starts_at).total_seconds(), 0)
    assert rental.hours is not None, "a fixed-term rental"  # pay-as-you-go ones are charged by the minute
    return min(math.ceil(seconds / 60), rental.hours * 60)


def rental_charge_for(*, rental: Rental, now: datetime) -> Decimal:
    """What the renter pays for the time used until `now`: total x used minutes / paid minutes (6 places).

    Never more than the total, and exactly the total once the term is over (ends_at is starts_at + hours)."""
    used = _used_minutes(rental, now)
    assert rental.hours is not None
    exact = rental.total * used / (rental.hours * 60)
    return exact.quantize(ledger.Q6, ROUND_HALF_UP)  # as the ledger rounds a charge


@transaction.atomic
def rental_start(
    *,
    client: Client,
    node_id: int,
    billing: str = RentalBilling.HOURLY,
    hours: int | None = None,
    periods: int | None = None,
    ssh_public_key: str = "",
    image: str = "",
    env: dict[str, str] | None = None,
    ports: list[int] | None = None,
    volumes: list[dict] | None = None,
    jupyter: bool = False,
    snapshot_id: int | None = None,
    api_key_id: int | None = None,
) -> Rental:
    """Rent a live node with a priced GPU: a fixed term paid up front (a ledger hold of the total), or pay as you
    go (a hold of RENTAL_PAYG_HOLD_HOURS of price). The node's first command is `start` with the workload."""
    node, gpu = _node_lock_rentable(client=client, node_id=node_id)
    snapshot = None if snapshot_id is None else _snapshot_for_node(client=client, node=node, snapshot_id=snapshot_id)
    if (image or snapshot is not None) and NodeCapability.CONTAINERS not in (node.capabilities or []):
        raise NodeLacksCapability(f"Node {node_id} does not run container images (no `containers` capability).")
    now = timezone.now()
    _check_node_free(node, now=now)
    term = billing_rules.rental_term(gpu=gpu, billing=billing, hours=hours, periods=periods)
    rental = _rental_create(
        client=client,
        node=node,
        billing=billing,
        periods=periods,
        term=term,
        now=now,
        snapshot=snapshot,
        ssh_public_key=ssh_public_key,
        image=snapshot.image_ref if snapshot is not None else image,
        env=env or {},
        ports=ports or [],
        volumes=volumes or [],
        jupyter=jupyter,
        api_key_id=api_key_id,
    )
    _start_hold_place(rental, term=term)
    queue_command(rental, NodeCommandAction.START, **start_params(rental))
    return rental


def _node_lock_rentable(*, client: Client, node_id: int) -> tuple[Node, Gpu]:
    """The node, row-locked, and its GPU record: 404 if it is gone, 409 if it is the renter's own or unpriced."""
    # The node's row lock queues concurrent rentals of one node, so the loser sees the winner's rental and gets a
    # clean 409; the exclusion constraint backs this up for any path that skips the lock.
    node = Node.objects.select_for_update(of=("self",)).select_related("gpu").filter(pk=node_id).first()
    if node is None or node.status == NodeStatus.DEREGISTERED:
        raise NodeNotFound(f"Node {node_id} does not exist.")
    if node.owner_id == client.pk:
        raise OwnNode("You cannot rent your own node.")
    if node.gpu is None or node.gpu.price_per_hour <= 0:
        raise NodeNotRentable(f"Node {node_id} has no priced GPU record, so it cannot be rented.")
    return node, node.gpu


def _snapshot_for_node(*, client: Client, node: Node, snapshot_id: int) -> Snapshot:
    """The renter's snapshot to start from: 404 if it is not theirs, 400 `snapshot_on_other_node` (naming
    `snapshot_id`) if it is kept on another node."""
    snapshot = snapshot_get_own(client=client, snapshot_id=snapshot_id)
    if snapshot.node_id != node.pk:
        raise SnapshotOnOtherNode(
            f"Snapshot {snapshot_id} is kept on node {snapshot.node_id}; rent that node to start from it."
        )
    return snapshot


def _check_node_free(node: Node, *, now: datetime) -> None:
    """409 unless the node is online, not rented and not running a fine-tuning job."""
    if not Node.objects.filter(node_live_q(now=now), pk=node.pk).exists():
        raise NodeUnavailable(f"Node {node.pk} is not online.")
    if Rental.objects.filter(rental_active_q(now=now), node=node).exists():
        raise NodeAlreadyRented(f"Node {node.pk} is already rented.")
    if Node.objects.filter(node_training_q(), pk=node.pk).exists():
        raise NodeUnavailable(f"Node {node.pk} is running a fine-tuning job.")


def _rental_create(
    *, node: Node, term: billing_rules.Term, now: datetime, periods: int | None, **fields: object
) -> Rental:
    """The rental's row at `term`'s price, starting `now`; 409 if another rental of the node got there first."""
    try:
        with transaction.atomic():
            return Rental.objects.create(
                node=node,
                periods=periods,
                discount=term.discount,
                hours=term.hours,
                price_per_hour=term.price_per_hour,
                total=term.total,
                starts_at=now,
                ends_at=None if term.hours is None else now + timedelta(hours=term.hours),
                **fields,
            )
    except IntegrityError as exc:  # the exclusion constraint: a rental that skipped the lock got there first
        raise NodeAlreadyRented(f"Node {node.pk} is already rented.") from exc


def _start_hold_place(rental: Rental, *, term: billing_rules.Term) -> None:
    """Hold the renter's money for a new rental (402 when the balance is short)."""
    if rental.is_payg:  # a reservation, charged minute by minute
        held, kind = billing_rules.payg_hold_amount(term.price_per_hour), LedgerEntryKind.HOLD
    else:  # paid up front: the hold is the charge (kind `rental`); settling refunds the unused part (`refund`)
        held, kind = rental.total, LedgerEntryKind.RENTAL
    ledger.hold_place(
        client_id=rental.client_id,
        amount=held,
        key=rental.ledger_key,
        kind=kind,
        ref=rental_ledger_ref(rental.pk),
        memo=f"Rental #{rental.pk}",
    )


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


@transaction.atomic
def rental_cancel(*, rental: Rental, now: datetime | None = None) -> Rental:
    """End an active rental now: unused minutes refunded, used ones (rounded up) settled; the node gets `end`."""
    now = now or timezone.now()
    locked = lock_active(rental.pk)
    if locked is None:
        raise RentalNotActive(f"Rental {rental.pk} is not active.")
    if locked.is_payg:
        return payg_close(locked, status=RentalStatus.CANCELLED, now=now)
    if (
        locked.ends_at is not None and locked.ends_at <= now
    ):  # it ran out before the sweep got to it: it completes, charged in full
        return _complete(locked, now=now)
    _settle(locked, status=RentalStatus.CANCELLED, now=now, charge=rental_charge_for(rental=locked, now=now))
    end_commands(locked)
    return locked


def _complete(rental: Rental, *, now: datetime) -> Rental:
    _settle(rental, status=RentalStatus.COMPLETED, now=now, charge=rental.total)
    end_commands(rental)
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
                rental = lock_active(rental_id)
                if rental is not None and rental.ends_at is not None and rental.ends_at <= now:
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
        rental = lock_active(rental_id)
        if rental is None:
            continue
        if rental.is_payg:
            payg_close(rental, status=RentalStatus.TERMINATED, now=now, tell_node=False)
            count += 1
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
def rental_extend(*, rental: Rental, hours: int, now: datetime | None = None) -> Rental:
    """Add `hours` to an active fixed rental at its hourly price, charged at once (added to its hold): 409 when
    it is not active or is pay as you go, 402 when the balance is short, 400 past MAX_TERM_HOURS."""
    now = now or timezone.now()
    locked = lock_active(rental.pk)
    if locked is None or is_over(locked, now):
        raise RentalNotActive(f"Rental {rental.pk} is not active.")
    if locked.is_payg:
        raise RentalNotExtendable(f"Rental {rental.pk} is pay as you go: it has no end to extend.")
    assert locked.hours is not None and locked.ends_at is not None
    if locked.hours + hours > MAX_TERM_HOURS:
        raise TermTooLong(f"A rental runs at most {MAX_TERM_HOURS} hours; this one has {locked.hours}.")
    amount = locked.price_per_hour * hours
    ledger.hold_top_up(
        key=locked.ledger_key,
        amount=amount,
        top_up_key=f"{locked.ledger_key}:extend:{locked.hours}+{hours}",
        memo=f"Rental #{locked.pk} extended by {hours} h",
    )
    locked.hours += hours
    locked.total += amount
    locked.ends_at += timedelta(hours=hours)
    locked.save(update_fields=["hours", "total", "ends_at", "updated_at"])
    return locked


# --- Outcomes the node reports, and snapshots --------------------------------------------------------------------


def rental_record_outcome(*, command: NodeCommand) -> None:
    """A rental's command reported back: a `start` result's access is shown on the rental from then on, a `stop`
    result's snapshot_ref becomes a Snapshot (once per command). Runs in the heartbeat's transaction."""
    if command.rental_id is None or command.status == NodeCommandStatus.FAILED:
        return
    outcome = command.outcome or {}
    if command.action == NodeCommandAction.START and "access" in outcome:
        Rental.objects.filter(pk=command.rental_id).update(access=outcome["access"], updated_at=timezone.now())
    if command.action == NodeCommandAction.STOP and "snapshot_ref" in outcome:
        rental = Rental.objects.only("pk", "client_id", "node_id").get(pk=command.rental_id)
        Snapshot.objects.get_or_create(
            command_id=command.pk,
            defaults={
                "client_id": rental.client_id,
                "rental_id": rental.pk,
                "node_id": rental.node_id,
                "image_ref": outcome["snapshot_ref"],
            },
        )


def snapshot_delete(*, snapshot: Snapshot) -> None:
    """Forget a snapshot (rentals started from it keep running; the node keeps the image until its operator prunes
    it)."""
    snapshot.delete()


BULK_OPERATIONS = (*RentalAction.values, "cancel")


def _bulk_one(client: Client, operation: str, rental_id: int) -> dict:
    try:
        with transaction.atomic():
            rental = rental_get_own(client=client, rental_id=rental_id)
            if operation == "cancel":
                rental_cancel(rental=rental)
                job = NodeCommand.objects.filter(rental=rental).order_by("-id").first()
                result = {"id": rental_id, "ok": True, "status": 200}
            else:
                job = rental_command(rental=rental, action=operation)
                result = {"id": rental_id, "ok": True, "status": 202}
    except DomainError as err:
        return {"id": rental_id, "ok": False, "status": err.status, "error": {"code": err.code, "detail": err.detail}}
    if job is not None:
        result["job_id"] = job.pk
    return result


def rental_bulk(*, client: Client, operation: str, rental_ids: list[int]) -> list[dict]:
    """One operation (BULK_OPERATIONS) on each of these rentals of the client, each in its own transaction: one
    result per id, with the HTTP status its own request would have had (partial failure allowed)."""
    return [_bulk_one(client, operation, rental_id) for rental_id in rental_ids]
