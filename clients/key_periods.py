"""A key's budget period (API.md §12): its bounds, and the `usage` a key's page shows."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from django.utils import timezone

from clients.choices import BudgetPeriod
from clients.models import ApiKey


def period_bounds(*, period: str, created_at: datetime, now: datetime) -> tuple[datetime, datetime | None]:
    """The current budget period of a key: (start, end), UTC calendar periods; `total` never resets."""
    day = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    if period == BudgetPeriod.DAY:
        return day, day + timedelta(days=1)
    if period == BudgetPeriod.WEEK:
        start = day - timedelta(days=day.weekday())
        return start, start + timedelta(days=7)
    if period == BudgetPeriod.MONTH:
        start = day.replace(day=1)
        end = start.replace(year=start.year + 1, month=1) if start.month == 12 else start.replace(month=start.month + 1)
        return start, end
    return created_at, None


def key_usage(*, key: ApiKey, now: datetime | None = None) -> dict[str, Any]:
    """`usage` of GET client/keys/{id}/: spend in the current period, when it started and resets, what is left."""
    now = now or timezone.now()
    start, end = period_bounds(period=key.budget_period, created_at=key.created_at, now=now)
    spent = key.spent if key.spent_since == start else Decimal("0")
    remaining = None if key.budget is None else max(Decimal("0"), key.budget - spent)
    return {"spent": spent, "period_started_at": start, "resets_at": end, "remaining": remaining}
