from decimal import Decimal
from typing import Any

from django.db import models
from django.db.models import Q

from inference.choices import InferenceChannel, InferenceEndpoint, InferenceStatus
from llm_models.models import Node

MONEY: dict[str, Any] = {"max_digits": 20, "decimal_places": 6}
FINISHED = (InferenceStatus.COMPLETED, InferenceStatus.FAILED)


class InferenceBatch(models.Model):
    """Up to 100 prompts for one model, each dispatched and billed as its own InferenceRequest."""

    client = models.ForeignKey("clients.Client", on_delete=models.PROTECT, related_name="inference_batches")
    model = models.CharField(max_length=255)
    max_tokens = models.PositiveIntegerField()
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["client", "created_at"], name="infbatch_client_created_idx")]

    def __str__(self) -> str:
        return f"batch #{self.pk} ({self.model})"


class InferenceRequest(models.Model):
    """One question to one model (seed 004's `inference`), its answer, and what it cost."""

    client = models.ForeignKey(
        "clients.Client",
        on_delete=models.PROTECT,
        related_name="inference_requests",
        db_index=False,  # the (client, created_at) and (client, finished_at) indexes lead with it
    )
    api_key = models.ForeignKey(
        "clients.ApiKey",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="inference_requests",
        help_text="The key that asked (null: a session, a keyless payer, or a /v1 lean-path row).",
    )
    plan_covered = models.BooleanField(
        default=False,
        db_default=False,
        help_text="Within the client's plan's daily quota: the platform pays for it (plans/).",
    )
    question_text = models.TextField()
    desired_model = models.CharField(max_length=255)
    answer_text = models.TextField(blank=True, default="")
    status = models.CharField(max_length=16, choices=InferenceStatus.choices, default=InferenceStatus.QUEUED)
    channel = models.CharField(max_length=8, choices=InferenceChannel.choices, default=InferenceChannel.WORKER)
    endpoint = models.CharField(
        max_length=16,
        choices=InferenceEndpoint.choices,
        default=InferenceEndpoint.CHAT,
        help_text="The /v1 operation asked: chat, completions (legacy text) or embeddings.",
    )
    node = models.ForeignKey(
        "llm_models.Node", on_delete=models.PROTECT, null=True, blank=True, related_name="inference_requests"
    )
    batch = models.ForeignKey(InferenceBatch, on_delete=models.PROTECT, null=True, blank=True, related_name="items")
    max_tokens = models.PositiveIntegerField()
    prompt_tokens = models.PositiveIntegerField(default=0)
    completion_tokens = models.PositiveIntegerField(default=0)
    usage_estimated = models.BooleanField(
        default=False, help_text="Tokens estimated from text: the node's usage was missing or implausible."
    )
    input_price_per_million = models.DecimalField(max_digits=12, decimal_places=6, null=True, blank=True)
    output_price_per_million = models.DecimalField(max_digits=12, decimal_places=6, null=True, blank=True)
    held_amount = models.DecimalField(**MONEY, default=Decimal("0"))
    cost = models.DecimalField(**MONEY, default=Decimal("0"))
    request_key = models.CharField(
        max_length=64,
        unique=True,
        help_text="The request's unique key: its /v1 id is `chatcmpl-<key>`; a retry with the same Idempotency-Key "
        "derives the same one. A per-request hold is the ledger hold `inference:<key>`.",
    )
    latency_ms = models.PositiveIntegerField(null=True, blank=True)
    error_code = models.CharField(max_length=64, blank=True, default="")
    error_detail = models.CharField(max_length=500, blank=True, default="")
    attempts = models.PositiveSmallIntegerField(default=0, help_text="Dispatches claimed so far.")
    deadline_at = models.DateTimeField(help_text="Past this, the sweeper re-queues or fails the request.")
    claimed_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["client", "created_at"], name="inference_client_created_idx"),
            # Usage roll-ups (usage_rollup.py): a client's requests finished in a span.
            models.Index(fields=["client", "finished_at"], name="inference_client_finished_idx"),
            # The stuck-request sweep: unfinished rows by deadline.
            models.Index(
                fields=["deadline_at"],
                name="inference_unfinished_deadline",
                condition=Q(status__in=["queued", "running"]),
            ),
            # In-flight load per node for routing.
            models.Index(fields=["node"], name="inference_running_node_idx", condition=Q(status="running")),
            # The market's measured latency and throughput over recent completed traffic, per node, per model and
            # overall (market/selectors.py).
            models.Index(
                fields=["node", "finished_at"], name="inference_done_node_idx", condition=Q(status="completed")
            ),
            models.Index(
                fields=["desired_model", "finished_at"],
                name="inference_done_model_idx",
                condition=Q(status="completed"),
            ),
            models.Index(fields=["finished_at"], name="inference_done_time_idx", condition=Q(status="completed")),
        ]
        constraints = [
            models.CheckConstraint(condition=Q(cost__gte=0, held_amount__gte=0), name="inference_money_not_negative"),
        ]

    def __str__(self) -> str:
        return f"inference #{self.pk} ({self.desired_model}, {self.status})"

    @property
    def is_finished(self) -> bool:
        return self.status in FINISHED

    @property
    def ledger_hold_key(self) -> str:
        """The key of the ledger hold placed for this request alone (not /v1 lean-path rows: a lease paid them)."""
        return f"inference:{self.request_key}"


class NodeRevenue(Node):
    """A node seen by what it has earned (admin only; no table of its own)."""

    class Meta:
        proxy = True
        verbose_name = "node revenue"
        verbose_name_plural = "node revenue"
