"""Celery entry points of inference: thin, safe to run twice (the claim is a conditional UPDATE)."""

from typing import Any

from celery import shared_task

from inference import door_limits, services
from inference.journal import entries, stream
from inference.models import InferenceRequest


@shared_task(
    name="inference.tasks.inference_dispatch",
    acks_late=True,  # a worker killed mid-request leaves the message for redelivery...
    reject_on_worker_lost=True,  # ...and the claim makes a redelivery of a claimed request a no-op
    ignore_result=True,
)
def inference_dispatch(request_id: int) -> None:
    was: dict[str, Any] = dict(InferenceRequest.objects.filter(pk=request_id).values("status").first() or {})
    services.inference_run(request_id=request_id)
    door_limits.request_finished_by_id(request_id=request_id, was=was)  # the key's budget, the plan's cover


@shared_task(name="inference.tasks.inference_requeue_stuck", ignore_result=True)
def inference_requeue_stuck() -> dict[str, int]:
    return services.inference_requeue_stuck()


@shared_task(name="inference.tasks.inference_usage_drain", ignore_result=True)
def inference_usage_drain() -> int:
    """Apply the /v1 lean door's usage journal to PostgreSQL (exactly once: see inference/journal/stream.py)."""
    return stream.drain()


@shared_task(name="inference.tasks.inference_leases_release_stale", ignore_result=True)
def inference_leases_release_stale() -> int:
    """Release leases of web processes that died; their journaled usage is applied first."""
    stream.drain()
    return entries.release_stale_leases()
