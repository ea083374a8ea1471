"""Shapes of seed 004's `inference` resource and its batch."""

from typing import Any

from django.conf import settings
from rest_framework import serializers

from clients.models import Client
from core.serializers import StrictInputMixin
from inference.models import InferenceBatch, InferenceRequest

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
