"""Node uptime measured from the metrics samples the heartbeat keeps, one per epoch-aligned slot (docs/API.md §9
"Market figures"): read by the market's figures and by rental offers' reliability."""

from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import Count, ExpressionWrapper, FloatField, IntegerField, OuterRef, Value
from django.db.models.functions import Cast, Coalesce, Floor, Greatest, Least, NullIf

from core.db import EpochSeconds, scalar_subquery
from llm_models.models import NodeMetricSample
from llm_models.selectors import metrics_slot_start

UPTIME_WINDOWS = {"uptime_5m": 5 * 60, "uptime_30m": 30 * 60, "uptime_1d": 24 * 3600}


def node_uptime_annotations(*, now: datetime, node_ref: str = "pk", registered_ref: str = "registered_at") -> dict:
    """uptime_5m, uptime_30m, uptime_1d (0..1, or null when no whole slot has passed since registration)."""
    every = settings.NODE_METRICS_SAMPLE_EVERY_S
    current = metrics_slot_start(now)
    current_index = int(current.timestamp()) // every
    registered_index = Cast(Floor(EpochSeconds(registered_ref) / Value(float(every))), IntegerField())
    since_registration = Value(current_index) - registered_index
    annotations = {}
    for name, seconds in UPTIME_WINDOWS.items():
        slots = max(1, min(seconds, settings.NODE_METRICS_RETENTION_S) // every)
        start = current - timedelta(seconds=slots * every)
        count = scalar_subquery(
            NodeMetricSample.objects.filter(
                node_id=OuterRef(node_ref), recorded_at__gte=start, recorded_at__lt=current
            ),
            "node_id",
            Count("id"),
            IntegerField(),
        )
        # Slots measured: the window's, or fewer for a node registered within it (0 before a whole one passed).
        measured = Greatest(Least(Value(slots), since_registration), Value(0))
        # Capped by LEAST before dividing: PostgreSQL's LEAST skips NULLs, so it must not see the quotient.
        annotations[name] = ExpressionWrapper(
            Cast(Least(Coalesce(count, Value(0)), measured), FloatField())
            / Cast(NullIf(measured, Value(0)), FloatField()),
            output_field=FloatField(),
        )
    return annotations
