"""Training's money, in one place (API.md §13): every ledger call of the app is here, keyed `training:<id>`.

Creating a job holds price_per_hour x max_hours; at its end the client pays the started minutes of running time at
the node's price (none if it never started), 70/25/5 to the node's operator, the platform and the treasury, and the
rest is released.
"""

import math
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal

from clients import ledger
from clients.choices import LedgerEntryKind
from clients.ledger import Q6
from clients.models import Client


def hold_amount(*, price_per_hour: Decimal, max_hours: int) -> Decimal:
    return (price_per_hour * max_hours).quantize(Q6, ROUND_HALF_UP)


def started_minutes(*, started_at: datetime | None, ended_at: datetime) -> int:
    """Whole minutes begun between the start and the end (a job that ran 61 s pays 2 minutes); 0 if never started."""
    if started_at is None or ended_at <= started_at:
        return 0
    return math.ceil((ended_at - started_at).total_seconds() / 60)


def charge_for(*, price_per_hour: Decimal, minutes: int, held: Decimal) -> Decimal:
    """The started minutes at the hourly price, never more than what is held."""
    return min((price_per_hour * minutes / 60).quantize(Q6, ROUND_HALF_UP), held)


def hold(*, client: Client, job_id: int, amount: Decimal) -> None:
    """Reserve the job's most possible cost; ledger.InsufficientFunds (402) if the balance is short."""
    ref = f"training:{job_id}"
    ledger.hold_place(client_id=client.pk, amount=amount, key=ref, ref=ref, memo=f"training job {job_id}")


def settle(*, job_id: int, charge: Decimal, operator: Client | None) -> None:
    """Charge `charge` to the client (a `training` line; 70/25/5 to `operator` and the house) and release the rest;
    with nothing to charge, release it all. Safe to repeat: a retry returns the first posting."""
    key = f"training:{job_id}"
    if charge > 0 and operator is not None:
        ledger.hold_settle(
            key=key,
            charge=charge,
            operator_id=operator.pk,
            kind=LedgerEntryKind.TRAINING,
            ref=key,
            memo=f"training job {job_id}",
        )
    else:
        ledger.hold_release(key=key)
