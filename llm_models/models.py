from decimal import Decimal

from django.db import models
from django.db.models import Q

from llm_models.choices import (
    OPEN_COMMAND_STATUSES,
    NodeCapability,
    NodeCommandAction,
    NodeCommandStatus,
    NodeStatus,
)


def default_capabilities() -> list[str]:
    """A node that declares nothing serves inference only."""
    return [NodeCapability.INFERENCE.value]


class LlmModel(models.Model):
    """A model name some node has served (e.g. `meta-llama/Llama-3.1-8B-Instruct`)."""

    name = models.CharField(max_length=255, unique=True)
    context_window = models.PositiveIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    # A private model (a fine-tuned `ft:...`, API.md §13): routable for this client only, never listed publicly.
    owner = models.ForeignKey(
        "clients.Client", on_delete=models.PROTECT, null=True, blank=True, related_name="private_models"
    )

    class Meta:
        ordering = ["name"]
        verbose_name = "LLM model"

    def __str__(self) -> str:
        return self.name


class Node(models.Model):
    """A provider's OpenAI-compatible inference server, authenticated by its node token."""

    owner = models.ForeignKey("clients.Client", on_delete=models.PROTECT, related_name="nodes")
    name = models.CharField(max_length=128)
    endpoint_url = models.URLField(max_length=500, help_text="OpenAI-compatible base URL, /v1 included.")
    backend_api_key_encrypted = models.TextField(blank=True, default="", help_text="Encrypted; never shown.")
    gpu = models.ForeignKey("gpus.Gpu", on_delete=models.SET_NULL, null=True, blank=True, related_name="nodes")
    region = models.CharField(max_length=64, blank=True)
    status = models.CharField(max_length=16, choices=NodeStatus.choices, default=NodeStatus.OFFLINE)
    token_digest = models.CharField(max_length=64, unique=True)
    token_last4 = models.CharField(max_length=4)
    last_heartbeat_at = models.DateTimeField(null=True, blank=True)
    latest_metrics = models.JSONField(default=dict, blank=True)
    last_metrics_sample_at = models.DateTimeField(null=True, blank=True)
    active_requests = models.PositiveIntegerField(default=0)
    models_digest = models.CharField(max_length=64, blank=True, default="")
    # Routing state, written by the inference relay after each attempt (llm_models.services.node_record_*).
    latency_ewma_ms = models.FloatField(null=True, blank=True, help_text="Smoothed time to a full answer.")
    consecutive_failures = models.PositiveIntegerField(default=0)
    cooldown_until = models.DateTimeField(null=True, blank=True, help_text="No new work before this time.")
    registered_at = models.DateTimeField(auto_now_add=True)
    deregistered_at = models.DateTimeField(null=True, blank=True)
    # How a renter reaches the machine, set by its operator (at register or in the admin); shown to its renter only.
    # NULL: not given (API.md §6 shows them as null), distinct from any real value.
    ssh_host = models.CharField(max_length=255, null=True, blank=True)  # noqa: DJ001
    ssh_port = models.PositiveIntegerField(null=True, blank=True)
    ssh_user = models.CharField(max_length=64, null=True, blank=True)  # noqa: DJ001
    # Command actions this node's agent answered `unsupported` for: refused with 501 from then on.
    unsupported_actions = models.JSONField(default=list, blank=True)
    # What the node offers (NodeCapability values), declared at register and in heartbeats (API.md §14).
    capabilities = models.JSONField(default=default_capabilities, blank=True)
    served_models = models.ManyToManyField(LlmModel, through="NodeModel", related_name="nodes")

    class Meta:
        ordering = ["id"]
        indexes = [
            # The stale-node sweep and "live nodes" reads: one range scan over online nodes by heartbeat age.
            models.Index(fields=["status", "last_heartbeat_at"], name="node_status_heartbeat_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.name} #{self.pk}"


class NodeModel(models.Model):
    """A model a node serves, at the node operator's prices per million tokens."""

    node = models.ForeignKey(Node, on_delete=models.CASCADE, related_name="node_models")
    model = models.ForeignKey(LlmModel, on_delete=models.PROTECT, related_name="node_models")
    input_price_per_million = models.DecimalField(max_digits=12, decimal_places=6, default=Decimal("0"))
    output_price_per_million = models.DecimalField(max_digits=12, decimal_places=6, default=Decimal("0"))
    context_window = models.PositiveIntegerField(null=True, blank=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(fields=["node", "model"], name="node_model_unique"),
            models.CheckConstraint(
                condition=Q(input_price_per_million__gte=0, output_price_per_million__gte=0),
                name="node_model_prices_not_negative",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.model} on {self.node}"


class NodeMetricSample(models.Model):
    """One sample of a node's metrics: at most one per NODE_METRICS_SAMPLE_EVERY_S, pruned after retention."""

    node = models.ForeignKey(Node, on_delete=models.CASCADE, related_name="metric_samples")
    recorded_at = models.DateTimeField()
    metrics = models.JSONField(default=dict)
    active_requests = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["-recorded_at"]
        indexes = [
            models.Index(fields=["node", "recorded_at"], name="node_sample_node_time_idx"),
            models.Index(fields=["recorded_at"], name="node_sample_time_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.node_id} @ {self.recorded_at:%Y-%m-%d %H:%M}"


class NodeCommand(models.Model):
    """A command for a node's agent (a rental's job): re-sent in every heartbeat until the node reports its outcome.

    It refers to its rental by a lazy reference only: llm_models never imports rentals (STYLE.md §1).
    """

    node = models.ForeignKey(Node, on_delete=models.CASCADE, related_name="commands")
    rental = models.ForeignKey(
        "rentals.Rental", on_delete=models.CASCADE, null=True, blank=True, related_name="commands"
    )
    action = models.CharField(max_length=32, choices=NodeCommandAction.choices)
    params = models.JSONField(default=dict, blank=True)
    status = models.CharField(max_length=16, choices=NodeCommandStatus.choices, default=NodeCommandStatus.PENDING)
    result = models.TextField(blank=True, default="")
    # The structured fields the node reported beside `output` (API.md "structured outcomes"): access, snapshot_ref.
    outcome = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["id"]
        indexes = [
            # The heartbeat's "open commands of this node" (and the fast path's NOT EXISTS): open rows only.
            models.Index(
                fields=["node", "id"],
                name="node_command_open_idx",
                condition=Q(status__in=OPEN_COMMAND_STATUSES),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.action} #{self.pk} for node {self.node_id} ({self.status})"
