from typing import Any

from django.contrib.postgres.constraints import ExclusionConstraint
from django.contrib.postgres.fields import DateTimeRangeField, RangeBoundary, RangeOperators
from django.db import models
from django.db.models import F, Func, Q

from rentals.choices import RentalBilling, RentalStatus

MAX_HOURS = 720  # hourly billing, and one extension
MAX_PERIODS = 12
MAX_TERM_HOURS = MAX_PERIODS * 720  # twelve months: the longest a fixed rental runs, extensions included


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
    """A client's paid hold on a whole node for [starts_at, ends_at); the price is charged up front.

    Pay as you go (`billing=payg`) has no end (ends_at NULL): started minutes are charged from a rolling hold."""

    client = models.ForeignKey("clients.Client", on_delete=models.PROTECT, related_name="rentals")
    api_key = models.ForeignKey(
        "clients.ApiKey",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="rentals",
        help_text="The key that started it, whose budget its charges count toward (null: a session).",
    )
    node = models.ForeignKey("llm_models.Node", on_delete=models.PROTECT, related_name="rentals")
    status = models.CharField(max_length=32, choices=RentalStatus.choices, default=RentalStatus.ACTIVE)
    billing = models.CharField(max_length=16, choices=RentalBilling.choices, default=RentalBilling.HOURLY)
    periods = models.PositiveSmallIntegerField(null=True, blank=True)  # daily/weekly/monthly
    discount = models.DecimalField(max_digits=4, decimal_places=3, default=0)  # the GPU's, for the period
    hours = models.PositiveSmallIntegerField(null=True, blank=True)  # the term (extensions included); payg: NULL
    price_per_hour = models.DecimalField(max_digits=12, decimal_places=6)  # after the discount
    total = models.DecimalField(max_digits=20, decimal_places=6)  # fixed: the term's price; payg: charged so far
    charged = models.DecimalField(max_digits=20, decimal_places=6, null=True, blank=True)  # set when settled
    refunded = models.DecimalField(max_digits=20, decimal_places=6, null=True, blank=True)
    starts_at = models.DateTimeField()
    ends_at = models.DateTimeField(null=True, blank=True)
    ended_at = models.DateTimeField(null=True, blank=True)
    ssh_public_key = models.TextField(blank=True, default="")
    # The workload (API.md §14), sent to the node in the rental's first command, `start`.
    image = models.CharField(max_length=255, blank=True, default="")
    env = models.JSONField(default=dict, blank=True)
    ports = models.JSONField(default=list, blank=True)
    volumes = models.JSONField(default=list, blank=True)
    jupyter = models.BooleanField(default=False)
    snapshot = models.ForeignKey(
        "rentals.Snapshot", on_delete=models.SET_NULL, null=True, blank=True, related_name="started_rentals"
    )
    # How to reach the instance, as the node reported it in its `start` result (validated); NULL until then.
    access = models.JSONField(null=True, blank=True)
    payg_minutes_charged = models.PositiveIntegerField(default=0)  # payg: minutes charged so far
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
            models.CheckConstraint(
                condition=Q(hours__isnull=True, billing=RentalBilling.PAYG)
                | Q(hours__gte=1, hours__lte=MAX_TERM_HOURS, ends_at__isnull=False),
                name="rental_term_in_range",
            ),
            models.CheckConstraint(
                condition=Q(ends_at__isnull=True) | Q(ends_at__gt=F("starts_at")), name="rental_ends_after_start"
            ),
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

    @property
    def is_payg(self) -> bool:
        return self.billing == RentalBilling.PAYG


class Snapshot(models.Model):
    """A saved instance: the image its node committed when the rental stopped with `snapshot: true`."""

    client = models.ForeignKey("clients.Client", on_delete=models.CASCADE, related_name="snapshots")
    rental = models.ForeignKey(Rental, on_delete=models.CASCADE, related_name="snapshots")
    node = models.ForeignKey("llm_models.Node", on_delete=models.CASCADE, related_name="snapshots")
    # The stop command that made it: a result reported twice records one snapshot.
    command = models.OneToOneField(
        "llm_models.NodeCommand", on_delete=models.SET_NULL, null=True, blank=True, related_name="snapshot"
    )
    image_ref = models.CharField(max_length=255)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-id"]

    def __str__(self) -> str:
        return f"Snapshot #{self.pk} of rental {self.rental_id}: {self.image_ref}"
