from django.db import models


class InferenceStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    COMPLETED = "completed", "Completed"
    FAILED = "failed", "Failed"


class InferenceChannel(models.TextChoices):
    """Who relays the request: a Celery worker (seed resource, batch) or the web process itself (streams, /v1/).
    The web process's value stays `direct`, the word the API's `channel` filter and records have always used."""

    WORKER = "worker", "Celery worker"
    WEB = "direct", "Web process"


class InferenceEndpoint(models.TextChoices):
    """Which OpenAI operation a request is (API.md §11 "More endpoints"): its node path, request and answer shape."""

    CHAT = "chat", "Chat completion"
    COMPLETIONS = "completions", "Text completion"
    EMBEDDINGS = "embeddings", "Embeddings"
