"""Plans (API.md §12): subscribe (paid at once), cancel (runs to `renews_at`), renew or lapse (a beat task), and
the daily quota each covered chat request takes.

Money moves only through clients/ledger/: `ledger.charge` (kind `subscription`, client to platform), keyed by the
subscription and the period it pays for, so a retried renewal charges once.
"""

import calendar
from datetime import UTC, datetime, timedelta

from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from clients import ledger
from clients.choices import LedgerEntryKind
from clients.errors import InsufficientFunds
from clients.models import Client
from core.errors import NotFound
from plans.choices import Coverage, Overage, SubscriptionStatus
from plans.errors import AlreadySubscribed, DailyQuotaExceeded, PlanNotAvailable
from plans.models import Plan, PlanDailyUsage, Subscription


def add_month(when: datetime) -> datetime:
    """The same day and time a month later (the month's last day when it has no such day)."""
    year, month = (when.year + 1, 1) if when.month == 12 else (when.year, when.month + 1)
    return when.replace(year=year, month=month, day=min(when.day, calendar.monthrange(year, month)[1]))


def _charge(sub: Subscription, period_start: datetime) -> None:
    if sub.price_per_month > 0:
        ledger.charge(
            client_id=sub.client_id,
            amount=sub.price_per_month,
            key=f"{sub.pk}:{period_start.isoformat()}",
            kind=LedgerEntryKind.SUBSCRIPTION,
            ref=f"subscription:{sub.pk}",
            memo=f"plan {sub.plan.name}: {period_start:%Y-%m-%d} to {add_month(period_start):%Y-%m-%d}",
        )


def plan_create(**fields: object) -> Plan:
    return Plan.objects.create(**fields)


def plan_update(*, plan: Plan, **changes: object) -> Plan:
    """Change a plan; subscribers keep the price they subscribed at until they subscribe again."""
    for name, value in changes.items():
        setattr(plan, name, value)
    plan.save()
    return plan


def subscription_start(*, client: Client, plan: Plan, now: datetime | None = None) -> Subscription:
    """Subscribe and pay the first month at once: 409 when already subscribed, 402 when the balance is short."""
    now = now or timezone.now()
    if not plan.is_active:
        raise PlanNotAvailable("This plan is no longer open to subscriptions.")
    try:
        with transaction.atomic():
            sub = Subscription.objects.create(
                client=client,
                plan=plan,
                price_per_month=plan.price_per_month,
                started_at=now,
                renews_at=add_month(now),
            )
            _charge(sub, now)
    except IntegrityError as exc:  # subscription_one_active: an active one exists (or one made concurrently)
        raise AlreadySubscribed("You already have an active plan; cancel it first.") from exc
    return sub


def subscription_get_active(*, client: Client) -> Subscription | None:
    return Subscription.objects.select_related("plan").filter(client=client, status=SubscriptionStatus.ACTIVE).first()


def subscription_cancel(*, client: Client, now: datetime | None = None) -> Subscription:
    """Stop renewal: the plan stays active to `renews_at`, then ends."""
    sub = subscription_get_active(client=client)
    if sub is None:
        raise NotFound("You have no active plan.")
    if sub.renew:
        sub.renew = False
        sub.canceled_at = now or timezone.now()
        sub.save(update_fields=["renew", "canceled_at"])
    return sub


def subscription_renew_due(*, now: datetime | None = None, limit: int = 500) -> dict[str, int]:
    """Renew active subscriptions at `renews_at` when the balance allows; else they lapse. Cancelled ones end.
    Safe to run twice: each step is a conditional UPDATE on (status, renews_at), and the charge is keyed."""
    now = now or timezone.now()
    counts = {"renewed": 0, "lapsed": 0, "ended": 0}
    due = Subscription.objects.select_related("plan", "client").filter(
        status=SubscriptionStatus.ACTIVE, renews_at__lte=now
    )
    for sub in due.order_by("renews_at")[:limit]:
        same = Subscription.objects.filter(pk=sub.pk, status=SubscriptionStatus.ACTIVE, renews_at=sub.renews_at)
        if not sub.renew:
            counts["ended"] += same.update(status=SubscriptionStatus.ENDED, ended_at=now)
            continue
        try:
            with transaction.atomic():
                if same.update(renews_at=add_month(sub.renews_at)):
                    _charge(sub, sub.renews_at)
                    counts["renewed"] += 1
        except InsufficientFunds:
            counts["lapsed"] += same.update(status=SubscriptionStatus.LAPSED, ended_at=now)
    return counts


def _seconds_to_midnight(now: datetime) -> int:
    tomorrow = (now.astimezone(UTC) + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    return max(1, int((tomorrow - now).total_seconds()))


def plan_quota_take(*, client_id: int, model: str, now: datetime | None = None) -> str:
    """One chat request of this client: COVERED (within today's quota: the platform pays), BILLED (beyond it, plan
    `bill`, or a model the plan does not cover), NONE (no active plan); 429 beyond the quota of a `block` plan."""
    now = now or timezone.now()
    sub = (
        Subscription.objects.select_related("plan")
        .filter(client_id=client_id, status=SubscriptionStatus.ACTIVE, renews_at__gt=now)
        .first()
    )
    if sub is None:
        return Coverage.NONE
    if not sub.plan.covers(model):
        return Coverage.BILLED
    day = now.astimezone(UTC).date()
    PlanDailyUsage.objects.bulk_create([PlanDailyUsage(subscription=sub, day=day)], ignore_conflicts=True)
    taken = PlanDailyUsage.objects.filter(subscription=sub, day=day, requests__lt=sub.plan.daily_requests).update(
        requests=F("requests") + 1
    )
    if taken:
        return Coverage.COVERED
    if sub.plan.overage == Overage.BLOCK:
        raise DailyQuotaExceeded(
            f"Your plan's {sub.plan.daily_requests} requests for today are used up.",
            retry_after=_seconds_to_midnight(now),
        )
    return Coverage.BILLED


def plan_quota_take_many(*, client_id: int, model: str, count: int, now: datetime | None = None) -> int:
    """`count` chat requests of one batch: how many of them (the first ones) today's quota covers; 429 beyond the
    quota of a `block` plan (the whole batch is refused: call this in the batch's transaction)."""
    covered = 0
    while covered < count and plan_quota_take(client_id=client_id, model=model, now=now) == Coverage.COVERED:
        covered += 1
    return covered
