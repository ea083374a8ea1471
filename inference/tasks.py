"""Celery entry points of inference: thin, safe to run twice (the claim is a conditional UPDATE)."""

from celery import shared_task

from inference import services


@shared_task(
    name="inference.tasks.inference_dispatch",
    acks_late=True,  # a worker killed mid-request leaves the message for redelivery...
    reject_on_worker_lost=True,  # ...and the claim makes a redelivery of a claimed request a no-op
    ignore_result=True,
)
def inference_dispatch(request_id: int) -> None:
    services.inference_run(request_id=request_id)


@shared_task(name="inference.tasks.inference_requeue_stuck", ignore_result=True)
def inference_requeue_stuck() -> dict[str, int]:
    return services.inference_requeue_stuck()
