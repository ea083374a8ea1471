"""Operator views of inference requests and batches: read-only, money included (the ledger is the record)."""

from decimal import Decimal
from typing import TYPE_CHECKING, TypedDict

from django.contrib import admin
from django.db.models import Count, DecimalField, F, Model, Q, QuerySet, Sum
from django.db.models.functions import Coalesce
from django.http import HttpRequest
from django.utils.html import format_html

from clients.ledger import split_revenue
from core.formatting import money_html
from inference.choices import InferenceStatus
from inference.models import InferenceBatch, InferenceRequest, NodeRevenue

if TYPE_CHECKING:
    from django_stubs_ext import WithAnnotations


class _Revenue(TypedDict):
    """What NodeRevenueAdmin.get_queryset annotates each node with."""

    completed_count: int
    token_sum: int
    revenue_sum: Decimal


class _ReadOnly(admin.ModelAdmin):
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False  # the ledger refers to what was charged


@admin.register(InferenceRequest)
class InferenceRequestAdmin(_ReadOnly):
    # What fits beside the filters at 1280 px: the error code under the status, the channel (a filter too) and the
    # rest on the request's page.
    list_display = ["id", "client", "desired_model", "outcome", "node", "tokens", "cost_usd", "latency", "created"]
    exclude = ["request_key"]  # an internal key (its /v1 id is `chatcmpl-<key>`)
    list_filter = ["status", "channel", "error_code"]
    search_fields = ["desired_model", "client__user__username", "question_text"]
    list_select_related = ["client__user", "node"]
    date_hierarchy = "created_at"

    @admin.display(description="status", ordering="status")
    def outcome(self, obj: InferenceRequest) -> str:
        if not obj.error_code:
            return obj.get_status_display()
        return format_html('{}<div class="quiet">{}</div>', obj.get_status_display(), obj.error_code)

    @admin.display(description="tokens (in / out)")
    def tokens(self, obj: InferenceRequest) -> str:
        return f"{obj.prompt_tokens:,} / {obj.completion_tokens:,}"

    @admin.display(description="cost (USD)", ordering="cost")
    def cost_usd(self, obj: InferenceRequest) -> str:
        return money_html(obj.cost, 6)

    @admin.display(description="latency", ordering="latency_ms")
    def latency(self, obj: InferenceRequest) -> str:
        return "-" if obj.latency_ms is None else f"{obj.latency_ms:,} ms"

    @admin.display(description="created (UTC)", ordering="created_at")
    def created(self, obj: InferenceRequest) -> str:
        return format_html(
            '<time datetime="{}">{}</time>', obj.created_at.isoformat(), obj.created_at.strftime("%Y-%m-%d %H:%M")
        )


@admin.register(InferenceBatch)
class InferenceBatchAdmin(_ReadOnly):
    list_display = ["id", "client", "model", "max_tokens", "created_at"]
    list_select_related = ["client__user"]
    search_fields = ["model", "client__user__username"]


@admin.register(NodeRevenue)
class NodeRevenueAdmin(_ReadOnly):
    """Per-node revenue from completed inferences: what clients paid, and the operator's 70% of it."""

    list_display = ["id", "name", "owner", "status", "completed_inferences", "tokens", "revenue", "operator_share"]
    list_select_related = ["owner__user"]
    list_filter = ["status"]
    search_fields = ["name", "owner__user__username"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[NodeRevenue]:
        done = Q(inference_requests__status=InferenceStatus.COMPLETED)
        return (
            super()
            .get_queryset(request)
            .annotate(
                completed_count=Count("inference_requests", filter=done),
                token_sum=Coalesce(
                    Sum(
                        F("inference_requests__prompt_tokens") + F("inference_requests__completion_tokens"), filter=done
                    ),
                    0,
                ),
                revenue_sum=Coalesce(
                    Sum("inference_requests__cost", filter=done), Decimal("0"), output_field=DecimalField()
                ),
            )
        )

    @admin.display(description="completed inferences", ordering="completed_count")
    def completed_inferences(self, obj: "WithAnnotations[NodeRevenue, _Revenue]") -> int:
        return obj.completed_count

    @admin.display(description="tokens", ordering="token_sum")
    def tokens(self, obj: "WithAnnotations[NodeRevenue, _Revenue]") -> int:
        return obj.token_sum

    @admin.display(description="revenue (USD)", ordering="revenue_sum")
    def revenue(self, obj: "WithAnnotations[NodeRevenue, _Revenue]") -> str:
        return money_html(obj.revenue_sum)

    @admin.display(description="operator share (USD)")
    def operator_share(self, obj: "WithAnnotations[NodeRevenue, _Revenue]") -> str:
        return money_html(split_revenue(obj.revenue_sum)["operator"])
