"""Writes of fine-tuning (API.md §13): files, jobs, dispatch to nodes, progress, the end of a job and its money."""

import json
import math
from datetime import datetime, timedelta
from decimal import Decimal
from typing import IO, Any

from django.conf import settings
from django.core.files.base import ContentFile
from django.db import transaction
from django.utils import timezone

from clients.key_limits import key_record_spend_of
from clients.models import Client
from llm_models.choices import OPEN_COMMAND_STATUSES, NodeCapability, NodeCommandAction, NodeCommandStatus, NodeStatus
from llm_models.models import LlmModel, Node, NodeCommand, NodeModel
from llm_models.selectors import node_live_q, node_training_q
from llm_models.services import node_command_queue
from rentals.selectors import node_rented_q
from training import billing
from training.choices import OPEN_TRAINING_STATUSES, TrainingErrorCode, TrainingStatus
from training.errors import (
    InvalidTrainingFile,
    NoTrainingNodes,
    TrainingFileTooLarge,
    TrainingJobNotCancellable,
    TrainingNodeUnavailable,
)
from training.models import TrainingEvent, TrainingFile, TrainingJob

# --- Files -----------------------------------------------------------------------------------------------------------


def _line_problem(line: bytes) -> str | None:
    """Why one JSONL line is not a chat example ({"messages": [{"role", "content"}, ...]}), or None."""
    try:
        row = json.loads(line)
    except (ValueError, UnicodeDecodeError) as exc:
        return f"not valid JSON ({exc.__class__.__name__})"
    if not isinstance(row, dict):
        return "not a JSON object"
    messages = row.get("messages")
    if not isinstance(messages, list) or not messages:
        return "`messages` must be a non-empty list"
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            return f"messages[{i}] is not an object"
        if message.get("role") not in ("system", "user", "assistant", "tool"):
            return f"messages[{i}].role must be system, user, assistant or tool"
        content = message.get("content")
        if not isinstance(content, str | list) and not (content is None and message.get("role") == "assistant"):
            return f"messages[{i}].content must be a string or a list of parts"
    return None


def training_file_validate(*, data: bytes) -> int:
    """Check a fine-tuning JSONL file line by line; returns its number of examples. InvalidTrainingFile (400)
    names the first bad line (1-based)."""
    count = 0
    for number, line in enumerate(data.split(b"\n"), start=1):
        if not line.strip():
            continue
        problem = _line_problem(line)
        if problem:
            raise InvalidTrainingFile(f"Line {number}: {problem}.")
        count += 1
    if not count:
        raise InvalidTrainingFile("The file holds no examples (one JSON object with `messages` per line).")
    return count


def training_file_create(*, client: Client, upload: IO[bytes], filename: str, purpose: str) -> TrainingFile:
    """Validate and store an uploaded dataset in the default storage (STORAGES["default"])."""
    if purpose != "fine-tune":
        raise InvalidTrainingFile("Only `purpose: fine-tune` files are accepted.", attr="purpose")
    limit = settings.TRAINING_FILE_MAX_BYTES
    data = upload.read(limit + 1)
    if len(data) > limit:
        raise TrainingFileTooLarge(f"The file is larger than the limit of {limit} bytes.")
    lines = training_file_validate(data=data)
    safe_name = "".join(c if c.isalnum() or c in "._-" else "_" for c in filename)[-100:] or "data.jsonl"
    row = TrainingFile(
        client=client, filename=filename[:255] or "data.jsonl", purpose=purpose, bytes=len(data), lines=lines
    )
    row.file.save(safe_name, ContentFile(data), save=False)
    row.save()
    return row


# --- Choosing a node -------------------------------------------------------------------------------------------------


def _free_gpu_memory_mb(node: Node) -> float:
    metrics = node.latest_metrics or {}
    total, used = metrics.get("gpu_memory_total_mb"), metrics.get("gpu_memory_used_mb")
    if isinstance(total, int | float) and isinstance(used, int | float):
        return max(0.0, float(total) - float(used))
    return 0.0


def _can_train(node: Node) -> bool:
    return NodeCapability.TRAINING in (node.capabilities or []) and node.gpu is not None


def trainable_nodes(*, now: datetime | None = None) -> list[Node]:
    """Nodes that can take a job now: live, approved, not rented, not training, declaring `training`, with a
    priced GPU; cheapest first, then most free GPU memory, then lowest id."""
    now = now or timezone.now()
    nodes = (
        Node.objects.filter(node_live_q(now=now), gpu__isnull=False)
        .exclude(node_rented_q(now=now))
        .exclude(node_training_q())
        .exclude(training_jobs__status__in=OPEN_TRAINING_STATUSES)
        .select_related("gpu")
    )
    found = [n for n in nodes if _can_train(n)]
    return sorted(found, key=lambda n: (n.gpu.price_per_hour, -_free_gpu_memory_mb(n), n.pk))  # type: ignore[union-attr]


def _highest_training_price() -> Decimal | None:
    """The dearest GPU among registered nodes that declare `training` (a queued job's hold when none is free)."""
    nodes = Node.objects.exclude(status=NodeStatus.DEREGISTERED).filter(gpu__isnull=False).select_related("gpu")
    prices = [n.gpu.price_per_hour for n in nodes if _can_train(n) and n.gpu is not None]
    return max(prices) if prices else None


# --- Jobs ------------------------------------------------------------------------------------------------------------


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


# --- The node's reports ----------------------------------------------------------------------------------------------


def _number(metrics: dict, key: str) -> float | None:
    value = metrics.get(key)
    return float(value) if isinstance(value, int | float) and math.isfinite(value) else None


def _serve_fine_tuned(job: TrainingJob) -> None:
    """Make the node serve the job's model for its owner: a private LlmModel and the node's NodeModel row, at the
    prices it serves the base model at (its defaults otherwise)."""
    assert job.node is not None
    model, _ = LlmModel.objects.get_or_create(name=job.fine_tuned_model, defaults={"owner": job.client})
    if model.owner_id != job.client_id:
        return  # the name is someone else's (cannot happen with job ids in it): never route it to this client
    base = NodeModel.objects.filter(node=job.node, model__name=job.base_model).first()
    defaults = {
        "input_price_per_million": base.input_price_per_million if base else settings.DEFAULT_INPUT_PRICE_PER_MILLION,
        "output_price_per_million": base.output_price_per_million
        if base
        else settings.DEFAULT_OUTPUT_PRICE_PER_MILLION,
        "context_window": base.context_window if base else None,
    }
    NodeModel.objects.update_or_create(node=job.node, model=model, defaults=defaults)


def training_job_record_report(*, command: NodeCommand, now: datetime | None = None) -> None:
    """A node reported on a `train` command (llm_models' node_command_reported, inside the heartbeat's
    transaction): `running` moves the job to running and records progress and an event; `succeeded` ends it
    (serving `fine_tuned_model` for its owner); `failed` ends it failed. Reports for an ended job change nothing."""
    if command.action != NodeCommandAction.TRAIN:
        return
    job = (
        TrainingJob.objects.select_for_update(of=("self",))
        .select_related("node__owner")
        .filter(train_command=command)
        .first()
    )
    if job is None or job.is_finished:
        return
    now = now or timezone.now()
    outcome = command.outcome or {}
    metrics = outcome.get("metrics") or {}
    if "progress" in outcome:
        job.progress = min(1.0, max(0.0, float(outcome["progress"])))
    if metrics:
        job.metrics = metrics
    if command.status == NodeCommandStatus.RUNNING:
        if job.status == TrainingStatus.QUEUED:
            job.status = TrainingStatus.RUNNING
            job.started_at = now
        job.save(update_fields=["status", "started_at", "progress", "metrics"])
        _event(
            job,
            command.result[:1000] if command.result else "",
            step=int(s) if (s := _number(metrics, "step")) is not None else None,
            epoch=_number(metrics, "epoch"),
            loss=_number(metrics, "loss"),
            progress=outcome.get("progress"),
        )
        return
    if job.started_at is None:
        job.started_at = now  # a node that reported only its end ran from then: nothing to charge
    job.save(update_fields=["started_at", "progress", "metrics"])
    if command.status == NodeCommandStatus.SUCCEEDED:
        job.progress = 1.0
        job.fine_tuned_model = job.output_model
        job.save(update_fields=["progress", "fine_tuned_model"])
        _serve_fine_tuned(job)
        _finish(job, status=TrainingStatus.SUCCEEDED, ended_at=now)
    else:
        _finish(
            job,
            status=TrainingStatus.FAILED,
            ended_at=now,
            code=TrainingErrorCode.TRAINING_FAILED,
            message=command.result or "The node reported a failure.",
        )


# --- The sweep (beat) ------------------------------------------------------------------------------------------------


def training_sweep(*, now: datetime | None = None) -> dict[str, int]:
    """Fail jobs no node took within TRAINING_QUEUE_TIMEOUT_S, stop jobs past max_hours (failed, time_limit) or
    on a node that stopped heartbeating (failed, node_lost; one sent but not started goes back to the queue), and
    send queued jobs to nodes that became free. Safe to repeat."""
    now = now or timezone.now()
    done = {"timed_out": 0, "time_limit": 0, "node_lost": 0, "requeued": 0, "dispatched": 0}
    queue_cutoff = now - timedelta(seconds=settings.TRAINING_QUEUE_TIMEOUT_S)
    live_nodes = Node.objects.filter(node_live_q(now=now)).values("pk")
    open_jobs = TrainingJob.objects.filter(status__in=OPEN_TRAINING_STATUSES)
    for job_id in open_jobs.filter(status=TrainingStatus.QUEUED, created_at__lt=queue_cutoff).values_list(
        "pk", flat=True
    )[:500]:
        with transaction.atomic():
            job = training_job_get_for_update(job_id)
            if job.status == TrainingStatus.QUEUED:
                _finish(
                    job,
                    status=TrainingStatus.FAILED,
                    ended_at=now,
                    code=TrainingErrorCode.QUEUE_TIMEOUT,
                    message="No node took the job in time.",
                    stop=True,
                )
                done["timed_out"] += 1
    for job_id in open_jobs.filter(status=TrainingStatus.RUNNING).values_list("pk", flat=True)[:500]:
        with transaction.atomic():
            job = training_job_get_for_update(job_id)
            if job.status != TrainingStatus.RUNNING or job.started_at is None:
                continue
            limit = job.started_at + timedelta(hours=job.max_hours)
            if now >= limit:
                _finish(
                    job,
                    status=TrainingStatus.FAILED,
                    ended_at=limit,
                    code=TrainingErrorCode.TIME_LIMIT,
                    message=f"The job ran past max_hours ({job.max_hours}).",
                    stop=True,
                )
                done["time_limit"] += 1
    lost = open_jobs.filter(node__isnull=False).exclude(node_id__in=live_nodes)
    for job_id in lost.values_list("pk", flat=True)[:500]:
        with transaction.atomic():
            job = training_job_get_for_update(job_id)
            if (
                job.is_finished
                or job.node is None
                or Node.objects.filter(node_live_q(now=now), pk=job.node.pk).exists()
            ):
                continue
            if job.status == TrainingStatus.QUEUED:  # sent, never started: back to the queue
                _stop_on_node(job)
                job.node, job.train_command, job.assigned_at = None, None, None
                job.save(update_fields=["node", "train_command", "assigned_at"])
                _event(job, "The node went away before starting; waiting for another.")
                done["requeued"] += 1
                continue
            ended = max(job.started_at or now, job.node.last_heartbeat_at or now)
            NodeCommand.objects.filter(pk=job.train_command_id or 0, status__in=OPEN_COMMAND_STATUSES).update(
                status=NodeCommandStatus.FAILED, result="The node stopped heartbeating.", updated_at=now
            )
            _finish(
                job,
                status=TrainingStatus.FAILED,
                ended_at=min(ended, now),
                code=TrainingErrorCode.NODE_LOST,
                message="The node stopped heartbeating during the job.",
            )
            done["node_lost"] += 1
    waiting = open_jobs.filter(status=TrainingStatus.QUEUED, node__isnull=True).order_by("pk")
    for job_id in waiting.values_list("pk", flat=True)[:200]:
        done["dispatched"] += training_job_dispatch(job_id=job_id, now=now)
    return done
