"""The periodic tasks Celery beat runs, each at the interval its own settings module reads."""

from datetime import timedelta

from config.settings.database import DATABASES
from config.settings.inference import (
    INFERENCE_LEAN_PATH,
    INFERENCE_SWEEP_INTERVAL_S,
    USAGE_DRAIN_INTERVAL_S,
    USAGE_JOURNAL_URL,
)
from config.settings.nodes import NODE_SWEEP_INTERVAL_S
from config.settings.operations import LEDGER_RECONCILE_INTERVAL_S
from config.settings.plans import PLANS_RENEW_INTERVAL_S
from config.settings.rentals import RENTAL_PAYG_CHARGE_INTERVAL_S
from config.settings.training import TRAINING_SWEEP_INTERVAL_S


def _every(task: str, *, seconds: float) -> dict[str, object]:
    """A beat entry: run the task named `task` every `seconds`."""
    return {"task": task, "schedule": timedelta(seconds=seconds)}


CELERY_BEAT_SCHEDULE = {
    "node-mark-stale-offline": _every("llm_models.tasks.node_mark_stale_offline", seconds=NODE_SWEEP_INTERVAL_S),
    "node-metrics-prune": _every("llm_models.tasks.node_metrics_prune", seconds=3600),
    "rentals-complete-ended": _every("rentals.tasks.rentals_complete_ended", seconds=NODE_SWEEP_INTERVAL_S),
    "idempotency-record-prune": _every("core.tasks.idempotency_record_prune", seconds=3600),
    "ledger-reconcile": _every("console.tasks.ledger_reconcile", seconds=LEDGER_RECONCILE_INTERVAL_S),
    "inference-requeue-stuck": _every("inference.tasks.inference_requeue_stuck", seconds=INFERENCE_SWEEP_INTERVAL_S),
}

# The drain and the stale-lease sweep run only where the lean path can be on (PostgreSQL and a journal): on
# `make run`'s defaults there is nothing to drain, and a task a second would only fill the worker's log.
if INFERENCE_LEAN_PATH and USAGE_JOURNAL_URL and DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    CELERY_BEAT_SCHEDULE["inference-usage-drain"] = _every(
        "inference.tasks.inference_usage_drain", seconds=USAGE_DRAIN_INTERVAL_S
    )
    CELERY_BEAT_SCHEDULE["inference-leases-release-stale"] = _every(
        "inference.tasks.inference_leases_release_stale", seconds=60
    )

CELERY_BEAT_SCHEDULE["plans-renew-due"] = _every("plans.tasks.plans_renew_due", seconds=PLANS_RENEW_INTERVAL_S)
CELERY_BEAT_SCHEDULE["rentals-payg-charge"] = _every(
    "rentals.tasks.rentals_payg_charge", seconds=RENTAL_PAYG_CHARGE_INTERVAL_S
)
CELERY_BEAT_SCHEDULE["training-sweep"] = _every("training.tasks.training_sweep", seconds=TRAINING_SWEEP_INTERVAL_S)
