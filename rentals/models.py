from typing import Any

from django.contrib.postgres.constraints import ExclusionConstraint
from django.contrib.postgres.fields import DateTimeRangeField, RangeBoundary, RangeOperators
from django.db import models
from django.db.models import F, Func, Q

from rentals.choices import RentalStatus

MAX_HOURS = 720


class TsTzRange(Func):
    function = "TSTZRANGE"
    output_field = DateTimeRangeField()


class PostgresExclusionConstraint(ExclusionConstraint):
    """An exclusion constraint on PostgreSQL; nothing elsewhere (SQLite, for `make run` without a database server),
    where rental_start's row lock on the node is the only guard against double booking."""

    # Any: Django returns None where a backend has no such constraint; its stubs say str.
    def constraint_sql(self, model: Any, schema_editor: Any) -> Any:
        return super().constraint_sql(model, schema_editor) if schema_editor.connection.vendor == "postgresql" else None

    def create_sql(self, model: Any, schema_editor: Any) -> Any:
        return super().create_sql(model, schema_editor) if schema_editor.connection.vendor == "postgresql" else None

    def remove_sql(self, model: Any, schema_editor: Any) -> Any:
        return super().remove_sql(model, schema_editor) if schema_editor.connection.vendor == "postgresql" else None


class Rental(models.Model):
    """A client's paid hold on a whole node for [starts_at, ends_at); the price is charged up front."""

    client = models.ForeignKey("clients.Client", on_delete=models.PROTECT, related_name="rentals")
    node = models.ForeignKey("llm_models.Node", on_delete=models.PROTECT, related_name="rentals")
    status = models.CharField(max_length=16, choices=RentalStatus.choices, default=RentalStatus.ACTIVE)
    hours = models.PositiveSmallIntegerField()
    price_per_hour = models.DecimalField(max_digits=12, decimal_places=6)
    total = models.DecimalField(max_digits=20, decimal_places=6)
    charged = models.DecimalField(max_digits=20, decimal_places=6, null=True, blank=True)  # set when settled
    refunded = models.DecimalField(max_digits=20, decimal_places=6, null=True, blank=True)
    starts_at = models.DateTimeField()
    ends_at = models.DateTimeField()
    ended_at = models.DateTimeField(null=True, blank=True)
    ssh_public_key = models.TextField(blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-id"]
        constraints = [
            # No double booking, whatever the application does: two active rentals of one node never overlap.
            PostgresExclusionConstraint(
                name="rental_no_double_booking",
                expressions=[
                    ("node", RangeOperators.EQUAL),
                    (TsTzRange("starts_at", "ends_at", RangeBoundary()), RangeOperators.OVERLAPS),
                ],
                condition=Q(status=RentalStatus.ACTIVE),
            ),
            models.CheckConstraint(condition=Q(hours__gte=1, hours__lte=MAX_HOURS), name="rental_hours_in_range"),
            models.CheckConstraint(condition=Q(ends_at__gt=F("starts_at")), name="rental_ends_after_start"),
            models.CheckConstraint(condition=Q(total__gte=0), name="rental_total_not_negative"),
        ]
        indexes = [
            # The expiry sweep: active rentals by end time.
            models.Index(fields=["ends_at"], name="rental_active_ends_idx", condition=Q(status=RentalStatus.ACTIVE)),
        ]

    def __str__(self) -> str:
        return f"Rental #{self.pk} of node {self.node_id} ({self.status})"

    @property
    def ledger_key(self) -> str:
        return f"rental:{self.pk}"
