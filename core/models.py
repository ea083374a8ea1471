from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db import models


class IdempotencyRecord(models.Model):
    """A request sent with an `Idempotency-Key` (core/idempotency.py): claimed while it runs, then its response."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    key = models.CharField(max_length=255)
    method = models.CharField(max_length=8)
    path = models.CharField(max_length=1024)
    fingerprint = models.CharField(max_length=64, help_text="SHA-256 of the request's query string and body.")
    response_status = models.PositiveSmallIntegerField(null=True, blank=True, help_text="Null while it runs.")
    response_body = models.JSONField(null=True, blank=True, encoder=DjangoJSONEncoder)
    started_at = models.DateTimeField(help_text="When the request now running (or the last one) claimed the key.")
    created_at = models.DateTimeField(auto_now_add=True)
    completed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            # One record per caller, key and operation: two concurrent retries cannot both claim it.
            models.UniqueConstraint(fields=["user", "key", "method", "path"], name="idempotency_record_unique"),
        ]
        indexes = [models.Index(fields=["created_at"], name="idempotency_created_idx")]  # the daily prune

    def __str__(self) -> str:
        return f"{self.method} {self.path} [{self.key}]"
