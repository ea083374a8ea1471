"""Operator views of nodes: status, last heartbeat, latest metrics and served models. Secrets never shown."""

import json

from django.contrib import admin
from django.http import HttpRequest
from django.utils.html import format_html

from llm_models.models import LlmModel, Node, NodeCommand, NodeMetricSample, NodeModel


class NodeModelInline(admin.TabularInline):
    model = NodeModel
    extra = 0
    fields = ["model", "input_price_per_million", "output_price_per_million", "context_window"]
    raw_id_fields = ["model"]


@admin.register(Node)
class NodeAdmin(admin.ModelAdmin):
    list_display = ["id", "name", "owner", "status", "last_heartbeat_at", "region", "gpu", "active_requests"]
    list_filter = ["status", "region"]
    search_fields = ["name", "owner__user__username", "region"]
    list_select_related = ["owner__user", "gpu"]
    readonly_fields = [
        "owner",
        "endpoint_url",
        "status",
        "last_heartbeat_at",
        "metrics",
        "active_requests",
        "latency_ewma_ms",
        "consecutive_failures",
        "cooldown_until",
        "registered_at",
        "deregistered_at",
        "token_hint",
    ]
    fields = ["name", "region", "gpu", "ssh_host", "ssh_port", "ssh_user", *readonly_fields, "unsupported_actions"]
    raw_id_fields = ["gpu"]
    inlines = [NodeModelInline]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # nodes register themselves with their provider's key

    @admin.display(description="latest metrics")
    def metrics(self, obj: Node) -> str:
        return format_html("<pre>{}</pre>", json.dumps(obj.latest_metrics, indent=2, sort_keys=True))

    @admin.display(description="node token")
    def token_hint(self, obj: Node) -> str:
        return f"gmn_...{obj.token_last4}"


@admin.register(LlmModel)
class LlmModelAdmin(admin.ModelAdmin):
    list_display = ["id", "name", "context_window", "created_at"]
    search_fields = ["name"]


@admin.register(NodeMetricSample)
class NodeMetricSampleAdmin(admin.ModelAdmin):
    list_display = ["id", "node", "recorded_at", "active_requests"]
    list_select_related = ["node"]
    raw_id_fields = ["node"]
    date_hierarchy = "recorded_at"

    def has_change_permission(self, request: HttpRequest, obj: NodeMetricSample | None = None) -> bool:
        return False


@admin.register(NodeCommand)
class NodeCommandAdmin(admin.ModelAdmin):
    """Jobs: commands sent to nodes in heartbeat replies, and what the nodes reported."""

    list_display = ["id", "node", "rental", "action", "status", "created_at", "updated_at"]
    list_filter = ["status", "action"]
    search_fields = ["node__name"]
    list_select_related = ["node"]
    readonly_fields = ["node", "rental", "action", "params", "status", "result", "created_at", "updated_at"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False
