from django.db import models


class Reconciliation(models.Model):
    """One run of clients.ledger.reconcile(): when, by whom, and what disagreed (nothing, when `ok`)."""

    ran_at = models.DateTimeField(db_index=True)
    ok = models.BooleanField()
    mismatch_count = models.PositiveIntegerField(default=0)
    mismatches = models.JSONField(default=list, blank=True, help_text="The first mismatches, as text.")
    trigger = models.CharField(max_length=16, help_text="`beat` (the schedule) or `operator` (the console).")

    class Meta:
        ordering = ["-ran_at", "-id"]

    def __str__(self) -> str:
        return f"reconciliation {self.ran_at:%Y-%m-%d %H:%M} ({'ok' if self.ok else f'{self.mismatch_count} off'})"
