"""The node's reports on a `train` command: progress, events, the end of a job and its fine-tuned model."""

import math
from datetime import datetime

from django.conf import settings
from django.utils import timezone

from llm_models.choices import NodeCommandAction, NodeCommandStatus
from llm_models.models import LlmModel, NodeCommand, NodeModel
from training.choices import TrainingErrorCode, TrainingStatus
from training.models import TrainingJob
from training.services.jobs import _event, _finish


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
