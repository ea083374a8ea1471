"""Writes of the console: the record of a ledger reconciliation (the ledger itself is read, never changed)."""

from datetime import datetime

from django.utils import timezone

from clients import ledger
from console.models import Reconciliation

KEPT_MISMATCHES = 50
KEPT_RUNS = 1000


def reconciliation_run(*, trigger: str, now: datetime | None = None) -> Reconciliation:
    """Compare every cached balance with the ledger (clients.ledger.reconcile) and keep the result."""
    mismatches = ledger.reconcile()
    run = Reconciliation.objects.create(
        ran_at=now or timezone.now(),
        ok=not mismatches,
        mismatch_count=len(mismatches),
        mismatches=[str(m) for m in mismatches[:KEPT_MISMATCHES]],
        trigger=trigger,
    )
    # Only the recent history matters to an operator; the ledger is the record.
    old = Reconciliation.objects.order_by("-ran_at", "-id").values_list("pk", flat=True)[KEPT_RUNS : KEPT_RUNS + 1000]
    Reconciliation.objects.filter(pk__in=list(old)).delete()
    return run
