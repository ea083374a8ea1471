"""Usage roll-ups (API.md §12): a client's finished requests summed by day, key and/or model.

Rows are counted on `finished_at` (when the request was charged), so their `cost` sums equal the ledger's charges
for the same span on the Django paths (a plan-covered request counts with no cost: it was charged nothing); lean
/v1 rows reach the database (and the ledger) when the usage journal is drained, a second or so later.
"""

from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

from django.db.models import Case, Count, F, Sum, Value, When
from django.db.models.functions import Coalesce, TruncDate

from clients.models import Client
from inference.models import InferenceRequest

GROUPS = ("day", "key", "model")


def span_start(value: date | datetime | None) -> datetime | None:
    """`from`: a date is its first instant (UTC)."""
    if value is None or isinstance(value, datetime):
        return value
    return datetime.combine(value, time.min, tzinfo=UTC)


def span_end(value: date | datetime | None) -> datetime | None:
    """`to`: a datetime is exclusive; a date includes that whole day (UTC)."""
    if value is None or isinstance(value, datetime):
        return value
    return datetime.combine(value + timedelta(days=1), time.min, tzinfo=UTC)


def usage_list_rollup(
    *, client: Client, group_by: list[str], start: datetime | None = None, end: datetime | None = None
) -> list[dict[str, Any]]:
    """One row per group: {period, key: {id, name} | None, model, requests, prompt_tokens, completion_tokens, cost}
    (dimensions not grouped by are None)."""
    qs = InferenceRequest.objects.filter(client=client, finished_at__isnull=False)
    if start is not None:
        qs = qs.filter(finished_at__gte=start)
    if end is not None:
        qs = qs.filter(finished_at__lt=end)
    dims: list[str] = []
    if "day" in group_by:
        qs = qs.annotate(period=TruncDate("finished_at", tzinfo=UTC))
        dims.append("period")
    if "key" in group_by:
        dims += ["api_key_id", "api_key__name"]
    if "model" in group_by:
        dims.append("desired_model")
    sums = {
        "requests": Count("id"),
        "prompt_tokens": Coalesce(Sum("prompt_tokens"), 0),
        "completion_tokens": Coalesce(Sum("completion_tokens"), 0),
        "cost": Sum(Case(When(plan_covered=True, then=Value(Decimal(0))), default=F("cost"))),
    }
    if dims:
        rows = list(qs.values(*dims).annotate(**sums).order_by(*dims))
    else:
        total = qs.aggregate(**sums)
        rows = [total] if total["requests"] else []
    return [
        {
            "period": row.get("period"),
            "key": {"id": row["api_key_id"], "name": row["api_key__name"]} if row.get("api_key_id") else None,
            "model": row.get("desired_model"),
            "requests": row["requests"],
            "prompt_tokens": row["prompt_tokens"],
            "completion_tokens": row["completion_tokens"],
            "cost": row["cost"],
        }
        for row in rows
    ]
