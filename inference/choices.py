from django.db import models


class InferenceStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    COMPLETED = "completed", "Completed"
    FAILED = "failed", "Failed"


class InferenceChannel(models.TextChoices):
    """Who relays the request: a Celery worker (seed resource, batch) or the web process itself (streams, /v1/)."""

    WORKER = "worker", "Celery worker"
    DIRECT = "direct", "Web process"
