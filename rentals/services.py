"""Writes for rentals: start, cancel, extend, lifecycle commands, expiry, pay-as-you-go charging, snapshots, and
ending rentals of nodes that left.

Money goes through clients.ledger only, every line with ref `rental:<id>`. A fixed rental's total is charged up
front (a hold of kind `rental` under the key `rental:<id>`; an extension charges the extra time up front into that
hold, `rental:<id>:extend:...`) and settled once (operator 70 / platform 25 / treasury 5 of the used part, the rest
refunded to the renter): the renter's lines read `rental` (minus the total, and minus each extension) and `refund`.
A pay-as-you-go rental reserves RENTAL_PAYG_HOLD_HOURS of price (a hold of kind `hold` under `rental:<id>`); each
started minute is charged from it (`rental:<id>:minute:<n>`: a `release` and a `rental` line of minus exactly the
minute's price) and the hold is topped back up (`rental:<id>:topup:<n>`), all under the rental's row lock, so two
beat workers charge each minute once; at the end what is left is released.
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
from llm_models.choices import NodeCapability, NodeCommandAction, NodeCommandStatus, NodeStatus
from llm_models.models import Node, NodeCommand
from llm_models.selectors import node_live_q, node_training_q
from rentals import billing as billing_rules
from rentals.choices import RentalAction, RentalBilling, RentalStatus
from rentals.errors import (
    ActionNotSupported,
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
from rentals.selectors import rental_active_q, snapshot_get_own

SWEEP_BATCH = 100


def rental_ledger_ref(rental_id: int) -> str:
    """What a rental's ledger lines name (API.md §10 `ref`)."""
    return f"rental:{rental_id}"


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


def _queue(rental: Rental, action: str, **params: object) -> NodeCommand:
    return node_services.node_command_queue(
        node=rental.node, rental_id=rental.pk, action=action, params={"rental_id": rental.pk, **params}
    )


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
) -> Rental:
    """Rent a live node with a priced GPU: a fixed term paid up front (a ledger hold of the total), or pay as you
    go (a hold of RENTAL_PAYG_HOLD_HOURS of price). The node's first command is `start` with the workload."""
    # The node's row lock queues concurrent rentals of one node, so the loser sees the winner's rental and gets a
    # clean 409; the exclusion constraint backs this up for any path that skips the lock.
    node = Node.objects.select_for_update(of=("self",)).select_related("gpu").filter(pk=node_id).first()
    if node is None or node.status == NodeStatus.DEREGISTERED:
        raise NodeNotFound(f"Node {node_id} does not exist.")
    if node.owner_id == client.pk:
        raise OwnNode("You cannot rent your own node.")
    if node.gpu is None or node.gpu.price_per_hour <= 0:
        raise NodeNotRentable(f"Node {node_id} has no priced GPU record, so it cannot be rented.")
    snapshot = None
    if snapshot_id is not None:
        snapshot = snapshot_get_own(client=client, snapshot_id=snapshot_id)
        if snapshot.node_id != node.pk:
            raise SnapshotOnOtherNode(
                f"Snapshot {snapshot_id} is kept on node {snapshot.node_id}; rent that node to start from it."
            )
    if (image or snapshot is not None) and NodeCapability.CONTAINERS not in (node.capabilities or []):
        raise NodeLacksCapability(f"Node {node_id} does not run container images (no `containers` capability).")
    now = timezone.now()
    if not Node.objects.filter(node_live_q(now=now), pk=node.pk).exists():
        raise NodeUnavailable(f"Node {node_id} is not online.")
    if Rental.objects.filter(rental_active_q(now=now), node=node).exists():
        raise NodeAlreadyRented(f"Node {node_id} is already rented.")
    if Node.objects.filter(node_training_q(), pk=node.pk).exists():
        raise NodeUnavailable(f"Node {node_id} is running a fine-tuning job.")
    term = billing_rules.rental_term(gpu=node.gpu, billing=billing, hours=hours, periods=periods)
    try:
        with transaction.atomic():
            rental = Rental.objects.create(
                client=client,
                node=node,
                billing=billing,
                periods=periods,
                discount=term.discount,
                hours=term.hours,
                price_per_hour=term.price_per_hour,
                total=term.total,
                starts_at=now,
                ends_at=None if term.hours is None else now + timedelta(hours=term.hours),
                ssh_public_key=ssh_public_key,
                image=snapshot.image_ref if snapshot is not None else image,
                env=env or {},
                ports=ports or [],
                volumes=volumes or [],
                jupyter=jupyter,
                snapshot=snapshot,
            )
    except IntegrityError as exc:  # the exclusion constraint: a rental that skipped the lock got there first
        raise NodeAlreadyRented(f"Node {node_id} is already rented.") from exc
    if rental.is_payg:  # a reservation, charged minute by minute
        held, kind = billing_rules.payg_hold_amount(term.price_per_hour), LedgerEntryKind.HOLD
    else:  # paid up front: the hold is the charge (kind `rental`); settling refunds the unused part (`refund`)
        held, kind = rental.total, LedgerEntryKind.RENTAL
    ledger.hold_place(
        client_id=client.pk,
        amount=held,
        key=rental.ledger_key,
        kind=kind,
        ref=rental_ledger_ref(rental.pk),
        memo=f"Rental #{rental.pk}",
    )
    _queue(rental, NodeCommandAction.START, **_start_params(rental))
    return rental


def _start_params(rental: Rental) -> dict:
    """What the node needs to run the instance: the workload and the renter's key (API.md §14)."""
    return {
        "image": rental.image,
        "env": rental.env,
        "ports": rental.ports,
        "volumes": rental.volumes,
        "jupyter": rental.jupyter,
        "snapshot_id": rental.snapshot_id,
        "ssh_public_key": rental.ssh_public_key,
        "ssh_user": rental.node.ssh_user,
    }


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
    if locked.is_payg:
        return _payg_close(locked, status=RentalStatus.CANCELLED, now=now)
    if (
        locked.ends_at is not None and locked.ends_at <= now
    ):  # it ran out before the sweep got to it: it completes, charged in full
        return _complete(locked, now=now)
    _settle(locked, status=RentalStatus.CANCELLED, now=now, charge=rental_charge_for(rental=locked, now=now))
    _end_commands(locked)
    return locked


def _complete(rental: Rental, *, now: datetime) -> Rental:
    _settle(rental, status=RentalStatus.COMPLETED, now=now, charge=rental.total)
    _end_commands(rental)
    return rental


def _end_commands(rental: Rental) -> None:
    """An ended rental takes its commands with it (API.md §10): what the node has not reported on is withdrawn,
    and it gets `end`. (A node that left, `rental_end_for_node`, has all its open commands failed instead.)"""
    node_services.node_commands_withdraw(
        rental_id=rental.pk, reason=f"Withdrawn: rental {rental.pk} ended ({rental.status})."
    )
    _queue(rental, NodeCommandAction.END)


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
        rental = _lock_active(rental_id)
        if rental is None:
            continue
        if rental.is_payg:
            _payg_close(rental, status=RentalStatus.TERMINATED, now=now, tell_node=False)
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


def _is_over(rental: Rental, now: datetime) -> bool:
    return rental.ends_at is not None and rental.ends_at <= now


@transaction.atomic
def rental_command(*, rental: Rental, action: str, snapshot: bool = False) -> NodeCommand:
    """Queue start/stop/reset for the rented node: 409 if the rental is over, 501 if its agent cannot do it.

    `stop` with `snapshot` asks the node to save the instance; its result's `snapshot_ref` becomes a Snapshot."""
    locked = _lock_active(rental.pk)
    if locked is None or _is_over(locked, timezone.now()):
        raise RentalNotActive(f"Rental {rental.pk} is not active.")
    if action not in RentalAction.values:
        raise ValueError(action)
    if action in (locked.node.unsupported_actions or []):
        raise ActionNotSupported(f"Node {locked.node_id} does not support {action!r}.")
    if action == RentalAction.START:
        return _queue(locked, action, **_start_params(locked))
    if action == RentalAction.STOP and snapshot:
        return _queue(locked, action, snapshot=True)
    return _queue(locked, action)


@transaction.atomic
def rental_extend(*, rental: Rental, hours: int, now: datetime | None = None) -> Rental:
    """Add `hours` to an active fixed rental at its hourly price, charged at once (added to its hold): 409 when
    it is not active or is pay as you go, 402 when the balance is short, 400 past MAX_TERM_HOURS."""
    now = now or timezone.now()
    locked = _lock_active(rental.pk)
    if locked is None or _is_over(locked, now):
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


# --- Pay as you go -----------------------------------------------------------------------------------------------


def _still_held(rental: Rental) -> Decimal:
    hold = ledger.hold_get(key=rental.ledger_key)
    return Decimal(0) if hold is None else hold.amount - hold.consumed


def _payg_charge_minute(rental: Rental, minute: int, *, top_up: bool) -> bool:
    """Charge the rental's `minute` (1-based) from its hold; False if the hold (topped up by the shortfall when
    `top_up`) cannot cover it. Keyed per minute: a minute is charged once, whoever runs this."""
    charge = billing_rules.payg_cost(rental.price_per_hour, minute) - billing_rules.payg_cost(
        rental.price_per_hour, minute - 1
    )
    if charge > 0:
        held = _still_held(rental)
        if held < charge:
            if not top_up:
                charge = held  # the end: what is held is all there is to take
            else:
                try:
                    ledger.hold_top_up(
                        key=rental.ledger_key,
                        amount=charge - held,
                        top_up_key=f"{rental.ledger_key}:topup:{minute}:short",
                        memo=f"Rental #{rental.pk} hold short of minute {minute}",
                    )
                except ledger.InsufficientFunds:
                    return False
        if charge > 0:
            ledger.hold_consume(
                key=rental.ledger_key,
                use_key=f"{rental.ledger_key}:minute:{minute}",
                charges=[ledger.Charge(charge, rental_ledger_ref(rental.pk))],
                operator_id=rental.node.owner_id,
                kind=LedgerEntryKind.RENTAL,
                memo=f"Rental #{rental.pk} minute {minute}",
            )
            rental.total += charge
    rental.payg_minutes_charged = minute
    return True


def _payg_close(rental: Rental, *, status: str, now: datetime, tell_node: bool = True) -> Rental:
    """End a locked pay-as-you-go rental: charge its started minutes (as far as its hold goes), release the rest."""
    due = billing_rules.started_minutes(starts_at=rental.starts_at, now=now)
    for minute in range(rental.payg_minutes_charged + 1, due + 1):
        _payg_charge_minute(rental, minute, top_up=False)
    rental.refunded = _still_held(rental)
    ledger.hold_release(key=rental.ledger_key)
    rental.status = status
    rental.ended_at = now
    rental.charged = rental.total
    rental.save(
        update_fields=["status", "ended_at", "charged", "refunded", "total", "payg_minutes_charged", "updated_at"]
    )
    if tell_node:
        _queue(rental, NodeCommandAction.END)
    return rental


@transaction.atomic
def rental_payg_charge(*, rental_id: int, now: datetime | None = None) -> Rental | None:
    """Charge a pay-as-you-go rental's started minutes from its hold and top the hold back up to full; when it
    cannot be topped up in full, end it (`ended_insufficient_funds`), charge the minutes used, release the rest and
    tell the node to end. Safe to run twice at once: the rental's row lock and per-minute ledger keys."""
    now = now or timezone.now()
    rental = _lock_active(rental_id)
    if rental is None or not rental.is_payg:
        return None
    due = billing_rules.started_minutes(starts_at=rental.starts_at, now=now)
    for minute in range(rental.payg_minutes_charged + 1, due + 1):
        if not _payg_charge_minute(rental, minute, top_up=True):
            return _payg_close(rental, status=RentalStatus.ENDED_INSUFFICIENT_FUNDS, now=now)
    short = billing_rules.payg_hold_amount(rental.price_per_hour) - _still_held(rental)
    if short > 0:
        try:
            ledger.hold_top_up(
                key=rental.ledger_key,
                amount=short,
                top_up_key=f"{rental.ledger_key}:topup:{rental.payg_minutes_charged}",
                memo=f"Rental #{rental.pk} hold renewed",
            )
        except ledger.InsufficientFunds:
            return _payg_close(rental, status=RentalStatus.ENDED_INSUFFICIENT_FUNDS, now=now)
    rental.save(update_fields=["total", "payg_minutes_charged", "updated_at"])
    return rental


def rentals_payg_charge(*, now: datetime | None = None) -> int:
    """Beat, each minute: charge every active pay-as-you-go rental (one transaction each). Returns how many ran."""
    now = now or timezone.now()
    ids = list(
        Rental.objects.filter(status=RentalStatus.ACTIVE, billing=RentalBilling.PAYG)
        .order_by("pk")
        .values_list("pk", flat=True)
    )
    return sum(rental_payg_charge(rental_id=rental_id, now=now) is not None for rental_id in ids)


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
