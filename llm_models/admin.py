"""Operator views of nodes: live status, last heartbeat, models, GPU metrics and a metrics chart. Secrets, digests
and routing internals are never shown; what only shows has no Add or Delete."""

from datetime import datetime, timedelta

from django.conf import settings
from django.contrib import admin
from django.db.models import Exists, OuterRef, Prefetch, Q, QuerySet
from django.http import HttpRequest
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.timesince import timesince

from core.formatting import money_html
from llm_models import selectors
from llm_models.choices import NodeStatus
from llm_models.models import LlmModel, Node, NodeCommand, NodeMetricSample, NodeModel


class ViewOnlyAdmin(admin.ModelAdmin):
    """Shown to operators; nothing added, changed or deleted here (services and the nodes themselves write)."""

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


def _rented_q(now: datetime) -> Q:
    # Rentals are reached by their lazy relation (llm_models never imports rentals: STYLE.md §1).
    rental_model = NodeCommand._meta.get_field("rental").related_model
    assert isinstance(rental_model, type)
    rented = rental_model._default_manager.filter(
        node_id=OuterRef("pk"), status="active", starts_at__lte=now, ends_at__gt=now
    )
    return Q(Exists(rented))


class HealthFilter(admin.SimpleListFilter):
    title = "health"
    parameter_name = "health"

    def lookups(self, request, model_admin):
        return [
            ("live", "Live"),
            ("offline", "Offline"),
            ("failing", "Failing (cooling down)"),
            ("rented", "Rented now"),
        ]

    def queryset(self, request, queryset):
        now = timezone.now()
        value = self.value()
        registered = queryset.exclude(status=NodeStatus.DEREGISTERED)
        if value == "live":
            return registered.filter(selectors.node_live_q(now=now))
        if value == "offline":
            return registered.exclude(selectors.node_live_q(now=now))
        if value == "failing":
            return registered.filter(cooldown_until__gt=now)
        if value == "rented":
            return registered.filter(_rented_q(now))
        return queryset


def health_of(node: Node, *, now: datetime) -> tuple[str, str]:
    """Live / offline / deregistered, `· failing` while it cools down after failures; and a longer explanation."""
    if node.status == NodeStatus.DEREGISTERED:
        return "deregistered", "deregistered: no longer routed or rentable"
    cutoff = now - timedelta(seconds=settings.NODE_HEARTBEAT_TIMEOUT_S)
    live = node.status == NodeStatus.ONLINE and node.last_heartbeat_at is not None and node.last_heartbeat_at >= cutoff
    short = "live" if live else "offline"
    if node.cooldown_until is not None and node.cooldown_until > now:
        return f"{short} · failing", f"failing: no new work for {timesince(now, node.cooldown_until)} (cooling down)"
    return short, short


def ago(moment: datetime | None, *, now: datetime) -> str:
    """`12 s ago`, `3 min ago`, `5 h ago`, `2 d ago`; `never`."""
    if moment is None:
        return "never"
    seconds = max(0, int((now - moment).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds // size} {unit} ago"
    return f"{seconds} s ago"


def _gpu_figure(metrics: dict, key: str, unit: str, places: int = 0) -> str:
    value = (metrics or {}).get(key)
    return "-" if value is None else f"{value:,.{places}f}{unit}"


class NodeModelInline(admin.TabularInline):
    """What the node serves, at its prices: its heartbeat's model list says so (node_sync_models), not the admin."""

    model = NodeModel
    extra = 0
    fields = ("model", "input_price", "output_price", "context_window")
    readonly_fields = fields
    can_delete = False

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    @admin.display(description="input (USD / 1M tokens)")
    def input_price(self, obj: NodeModel) -> str:
        return money_html(obj.input_price_per_million, 6)

    @admin.display(description="output (USD / 1M tokens)")
    def output_price(self, obj: NodeModel) -> str:
        return money_html(obj.output_price_per_million, 6)


@admin.register(Node)
class NodeAdmin(admin.ModelAdmin):
    list_display = ["name", "owner", "health", "heartbeat", "models", "gpu_util", "gpu_memory", "load"]
    list_display_links = ["name"]
    list_filter = [HealthFilter, "status", "region"]
    search_fields = ["name", "owner__user__username", "region"]
    list_select_related = ["owner__user", "gpu"]
    readonly_fields = [
        "owner",
        "endpoint_url",
        "health",
        "heartbeat",
        "gpu_metrics",
        "active_requests",
        "latency",
        "registered_at",
        "deregistered_at",
        "token_hint",
        "unsupported",
    ]
    fields = ["name", "region", "gpu", "ssh_host", "ssh_port", "ssh_user", *readonly_fields]
    raw_id_fields = ["gpu"]
    inlines = [NodeModelInline]
    change_form_template = "admin/llm_models/node/change_form_with_chart.html"

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # nodes register themselves with their provider's key

    def has_delete_permission(self, request, obj=None) -> bool:
        return False  # a node is deregistered (by its provider or the API), never deleted: requests refer to it

    def get_queryset(self, request: HttpRequest) -> QuerySet[Node]:
        served = Prefetch("node_models", queryset=NodeModel.objects.select_related("model").order_by("model__name"))
        return super().get_queryset(request).prefetch_related(served)

    def change_view(self, request, object_id, form_url="", extra_context=None):
        node = self.get_object(request, object_id)
        history = selectors.node_metrics_history(node=node) if node is not None else []
        return super().change_view(request, object_id, form_url, {"metrics_history": history, **(extra_context or {})})

    @admin.display(description="health")
    def health(self, obj: Node) -> str:
        short, long = health_of(obj, now=timezone.now())
        return format_html('<span title="{}">{}</span>', long, short)

    @admin.display(description="last heartbeat", ordering="last_heartbeat_at")
    def heartbeat(self, obj: Node) -> str:
        if obj.last_heartbeat_at is None:
            return "never"
        return format_html(
            '<time datetime="{}" title="{}">{}</time>',
            obj.last_heartbeat_at.isoformat(),
            obj.last_heartbeat_at.strftime("%Y-%m-%d %H:%M:%S UTC"),
            ago(obj.last_heartbeat_at, now=timezone.now()),
        )

    @admin.display(description="load", ordering="active_requests")
    def load(self, obj: Node) -> str:
        return f"{obj.active_requests:,}"

    @admin.display(description="models")
    def models(self, obj: Node) -> str:
        names = [nm.model.name for nm in obj.node_models.all()]
        return ", ".join(names) or "-"

    @admin.display(description="GPU")
    def gpu_util(self, obj: Node) -> str:
        return _gpu_figure(obj.latest_metrics, "gpu_utilization", " %")

    @admin.display(description="VRAM")
    def gpu_memory(self, obj: Node) -> str:
        used, total = (
            (obj.latest_metrics or {}).get("gpu_memory_used_mb"),
            (obj.latest_metrics or {}).get("gpu_memory_total_mb"),
        )
        if used is None:
            return "-"
        return f"{used / 1024:,.0f}/{total / 1024:,.0f} GB" if total else f"{used / 1024:,.0f} GB"

    @admin.display(description="GPU metrics (latest)")
    def gpu_metrics(self, obj: Node) -> str:
        metrics = obj.latest_metrics or {}
        rows = [
            ("GPU utilization", _gpu_figure(metrics, "gpu_utilization", " %", 1)),
            ("GPU memory used", _gpu_figure(metrics, "gpu_memory_used_mb", " MB")),
            ("GPU memory total", _gpu_figure(metrics, "gpu_memory_total_mb", " MB")),
            ("GPU temperature", _gpu_figure(metrics, "gpu_temperature_c", " °C")),
            ("CPU", _gpu_figure(metrics, "cpu_percent", " %", 1)),
            ("RAM used", _gpu_figure(metrics, "ram_used_mb", " MB")),
        ]
        for gpu in metrics.get("gpus") or []:
            name = gpu.get("name") or f"GPU {gpu.get('index', '?')}"
            rows.append((name, _gpu_figure(gpu, "utilization", " %", 1)))
        return format_html("<table>{}</table>", format_html_join("", "<tr><th>{}</th><td>{}</td></tr>", rows))

    @admin.display(description="latency (smoothed, to first byte)")
    def latency(self, obj: Node) -> str:
        return "-" if obj.latency_ewma_ms is None else f"{obj.latency_ewma_ms:,.0f} ms"

    @admin.display(description="unsupported actions")
    def unsupported(self, obj: Node) -> str:
        """Actions the node's agent answered `unsupported` to: set by its command reports, cleared when it says it
        has their hooks (llm_models/services.py), never by hand: rentals refuse these actions on this node."""
        return ", ".join(obj.unsupported_actions or []) or "none"

    @admin.display(description="node token")
    def token_hint(self, obj: Node) -> str:
        return f"gmn_...{obj.token_last4}"


@admin.register(LlmModel)
class LlmModelAdmin(admin.ModelAdmin):
    list_display = ["name", "context_window", "created_at"]
    search_fields = ["name"]

    def has_delete_permission(self, request, obj=None) -> bool:
        return False  # nodes' offers refer to it


@admin.register(NodeMetricSample)
class NodeMetricSampleAdmin(ViewOnlyAdmin):
    list_display = ["node", "recorded_at", "gpu_util", "active_requests"]
    list_select_related = ["node"]
    list_filter = ["node"]
    date_hierarchy = "recorded_at"
    fields = ["node", "recorded_at", "active_requests", "metrics"]

    @admin.display(description="GPU util")
    def gpu_util(self, obj: NodeMetricSample) -> str:
        return _gpu_figure(obj.metrics, "gpu_utilization", " %")


class CommandRentalFilter(admin.SimpleListFilter):
    title = "rental"
    parameter_name = "rental_state"

    def lookups(self, request, model_admin):
        return [("ended", "Rental ended"), ("active", "Rental active"), ("none", "No rental")]

    def queryset(self, request, queryset):
        if self.value() == "ended":
            return queryset.filter(rental__isnull=False).exclude(rental__status="active")
        if self.value() == "active":
            return queryset.filter(rental__status="active")
        if self.value() == "none":
            return queryset.filter(rental__isnull=True)
        return queryset


@admin.register(NodeCommand)
class NodeCommandAdmin(ViewOnlyAdmin):
    """Jobs: commands sent to nodes in heartbeat replies, and what the nodes reported. The command's status is the
    node's report; the rental's status is shown beside it (a command of an ended rental is not sent any more)."""

    list_display = ["id", "node", "action", "status", "rental_link", "rental_status", "created_at", "updated_at"]
    list_filter = ["status", "action", CommandRentalFilter]
    search_fields = ["node__name"]
    list_select_related = ["node", "rental"]
    fields = ["node", "rental", "rental_status", "action", "params", "status", "result", "created_at", "updated_at"]

    @admin.display(description="rental", ordering="rental_id")
    def rental_link(self, obj: NodeCommand) -> str:
        return "-" if obj.rental_id is None else f"#{obj.rental_id}"

    @admin.display(description="rental status")
    def rental_status(self, obj: NodeCommand) -> str:
        if obj.rental is None:
            return "-"
        return obj.rental.get_status_display()
