"""A job's life: created (its cost held), sent to a node, cancelled, and ended (charged, node freed)."""

from datetime import datetime
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from clients.key_limits import key_record_spend_of
from clients.models import Client
from llm_models.choices import OPEN_COMMAND_STATUSES, NodeCommandAction, NodeCommandStatus
from llm_models.models import Node, NodeCommand
from llm_models.selectors import node_training_q
from llm_models.services import node_command_queue
from training import billing
from training.choices import OPEN_TRAINING_STATUSES, TrainingStatus
from training.errors import NoTrainingNodes, TrainingJobNotCancellable, TrainingNodeUnavailable
from training.models import TrainingEvent, TrainingFile, TrainingJob
from training.services.placement import _highest_training_price, trainable_nodes


@transaction.atomic
def training_job_create(
    *,
    client: Client,
    model: str,
    epochs: int,
    learning_rate: float,
    batch_size: int,
    max_hours: int = 1,
    suffix: str = "job",
    dataset_url: str = "",
    training_file: TrainingFile | None = None,
    node_id: int | None = None,
    public_base_url: str = "",
    api_key_id: int | None = None,
) -> TrainingJob:
    """Create a job, hold its most possible cost and send it to a node if one can take it now.

    With `node_id`, that node or 409 node_unavailable. Otherwise the cheapest free node; with none free the job
    waits (queued) and holds at the dearest training-capable node's price, so any node that frees up can take it.
    No node declares `training` at all: 503 no_capacity. A short balance: 402, nothing left behind."""
    now = timezone.now()
    requested = None
    if node_id is not None:
        requested = Node.objects.select_related("gpu").filter(pk=node_id).first()
        free = {n.pk for n in trainable_nodes(now=now)}
        if requested is None or node_id not in free:
            raise TrainingNodeUnavailable(f"Node {node_id} cannot take a training job now.")
        assert requested.gpu is not None
        price = requested.gpu.price_per_hour
    else:
        free_nodes = trainable_nodes(now=now)
        highest = _highest_training_price()
        if highest is None:
            raise NoTrainingNodes("No node offers training; retry later.")
        price = free_nodes[0].gpu.price_per_hour if free_nodes and free_nodes[0].gpu else highest
    amount = billing.hold_amount(price_per_hour=price, max_hours=max_hours)
    job = TrainingJob.objects.create(
        client=client,
        requested_node=requested,
        base_model=model,
        dataset_url=dataset_url,
        training_file=training_file,
        epochs=epochs,
        learning_rate=learning_rate,
        batch_size=batch_size,
        max_hours=max_hours,
        suffix=suffix,
        price_per_hour=price,
        held_amount=amount,
        public_base_url=public_base_url,
        api_key_id=api_key_id,
    )
    billing.hold(client=client, job_id=job.pk, amount=amount)
    _event(job, "Job created; waiting for a node.")
    training_job_dispatch(job_id=job.pk, now=now)
    job.refresh_from_db()
    return job


def _dataset_url(job: TrainingJob) -> str:
    if job.training_file_id is None:
        return job.dataset_url
    base = (settings.PUBLIC_BASE_URL or job.public_base_url).rstrip("/")
    return f"{base}/api/v1/llm_models/files/{job.training_file_id}/"


def _train_params(job: TrainingJob) -> dict[str, Any]:
    return {
        "job_id": job.pk,
        "base_model": job.base_model,
        "dataset_url": _dataset_url(job),
        "hyperparameters": {
            "n_epochs": job.epochs,
            "batch_size": job.batch_size,
            "learning_rate": job.learning_rate,
        },
        "output_model": job.output_model,
    }


@transaction.atomic
def training_job_dispatch(*, job_id: int, now: datetime | None = None) -> bool:
    """Send a queued job without a node to the best node that can take it now (the one it named, if any), as a
    `train` command; the node may cost at most what the job holds per hour. True if sent."""
    now = now or timezone.now()
    job = TrainingJob.objects.select_for_update().filter(pk=job_id).first()
    if job is None or job.status != TrainingStatus.QUEUED or job.node_id is not None:
        return False
    for candidate in trainable_nodes(now=now):
        if job.requested_node_id is not None and candidate.pk != job.requested_node_id:
            continue
        assert candidate.gpu is not None
        if candidate.gpu.price_per_hour > job.price_per_hour:
            continue
        # The node's row lock: two jobs racing for one node queue here; the loser sees it busy and moves on.
        node = Node.objects.select_for_update().get(pk=candidate.pk)
        busy = (
            Node.objects.filter(node_training_q(), pk=node.pk).exists()
            or TrainingJob.objects.filter(node=node, status__in=OPEN_TRAINING_STATUSES).exists()
        )
        if busy:
            continue
        job.node = node
        job.price_per_hour = candidate.gpu.price_per_hour
        job.assigned_at = now
        job.save(update_fields=["node", "price_per_hour", "assigned_at"])
        job.train_command = node_command_queue(node=node, action=NodeCommandAction.TRAIN, params=_train_params(job))
        job.save(update_fields=["train_command"])
        _event(job, f"Sent to node {node.pk}.")
        return True
    return False


def training_job_get_for_update(job_id: int) -> TrainingJob:
    """The job, row-locked, after its `train` command's row: the heartbeat locks the command before the job
    (llm_models reports under the command's lock), so taking them in the same order never deadlocks."""
    command_id = TrainingJob.objects.filter(pk=job_id).values_list("train_command_id", flat=True).first()
    if command_id is not None:
        list(NodeCommand.objects.select_for_update().filter(pk=command_id).values_list("pk", flat=True))
    return TrainingJob.objects.select_for_update(of=("self",)).select_related("node__owner").get(pk=job_id)


def _event(job: TrainingJob, message: str, *, level: str = "info", **fields: Any) -> None:
    if TrainingEvent.objects.filter(job=job).count() >= settings.TRAINING_MAX_EVENTS_PER_JOB:
        return
    TrainingEvent.objects.create(job=job, message=message[:1000], level=level, **fields)


def _stop_on_node(job: TrainingJob) -> None:
    """Withdraw the job's `train` command; if the node had received it, send `train_cancel` {job_id}."""
    command = job.train_command
    if command is None or job.node is None:
        return
    delivered = command.status != NodeCommandStatus.PENDING
    NodeCommand.objects.filter(pk=command.pk, status__in=OPEN_COMMAND_STATUSES).update(
        status=NodeCommandStatus.CANCELLED, result="The training job ended.", updated_at=timezone.now()
    )
    if delivered:
        node_command_queue(node=job.node, action=NodeCommandAction.TRAIN_CANCEL, params={"job_id": job.pk})


def _finish(
    job: TrainingJob, *, status: str, ended_at: datetime, code: str = "", message: str = "", stop: bool = False
) -> None:
    """End the job (under its row lock): charge its started minutes, release the rest, free the node."""
    minutes = billing.started_minutes(started_at=job.started_at, ended_at=ended_at)
    charge = billing.charge_for(price_per_hour=job.price_per_hour, minutes=minutes, held=job.held_amount)
    operator = job.node.owner if job.node is not None else None
    billing.settle(job_id=job.pk, charge=charge if operator is not None else Decimal("0"), operator=operator)
    if operator is not None:
        key_record_spend_of(key_id=job.api_key_id, cost=charge)  # toward the budget of the key that created it
    if stop:
        _stop_on_node(job)
    job.status = status
    job.finished_at = ended_at
    job.charged = charge if operator is not None else Decimal("0")
    job.error_code = code
    job.error_message = message[:2000]
    job.save(update_fields=["status", "finished_at", "charged", "error_code", "error_message"])
    _event(job, f"Job {status}" + (f": {message}" if message else "."), level="info" if not code else "error")


@transaction.atomic
def training_job_cancel(*, job: TrainingJob, now: datetime | None = None) -> TrainingJob:
    """Cancel a queued or running job: the started minutes are charged, the rest released, the node told to stop
    (`train_cancel`). An ended job: 409 job_not_cancellable."""
    locked = training_job_get_for_update(job.pk)
    if locked.is_finished:
        raise TrainingJobNotCancellable(f"The job is already {locked.status}.")
    _finish(locked, status=TrainingStatus.CANCELLED, ended_at=now or timezone.now(), stop=True)
    return locked
