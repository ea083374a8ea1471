"""Shapes of seed 004's `inference` resource and its batch."""

from datetime import UTC, date, datetime
from typing import Any

from django.conf import settings
from django.utils.dateparse import parse_date, parse_datetime
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from clients.models import Client
from core.serializers import StrictInputMixin
from inference.models import InferenceBatch, InferenceRequest
from inference.usage_rollup import GROUPS
from inference.v1.protocol import response_id

QUESTION_MAX_CHARS = 100_000


def _max_tokens_field(**kwargs: Any) -> serializers.IntegerField:
    return serializers.IntegerField(
        min_value=1,
        max_value=settings.INFERENCE_MAX_TOKENS_LIMIT,
        help_text=f"Most tokens to generate (default {settings.INFERENCE_DEFAULT_MAX_TOKENS}).",
        **kwargs,
    )


class InferenceIn(StrictInputMixin, serializers.Serializer):
    client = serializers.PrimaryKeyRelatedField(
        queryset=Client.objects.all(), required=False, help_text="Defaults to the caller; may not name anyone else."
    )
    question_text = serializers.CharField(max_length=QUESTION_MAX_CHARS)
    desired_model = serializers.CharField(max_length=255)
    max_tokens = _max_tokens_field(required=False)

    def validate_client(self, value: Client) -> Client:
        if value != self.context["client"]:
            raise serializers.ValidationError("You may only ask on your own behalf.", code="not_yours")
        return value


class InferenceUpdateIn(StrictInputMixin, serializers.Serializer):
    question_text = serializers.CharField(max_length=QUESTION_MAX_CHARS)
    desired_model = serializers.CharField(max_length=255)
    max_tokens = _max_tokens_field(required=False)


class InferenceOut(serializers.ModelSerializer):
    class Meta:
        model = InferenceRequest
        fields = [
            "id",
            "client",
            "question_text",
            "desired_model",
            "endpoint",
            "answer_text",
            "status",
            "node",
            "prompt_tokens",
            "completion_tokens",
            "usage_estimated",
            "cost",
            "latency_ms",
            "max_tokens",
            "error_code",
            "error_detail",
            "batch",
            "created_at",
            "updated_at",
            "finished_at",
        ]
        read_only_fields = fields


class InferenceBatchIn(StrictInputMixin, serializers.Serializer):
    model = serializers.CharField(max_length=255)
    prompts = serializers.ListField(
        child=serializers.CharField(max_length=QUESTION_MAX_CHARS), min_length=1, max_length=100
    )
    max_tokens = _max_tokens_field(required=False)


class InferenceBatchItemOut(serializers.ModelSerializer):
    class Meta:
        model = InferenceRequest
        fields = [
            "id",
            "question_text",
            "answer_text",
            "status",
            "node",
            "prompt_tokens",
            "completion_tokens",
            "cost",
            "latency_ms",
            "error_code",
        ]
        read_only_fields = fields


class InferenceBatchOut(serializers.ModelSerializer):
    status = serializers.SerializerMethodField(
        help_text="queued, running, completed (all finished) or failed (all failed)."
    )
    items = InferenceBatchItemOut(many=True, read_only=True)

    class Meta:
        model = InferenceBatch
        fields = ["id", "model", "max_tokens", "status", "items", "created_at"]
        read_only_fields = fields

    def get_status(self, obj: InferenceBatch) -> str:
        statuses = {item.status for item in obj.items.all()}
        if statuses <= {"failed"}:
            return "failed"
        if statuses <= {"completed", "failed"}:
            return "completed"
        return "running" if "running" in statuses or "completed" in statuses or "failed" in statuses else "queued"


# --- Usage roll-ups (API.md §12; inference/usage_rollup.py) ------------------------------------------------------


@extend_schema_field({"type": "string", "pattern": r"^\d{4}-\d{2}-\d{2}([T ].+)?$"})
class _DateOrDateTimeField(serializers.Field):
    """An ISO date (`2026-12-06`) or datetime (`2026-12-06T10:00:00Z`), UTC when no offset is given."""

    default_error_messages = {"invalid": "Give an ISO date (YYYY-MM-DD) or datetime."}

    def to_internal_value(self, data: object) -> date | datetime:
        text = str(data)
        try:  # Django's parsers raise ValueError for a well-formed impossible value (`0000-00-00`)
            parsed_dt = parse_datetime(text) if "T" in text or " " in text else None
            if parsed_dt is not None:
                return parsed_dt if parsed_dt.tzinfo else parsed_dt.replace(tzinfo=UTC)
            parsed = parse_date(text)
        except ValueError:
            parsed = None
        if parsed is None:
            self.fail("invalid")
        return parsed

    def to_representation(self, value: object) -> str:
        return str(value)


class UsageQueryIn(serializers.Serializer):
    group_by = serializers.RegexField(
        r"^(day|key|model)(,(day|key|model))*$",
        max_length=32,
        required=False,
        default="day",
        help_text="day, key, model, or several joined by commas (day,model).",
    )
    from_ = _DateOrDateTimeField(required=False)
    to = _DateOrDateTimeField(required=False)

    def get_fields(self) -> dict:
        fields = super().get_fields()
        fields["from"] = fields.pop("from_")
        return fields

    def validate_group_by(self, value: str) -> list[str]:
        groups = [g.strip() for g in value.split(",") if g.strip()]
        bad = [g for g in groups if g not in GROUPS]
        if not groups or bad:
            raise serializers.ValidationError(f"Group by day, key or model (got {value!r}).", code="invalid")
        return groups


class UsageKeyOut(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()


class UsageRowOut(serializers.Serializer):
    period = serializers.DateField(allow_null=True, help_text="The UTC day, when grouped by day.")
    key = UsageKeyOut(allow_null=True, help_text="The key that asked, when grouped by key (null: no key).")
    model = serializers.CharField(allow_null=True)
    requests = serializers.IntegerField()
    prompt_tokens = serializers.IntegerField()
    completion_tokens = serializers.IntegerField()
    cost = serializers.DecimalField(max_digits=20, decimal_places=6)


GENERATION_ID_MAX_LENGTH = 128


class GenerationQueryIn(serializers.Serializer):
    id = serializers.CharField(
        max_length=GENERATION_ID_MAX_LENGTH,
        help_text="The `id` of a /v1 answer you asked for (`chatcmpl-...`, `cmpl-...` or `emb-...`).",
    )


class GenerationOut(serializers.ModelSerializer):
    """One /v1 request as its `chatcmpl-` id finds it (API.md §11)."""

    id = serializers.SerializerMethodField()
    model = serializers.CharField(
        source="desired_model", read_only=True, help_text="The model that answered (or was asked)."
    )
    node = serializers.IntegerField(
        source="node_id", read_only=True, allow_null=True, help_text="The id of the node that answered."
    )
    cost = serializers.DecimalField(
        max_digits=20, decimal_places=6, read_only=True, help_text="USD charged (the ledger's figure)."
    )

    class Meta:
        model = InferenceRequest
        fields = [
            "id",
            "endpoint",
            "model",
            "node",
            "status",
            "prompt_tokens",
            "completion_tokens",
            "cost",
            "latency_ms",
            "created_at",
        ]
        read_only_fields = fields

    def get_id(self, obj: InferenceRequest) -> str:
        return response_id(obj.request_key, obj.endpoint)
