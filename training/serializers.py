"""Shapes of fine-tuning's seed endpoints (/api/v1/training/) and of OpenAI's (/v1/files, /v1/fine_tuning/jobs)."""

import ipaddress
from typing import Any
from urllib.parse import urlsplit

from rest_framework import serializers

from core.serializers import StrictInputMixin
from llm_models.endpoint_guard import address_problem
from training.choices import TrainingStatus
from training.errors import UnsafeDatasetUrl
from training.models import TrainingEvent, TrainingJob

SUFFIX_PATTERN = r"^[A-Za-z0-9_-]{1,40}$"
MODEL_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._/:@+-]{0,199}$"


def check_dataset_url(url: str) -> str:
    """An https URL the node may fetch: no credentials, no private or reserved IP literal, no `localhost`.
    (The node fetches it, not this service; its name is not resolved here.)"""
    try:
        parts = urlsplit(url.strip())
        parts.port  # noqa: B018  (raises for a bad port)
    except ValueError as exc:
        raise UnsafeDatasetUrl(f"Not a valid URL: {exc}.") from exc
    if parts.scheme != "https":
        raise UnsafeDatasetUrl("The dataset URL must be an https:// URL.")
    if parts.username or parts.password or "@" in parts.netloc:
        raise UnsafeDatasetUrl("The dataset URL must not contain credentials.")
    host = (parts.hostname or "").rstrip(".").lower()
    if not host or host == "localhost" or host.endswith(".localhost"):
        raise UnsafeDatasetUrl("The dataset URL needs a public host.")
    try:
        literal = ipaddress.ip_address(host)
    except ValueError:
        literal = None
        if host.replace(".", "").isdigit() or host.startswith("0x"):
            raise UnsafeDatasetUrl("Write an IP address in dotted-decimal form.") from None
    if literal is not None:
        problem = address_problem(literal, allow_private=False)
        if problem:
            raise UnsafeDatasetUrl(f"The dataset URL names {problem}.")
    return url.strip()


class TrainingJobCreateIn(StrictInputMixin, serializers.Serializer):
    model = serializers.RegexField(MODEL_PATTERN, max_length=200, help_text="The base model to fine-tune.")
    dataset_url = serializers.CharField(max_length=2000, required=False, help_text="An https URL of JSONL chat data.")
    file_id = serializers.CharField(
        max_length=40, required=False, help_text="A file uploaded through POST /v1/files (`file-7` or `7`)."
    )
    epochs = serializers.IntegerField(min_value=1, max_value=100)
    learning_rate = serializers.FloatField(min_value=1e-9, max_value=10)
    batch_size = serializers.IntegerField(min_value=1, max_value=1024)
    max_hours = serializers.IntegerField(min_value=1, max_value=72, required=False, default=1)
    node_id = serializers.IntegerField(min_value=1, max_value=2**62, required=False)
    suffix = serializers.RegexField(SUFFIX_PATTERN, required=False, default="job")

    def validate_dataset_url(self, value: str) -> str:
        try:
            return check_dataset_url(value)
        except UnsafeDatasetUrl as exc:
            raise serializers.ValidationError(exc.detail, code=exc.code) from exc

    def validate_file_id(self, value: str) -> int:
        return parse_file_id(value)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if ("dataset_url" in attrs) == ("file_id" in attrs):
            raise serializers.ValidationError(
                {"dataset_url": ["Give either dataset_url or file_id."]}, code="dataset_required"
            )
        return attrs


def parse_file_id(value: str) -> int:
    raw = value[5:] if value.startswith("file-") else value
    if not raw.isdigit() or not 0 < int(raw) < 2**62:
        raise serializers.ValidationError("Not a file id (file-<n>).", code="invalid")
    return int(raw)


class TrainingErrorOut(serializers.Serializer):
    code = serializers.CharField()
    message = serializers.CharField()


class TrainingJobOut(serializers.ModelSerializer):
    model = serializers.CharField(source="base_model")
    node_id = serializers.IntegerField(allow_null=True)
    file_id = serializers.SerializerMethodField()
    fine_tuned_model = serializers.SerializerMethodField()
    error = serializers.SerializerMethodField()
    status = serializers.ChoiceField(choices=TrainingStatus.choices)

    class Meta:
        model = TrainingJob
        fields = [
            "id",
            "status",
            "model",
            "node_id",
            "dataset_url",
            "file_id",
            "epochs",
            "learning_rate",
            "batch_size",
            "max_hours",
            "suffix",
            "progress",
            "metrics",
            "fine_tuned_model",
            "error",
            "price_per_hour",
            "held_amount",
            "charged",
            "created_at",
            "started_at",
            "finished_at",
        ]

    def get_file_id(self, job: TrainingJob) -> str | None:
        return f"file-{job.training_file_id}" if job.training_file_id else None

    def get_fine_tuned_model(self, job: TrainingJob) -> str | None:
        return job.fine_tuned_model or None

    @staticmethod
    def _error(job: TrainingJob) -> dict[str, str] | None:
        return {"code": job.error_code, "message": job.error_message} if job.error_code else None

    def get_error(self, job: TrainingJob) -> dict[str, str] | None:
        return self._error(job)


class TrainingEventOut(serializers.ModelSerializer):
    class Meta:
        model = TrainingEvent
        fields = ["id", "created_at", "step", "epoch", "loss", "progress", "level", "message"]


class TrainingJobListQueryIn(serializers.Serializer):
    status = serializers.ChoiceField(choices=TrainingStatus.choices, required=False)


# --- OpenAI's shapes (/v1/) ----------------------------------------------------------------------------------------


class OpenAIFineTuneHyperparametersIn(serializers.Serializer):
    n_epochs = serializers.JSONField(required=False)
    batch_size = serializers.JSONField(required=False)
    learning_rate_multiplier = serializers.JSONField(required=False)


class OpenAIFineTuneCreateIn(serializers.Serializer):
    model = serializers.RegexField(MODEL_PATTERN, max_length=200)
    training_file = serializers.CharField(max_length=40)
    hyperparameters = OpenAIFineTuneHyperparametersIn(required=False)
    suffix = serializers.RegexField(SUFFIX_PATTERN, required=False, allow_null=True)
    validation_file = serializers.CharField(required=False, allow_null=True)
    seed = serializers.IntegerField(required=False, allow_null=True)
    method = serializers.JSONField(required=False)
    metadata = serializers.JSONField(required=False)
    integrations = serializers.JSONField(required=False)

    def validate_training_file(self, value: str) -> int:
        return parse_file_id(value)

    def validate_hyperparameters(self, value: dict[str, Any]) -> dict[str, Any]:
        """`auto` means our default; numbers are bounded as on the seed path."""
        out: dict[str, Any] = {}
        bounds = {
            "n_epochs": (1, 100, int, 3),
            "batch_size": (1, 1024, int, 8),
            "learning_rate_multiplier": (1e-6, 100, float, 1.0),
        }
        for name, (low, high, kind, default) in bounds.items():
            raw = value.get(name, "auto")
            if raw == "auto" or raw is None:
                out[name] = default
                continue
            if (
                isinstance(raw, bool)
                or not isinstance(raw, int | float)
                or (kind is int and not float(raw).is_integer())
            ):
                raise serializers.ValidationError({name: [f"Expected `auto` or a number in {low}..{high}."]})
            if not low <= raw <= high:
                raise serializers.ValidationError({name: [f"Expected `auto` or a number in {low}..{high}."]})
            out[name] = kind(raw)
        return out
