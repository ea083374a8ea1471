"""Celery entry points of fine-tuning: one service call each."""

from celery import shared_task

from training import services


@shared_task
def training_sweep() -> dict[str, int]:
    """Beat (TRAINING_SWEEP_INTERVAL_S): queue timeouts, time limits, lost nodes, dispatch of waiting jobs."""
    return services.training_sweep()
