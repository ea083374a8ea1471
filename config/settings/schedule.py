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
from config.settings.training import TRAINING_SWEEP_INTERVAL_S

CELERY_BEAT_SCHEDULE = {
    "node-mark-stale-offline": {
        "task": "llm_models.tasks.node_mark_stale_offline",
        "schedule": timedelta(seconds=NODE_SWEEP_INTERVAL_S),
    },
    "node-metrics-prune": {
        "task": "llm_models.tasks.node_metrics_prune",
        "schedule": timedelta(hours=1),
    },
    "rentals-complete-ended": {
        "task": "rentals.tasks.rentals_complete_ended",
        "schedule": timedelta(seconds=NODE_SWEEP_INTERVAL_S),
    },
    "idempotency-record-prune": {
        "task": "core.tasks.idempotency_record_prune",
        "schedule": timedelta(hours=1),
    },
    "ledger-reconcile": {
        "task": "console.tasks.ledger_reconcile",
        "schedule": timedelta(seconds=LEDGER_RECONCILE_INTERVAL_S),
    },
    "inference-requeue-stuck": {
        "task": "inference.tasks.inference_requeue_stuck",
        "schedule": timedelta(seconds=INFERENCE_SWEEP_INTERVAL_S),
    },
}

# The drain and the stale-lease sweep run only where the lean path can be on (PostgreSQL and a journal): on
# `make run`'s defaults there is nothing to drain, and a task a second would only fill the worker's log.
if INFERENCE_LEAN_PATH and USAGE_JOURNAL_URL and DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    CELERY_BEAT_SCHEDULE["inference-usage-drain"] = {
        "task": "inference.tasks.inference_usage_drain",
        "schedule": timedelta(seconds=USAGE_DRAIN_INTERVAL_S),
    }
    CELERY_BEAT_SCHEDULE["inference-leases-release-stale"] = {
        "task": "inference.tasks.inference_leases_release_stale",
        "schedule": timedelta(seconds=60),
    }

CELERY_BEAT_SCHEDULE["plans-renew-due"] = {
    "task": "plans.tasks.plans_renew_due",
    "schedule": timedelta(seconds=PLANS_RENEW_INTERVAL_S),
}
CELERY_BEAT_SCHEDULE["rentals-payg-charge"] = {
    "task": "rentals.tasks.rentals_payg_charge",
    "schedule": timedelta(seconds=60),
}
CELERY_BEAT_SCHEDULE["training-sweep"] = {
    "task": "training.tasks.training_sweep",
    "schedule": timedelta(seconds=TRAINING_SWEEP_INTERVAL_S),
}
