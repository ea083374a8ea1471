"""The sweep (beat): jobs unclaimed too long, past max_hours or on a lost node ended; waiting jobs sent."""

from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from llm_models.choices import OPEN_COMMAND_STATUSES, NodeCommandStatus
from llm_models.models import Node, NodeCommand
from llm_models.selectors import node_live_q
from training.choices import OPEN_TRAINING_STATUSES, TrainingErrorCode, TrainingStatus
from training.models import TrainingJob
from training.services.jobs import _event, _finish, _stop_on_node, training_job_dispatch, training_job_get_for_update


def training_sweep(*, now: datetime | None = None) -> dict[str, int]:
    """Fail jobs no node took within TRAINING_QUEUE_TIMEOUT_S, stop jobs past max_hours (failed, time_limit) or
    on a node that stopped heartbeating (failed, node_lost, the node told to stop should it come back; one sent but
    not started goes back to the queue), and
    send queued jobs to nodes that became free. Safe to repeat. Each job is handled in a transaction of its own."""
    now = now or timezone.now()
    done = {"timed_out": 0, "time_limit": 0, "node_lost": 0, "requeued": 0, "dispatched": 0}
    open_jobs = TrainingJob.objects.filter(status__in=OPEN_TRAINING_STATUSES)
    queue_cutoff = now - timedelta(seconds=settings.TRAINING_QUEUE_TIMEOUT_S)
    unclaimed = open_jobs.filter(status=TrainingStatus.QUEUED, created_at__lt=queue_cutoff)
    for job_id in unclaimed.values_list("pk", flat=True)[:500]:
        done["timed_out"] += _fail_unclaimed(job_id, now=now)
    for job_id in open_jobs.filter(status=TrainingStatus.RUNNING).values_list("pk", flat=True)[:500]:
        done["time_limit"] += _stop_past_max_hours(job_id, now=now)
    live_nodes = Node.objects.filter(node_live_q(now=now)).values("pk")
    lost = open_jobs.filter(node__isnull=False).exclude(node_id__in=live_nodes)
    for job_id in lost.values_list("pk", flat=True)[:500]:
        outcome = _end_on_lost_node(job_id, now=now)
        if outcome:
            done[outcome] += 1
    waiting = open_jobs.filter(status=TrainingStatus.QUEUED, node__isnull=True).order_by("pk")
    for job_id in waiting.values_list("pk", flat=True)[:200]:
        done["dispatched"] += training_job_dispatch(job_id=job_id, now=now)
    return done


@transaction.atomic
def _fail_unclaimed(job_id: int, *, now: datetime) -> bool:
    """Fail a job still queued past its queue timeout (queue_timeout). True if it was."""
    job = training_job_get_for_update(job_id)
    if job.status != TrainingStatus.QUEUED:
        return False
    _finish(
        job,
        status=TrainingStatus.FAILED,
        ended_at=now,
        code=TrainingErrorCode.QUEUE_TIMEOUT,
        message="No node took the job in time.",
        stop=True,
    )
    return True


@transaction.atomic
def _stop_past_max_hours(job_id: int, *, now: datetime) -> bool:
    """Fail a running job whose max_hours are up (time_limit), ended at its limit. True if it was."""
    job = training_job_get_for_update(job_id)
    if job.status != TrainingStatus.RUNNING or job.started_at is None:
        return False
    limit = job.started_at + timedelta(hours=job.max_hours)
    if now < limit:
        return False
    _finish(
        job,
        status=TrainingStatus.FAILED,
        ended_at=limit,
        code=TrainingErrorCode.TIME_LIMIT,
        message=f"The job ran past max_hours ({job.max_hours}).",
        stop=True,
    )
    return True


@transaction.atomic
def _end_on_lost_node(job_id: int, *, now: datetime) -> str | None:
    """A job whose node stopped heartbeating: sent but not started, back to the queue ("requeued"); running,
    failed at the node's last heartbeat ("node_lost"). None if the job ended or its node is live again."""
    job = training_job_get_for_update(job_id)
    if job.is_finished or job.node is None or Node.objects.filter(node_live_q(now=now), pk=job.node.pk).exists():
        return None
    if job.status == TrainingStatus.QUEUED:  # sent, never started: back to the queue
        _stop_on_node(job)
        job.node, job.train_command, job.assigned_at = None, None, None
        job.save(update_fields=["node", "train_command", "assigned_at"])
        _event(job, "The node went away before starting; waiting for another.")
        return "requeued"
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
        stop=True,  # a node that comes back still training is told to stop (train_cancel)
    )
    return "node_lost"
