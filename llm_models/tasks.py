"""Celery entry points for the node registry: one service call each."""

from celery import shared_task

from llm_models import services


@shared_task(name="llm_models.tasks.node_mark_stale_offline")
def node_mark_stale_offline() -> int:
    return services.node_mark_stale_offline()


@shared_task(name="llm_models.tasks.node_metrics_prune")
def node_metrics_prune() -> int:
    return services.node_metrics_prune()
