"""Pay-as-you-go rentals: each started minute charged from the rental's hold, the hold topped back up, and the beat
sweep that does it every minute.

A pay-as-you-go rental reserves RENTAL_PAYG_HOLD_HOURS of price (a hold of kind `hold` under `rental:<id>`); each
started minute is charged from it (`rental:<id>:minute:<n>`: a `release` and a `rental` line of minus exactly the
minute's price) and the hold is topped back up (`rental:<id>:topup:<n>`), all under the rental's row lock, so two
beat workers charge each minute once; at the end what is left is released.
"""

from datetime import datetime
from decimal import Decimal

from django.db import transaction
from django.utils import timezone

from clients import ledger
from clients.choices import LedgerEntryKind
from clients.key_limits import key_record_spend_of
from rentals import billing as billing_rules
from rentals.billing import rental_ledger_ref
from rentals.choices import RentalBilling, RentalStatus
from rentals.commands import end_commands, lock_active
from rentals.models import Rental


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
            key_record_spend_of(key_id=rental.api_key_id, cost=charge)  # toward the budget of the key that started it
    rental.payg_minutes_charged = minute
    return True


def payg_close(rental: Rental, *, status: str, now: datetime, tell_node: bool = True) -> Rental:
    """End a locked pay-as-you-go rental: charge its started minutes (as far as its hold goes), release the rest.

    With `tell_node`, its unreported commands are withdrawn and the node gets `end`, as for a fixed-term rental
    (commands.end_commands); one that ran out of money is told to `stop` first (API.md §9 "Pay as you go")."""
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
        end_commands(rental, stop_first=status == RentalStatus.ENDED_INSUFFICIENT_FUNDS)
    return rental


@transaction.atomic
def rental_payg_charge(*, rental_id: int, now: datetime | None = None) -> Rental | None:
    """Charge a pay-as-you-go rental's started minutes from its hold and top the hold back up to full; when it
    cannot be topped up in full, end it (`ended_insufficient_funds`), charge the minutes used, release the rest and
    tell the node to stop, then end. Safe to run twice at once: the rental's row lock and per-minute ledger keys."""
    now = now or timezone.now()
    rental = lock_active(rental_id)
    if rental is None or not rental.is_payg:
        return None
    due = billing_rules.started_minutes(starts_at=rental.starts_at, now=now)
    for minute in range(rental.payg_minutes_charged + 1, due + 1):
        if not _payg_charge_minute(rental, minute, top_up=True):
            return payg_close(rental, status=RentalStatus.ENDED_INSUFFICIENT_FUNDS, now=now)
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
            return payg_close(rental, status=RentalStatus.ENDED_INSUFFICIENT_FUNDS, now=now)
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
