"""What a rental costs (API.md §14): the term of a fixed rental, a pay-as-you-go minute and its rolling hold; and
the ref its ledger lines carry.

Prices are Decimal to 6 places, as the ledger keeps money. A discounted hourly price is rounded once (half up) and
a term is that price times its hours, so a fixed rental's total is exact. Pay-as-you-go minutes are charged as the
difference of the rounded running total, so however the minutes are grouped, N minutes cost exactly
price x N / 60 rounded once.
"""

import math
from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_HALF_UP, ROUND_UP, Decimal

from django.conf import settings

from clients.ledger import Q6
from gpus.models import Gpu
from rentals.choices import PERIOD_HOURS, RentalBilling


@dataclass(frozen=True)
class Term:
    """A fixed rental's price: its hours at a (possibly discounted) hourly price; hours is None for payg."""

    hours: int | None
    price_per_hour: Decimal
    discount: Decimal
    total: Decimal


def rental_ledger_ref(rental_id: int) -> str:
    """What a rental's ledger lines name (API.md §10 `ref`)."""
    return f"rental:{rental_id}"


def rental_term(*, gpu: Gpu, billing: str, hours: int | None = None, periods: int | None = None) -> Term:
    """The term and price of a new rental of `gpu`: hourly at its price, by period less its discount, payg open."""
    price = gpu.price_per_hour
    if billing == RentalBilling.HOURLY:
        assert hours is not None
        return Term(hours=hours, price_per_hour=price, discount=Decimal(0), total=price * hours)
    if billing == RentalBilling.PAYG:
        return Term(hours=None, price_per_hour=price, discount=Decimal(0), total=Decimal(0))
    assert periods is not None
    discount = gpu.discounts[billing]
    discounted = (price * (1 - discount)).quantize(Q6, ROUND_HALF_UP)
    term_hours = periods * PERIOD_HOURS[RentalBilling(billing)]
    return Term(hours=term_hours, price_per_hour=discounted, discount=discount, total=discounted * term_hours)


def payg_hold_amount(price_per_hour: Decimal) -> Decimal:
    """The rolling hold of a pay-as-you-go rental: RENTAL_PAYG_HOLD_HOURS of its price, rounded up to 0.000001."""
    return max((price_per_hour * settings.RENTAL_PAYG_HOLD_HOURS).quantize(Q6, ROUND_UP), Q6)


def payg_cost(price_per_hour: Decimal, minutes: int) -> Decimal:
    """What `minutes` minutes of pay as you go cost in all: price x minutes / 60, rounded half up to 0.000001."""
    return (price_per_hour * minutes / 60).quantize(Q6, ROUND_HALF_UP)


def started_minutes(*, starts_at: datetime, now: datetime) -> int:
    """Minutes begun since `starts_at` (a started minute counts in full)."""
    return max(math.ceil((now - starts_at).total_seconds() / 60), 0)
