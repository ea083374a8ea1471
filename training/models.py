"""Fine-tuning (API.md §13): uploaded datasets, training jobs on providers' nodes, and their progress events."""

from decimal import Decimal

from django.db import models
from django.db.models import Q

from training.choices import OPEN_TRAINING_STATUSES, TrainingStatus


class TrainingFile(models.Model):
    """A JSONL dataset uploaded through POST /v1/files (purpose `fine-tune`), kept in the default storage."""

    client = models.ForeignKey("clients.Client", on_delete=models.CASCADE, related_name="training_files")
    filename = models.CharField(max_length=255)
    purpose = models.CharField(max_length=32, default="fine-tune")
    bytes = models.PositiveBigIntegerField()
    lines = models.PositiveIntegerField()
    file = models.FileField(upload_to="training_files/%Y/%m/")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-id"]

    def __str__(self) -> str:
        return f"file-{self.pk} ({self.filename})"


class TrainingJob(models.Model):
    """A fine-tuning job: queued until a node takes it, running from the node's first `running` report."""

    client = models.ForeignKey("clients.Client", on_delete=models.PROTECT, related_name="training_jobs")
    api_key = models.ForeignKey(
        "clients.ApiKey",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="training_jobs",
        help_text="The key that created it, whose budget its charge counts toward (null: a session).",
    )
    node = models.ForeignKey(
        "llm_models.Node", on_delete=models.PROTECT, null=True, blank=True, related_name="training_jobs"
    )
    # The node the client named (node_id): the job goes there or nowhere.
    requested_node = models.ForeignKey(
        "llm_models.Node", on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    base_model = models.CharField(max_length=255)
    dataset_url = models.CharField(max_length=2000, blank=True, default="")
    training_file = models.ForeignKey(
        TrainingFile, on_delete=models.PROTECT, null=True, blank=True, related_name="jobs"
    )
    epochs = models.PositiveIntegerField()
    learning_rate = models.FloatField()
    batch_size = models.PositiveIntegerField()
    max_hours = models.PositiveIntegerField(default=1)
    suffix = models.CharField(max_length=64, default="job")
    status = models.CharField(max_length=16, choices=TrainingStatus.choices, default=TrainingStatus.QUEUED)
    progress = models.FloatField(default=0)
    metrics = models.JSONField(default=dict, blank=True)
    fine_tuned_model = models.CharField(max_length=255, blank=True, default="")
    error_code = models.CharField(max_length=32, blank=True, default="")
    error_message = models.TextField(blank=True, default="")
    # Money (training/billing.py): the hold is price_per_hour x max_hours; the charge the started minutes.
    price_per_hour = models.DecimalField(max_digits=20, decimal_places=6)
    held_amount = models.DecimalField(max_digits=20, decimal_places=6)
    charged = models.DecimalField(max_digits=20, decimal_places=6, default=Decimal("0"))
    train_command = models.ForeignKey(
        "llm_models.NodeCommand", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    # Where the node fetches an uploaded dataset from (PUBLIC_BASE_URL, or the creating request's host).
    public_base_url = models.CharField(max_length=500, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    assigned_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]
        indexes = [
            # The sweep's reads: open jobs only.
            models.Index(
                fields=["status", "created_at"],
                name="training_job_open_idx",
                condition=Q(status__in=OPEN_TRAINING_STATUSES),
            ),
        ]
        constraints = [
            models.CheckConstraint(condition=Q(progress__gte=0, progress__lte=1), name="training_progress_0_1"),
        ]

    def __str__(self) -> str:
        return f"training job {self.pk} ({self.status})"

    @property
    def is_finished(self) -> bool:
        return self.status not in OPEN_TRAINING_STATUSES

    @property
    def output_model(self) -> str:
        """The name the node serves the result under: ft:<base>:<suffix>:<job id>."""
        return f"ft:{self.base_model}:{self.suffix}:{self.pk}"

    @property
    def ledger_key(self) -> str:
        return f"training:{self.pk}"


class TrainingEvent(models.Model):
    """One progress report of a job (a point of its loss curve), or a status message."""

    job = models.ForeignKey(TrainingJob, on_delete=models.CASCADE, related_name="events")
    created_at = models.DateTimeField(auto_now_add=True)
    step = models.BigIntegerField(null=True, blank=True)
    epoch = models.FloatField(null=True, blank=True)
    loss = models.FloatField(null=True, blank=True)
    progress = models.FloatField(null=True, blank=True)
    level = models.CharField(max_length=8, default="info")
    message = models.CharField(max_length=1000, blank=True, default="")

    class Meta:
        ordering = ["id"]
        indexes = [models.Index(fields=["job", "id"], name="training_event_job_idx")]

    def __str__(self) -> str:
        return f"event {self.pk} of job {self.job_id}"
