"""Operator views of inference requests and batches: read-only, money included (the ledger is the record)."""

from django.contrib import admin

from inference.models import InferenceBatch, InferenceRequest


class _ReadOnly(admin.ModelAdmin):
    def has_add_permission(self, request) -> bool:  # type: ignore[no-untyped-def]
        return False

    def has_change_permission(self, request, obj=None) -> bool:  # type: ignore[no-untyped-def]
        return False


@admin.register(InferenceRequest)
class InferenceRequestAdmin(_ReadOnly):
    list_display = [
        "id", "client", "desired_model", "status", "channel", "node", "prompt_tokens", "completion_tokens",
        "cost", "latency_ms", "error_code", "created_at",
    ]  # fmt: skip
    list_filter = ["status", "channel", "error_code"]
    search_fields = ["desired_model", "client__user__username", "question_text"]
    list_select_related = ["client__user", "node"]
    date_hierarchy = "created_at"


@admin.register(InferenceBatch)
class InferenceBatchAdmin(_ReadOnly):
    list_display = ["id", "client", "model", "max_tokens", "created_at"]
    list_select_related = ["client__user"]
    search_fields = ["model", "client__user__username"]
