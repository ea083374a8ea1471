"""Celery entry points for shared plumbing: one call each."""

from celery import shared_task

from core import idempotency


@shared_task(name="core.tasks.idempotency_record_prune")
def idempotency_record_prune() -> int:
    return idempotency.idempotency_record_prune()
