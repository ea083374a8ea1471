"""Reads for the operator's console (the admin index) and /metrics: what needs attention, and the day's numbers.

Reads only, in portable SQL (SQLite and PostgreSQL alike): counts and sums with filters, days by TruncDate.
"""

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from django.apps import apps
from django.core.exceptions import FieldError
from django.db.models import Count, DecimalField, F, Q, Sum, Value
from django.db.models.functions import Coalesce, TruncDate
from django.utils import timezone

from clients.choices import ClientRole, HoldStatus, LedgerAccountKind
from clients.models import Client, Hold, LedgerEntry
from console.models import Reconciliation
from inference.models import InferenceRequest
from llm_models.choices import NodeStatus
from llm_models.models import Node
from llm_models.selectors import node_live_q
from market.selectors import CHARGE_KINDS, operator_earnings_q
from rentals.selectors import node_rented_q

MONEY = DecimalField(max_digits=20, decimal_places=6)
ZERO = Decimal("0")
SHARES = ("operator", "platform", "treasury")
DAYS = 30


@dataclass(frozen=True)
class NodeCounts:
    registered: int
    live: int
    offline: int
    rented: int
    failing: int  # cooling down after failures: no new work until their cooldown ends


@dataclass(frozen=True)
class Totals:
    requests: int = 0
    tokens: int = 0
    revenue: dict[str, Decimal] = field(default_factory=lambda: dict.fromkeys(SHARES, ZERO))

    @property
    def revenue_total(self) -> Decimal:
        return sum(self.revenue.values(), ZERO)


@dataclass(frozen=True)
class Overview:
    now: datetime
    applications_waiting: int
    nodes: NodeCounts
    today: Totals
    month: Totals  # the last DAYS days, today included
    days: list[dict[str, Any]]  # one row per day, oldest first: date, requests, tokens, and each share
    open_holds: int
    held: Decimal
    payouts: tuple[int, Decimal] | None  # None: no payouts app installed
    reconciliation: Reconciliation | None


def provider_applications_waiting() -> int:
    return Client.objects.filter(role=ClientRole.GPU_PROVIDER, is_gpu_provider_approved=False).count()


def node_counts(*, now: datetime) -> NodeCounts:
    """Registered nodes: live (online, heard from, approved owner), offline (the rest), rented, failing."""
    counts = Node.objects.exclude(status=NodeStatus.DEREGISTERED).aggregate(
        registered=Count("pk"),
        live=Count("pk", filter=node_live_q(now=now)),
        rented=Count("pk", filter=node_rented_q(now=now)),
        failing=Count("pk", filter=Q(cooldown_until__gt=now)),
    )
    return NodeCounts(offline=counts["registered"] - counts["live"], **counts)


def _day_start(now: datetime) -> datetime:
    return now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)


def _share_sums() -> dict[str, Any]:
    zero = Value(ZERO, output_field=MONEY)
    return {
        "operator": Coalesce(Sum("amount", filter=operator_earnings_q()), zero),
        "platform": Coalesce(Sum("amount", filter=Q(account__kind=LedgerAccountKind.PLATFORM)), zero),
        "treasury": Coalesce(Sum("amount", filter=Q(account__kind=LedgerAccountKind.TREASURY)), zero),
    }


def _charges_since(since: datetime):
    return LedgerEntry.objects.filter(transaction__kind__in=CHARGE_KINDS, transaction__created_at__gte=since)


def _requests_since(since: datetime):
    return InferenceRequest.objects.filter(created_at__gte=since)


def _tokens() -> Coalesce:
    return Coalesce(Sum(F("prompt_tokens") + F("completion_tokens")), 0)


def totals_since(since: datetime) -> Totals:
    """Requests made, their tokens, and what charges paid each share (from the ledger), since `since`."""
    requests = _requests_since(since).aggregate(requests=Count("pk"), tokens=_tokens())
    revenue = _charges_since(since).aggregate(**_share_sums())
    return Totals(requests=requests["requests"], tokens=requests["tokens"], revenue=revenue)


def daily(*, now: datetime, days: int = DAYS) -> list[dict[str, Any]]:
    """The last `days` days (UTC), oldest first, each with its requests, tokens and revenue by share."""
    first = _day_start(now) - timedelta(days=days - 1)
    rows: dict[date, dict[str, Any]] = {
        (first + timedelta(days=i)).date(): {"requests": 0, "tokens": 0, **dict.fromkeys(SHARES, ZERO)}
        for i in range(days)
    }
    requests = (
        _requests_since(first)
        .annotate(day=TruncDate("created_at", tzinfo=UTC))
        .values("day")
        .annotate(requests=Count("pk"), tokens=_tokens())
        .order_by()
    )
    for row in requests:
        if row["day"] in rows:
            rows[row["day"]].update(requests=row["requests"], tokens=row["tokens"])
    revenue = (
        _charges_since(first)
        .annotate(day=TruncDate("transaction__created_at", tzinfo=UTC))
        .values("day")
        .annotate(**_share_sums())
        .order_by()
    )
    for row in revenue:
        if row["day"] in rows:
            rows[row["day"]].update({share: row[share] for share in SHARES})
    return [{"date": day, **values} for day, values in rows.items()]


def open_holds() -> tuple[int, Decimal]:
    """Holds still open, and what they still hold."""
    held = Hold.objects.filter(status=HoldStatus.HELD).aggregate(
        count=Count("pk"), held=Coalesce(Sum(F("amount") - F("consumed")), Value(ZERO, output_field=MONEY))
    )
    return held["count"], held["held"]


def payouts_open() -> tuple[int, Decimal] | None:
    """Payouts waiting for an operator, once an app `payments` with a `Payout` model is installed (docs/API.md §15);
    None until then. Looked up by name, so that this app does not import one that may not exist."""
    if not apps.is_installed("payments"):
        return None
    try:
        payout = apps.get_model("payments", "Payout")
        found = payout.objects.filter(status="pending").aggregate(
            count=Count("pk"), amount=Coalesce(Sum("amount"), Value(ZERO, output_field=MONEY))
        )
    except (LookupError, FieldError):
        return None
    return found["count"], found["amount"]


def reconciliation_last() -> Reconciliation | None:
    return Reconciliation.objects.first()


def overview(*, now: datetime | None = None) -> Overview:
    """Everything the console's index shows."""
    now = now or timezone.now()
    holds, held = open_holds()
    days = daily(now=now)
    month = Totals(
        requests=sum(d["requests"] for d in days),
        tokens=sum(d["tokens"] for d in days),
        revenue={share: sum((d[share] for d in days), ZERO) for share in SHARES},
    )
    today = Totals(
        requests=days[-1]["requests"],
        tokens=days[-1]["tokens"],
        revenue={share: days[-1][share] for share in SHARES},
    )
    return Overview(
        now=now,
        applications_waiting=provider_applications_waiting(),
        nodes=node_counts(now=now),
        today=today,
        month=month,
        days=days,
        open_holds=holds,
        held=held,
        payouts=payouts_open(),
        reconciliation=reconciliation_last(),
    )
