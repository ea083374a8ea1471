from celery import shared_task

from console import services


@shared_task
def ledger_reconcile() -> bool:
    """Beat: reconcile the ledger and keep the result for the console (LEDGER_RECONCILE_INTERVAL_S)."""
    return services.reconciliation_run(trigger="beat").ok
