from django.db import models


class TrainingStatus(models.TextChoices):
    QUEUED = "queued", "Queued"  # waiting for a node, or sent to one that has not reported `running` yet
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"


OPEN_TRAINING_STATUSES = (TrainingStatus.QUEUED.value, TrainingStatus.RUNNING.value)


class TrainingErrorCode(models.TextChoices):
    """Why a job failed (its `error.code`)."""

    TRAINING_FAILED = "training_failed", "The node reported a failure"
    TIME_LIMIT = "time_limit", "Ran past max_hours"
    QUEUE_TIMEOUT = "queue_timeout", "No node took it within TRAINING_QUEUE_TIMEOUT_S"
    NODE_LOST = "node_lost", "The node stopped heartbeating"
