"""Market figures on the operator site: each node's measured latency and uptime, each provider's earnings.

The Node and Client admins are extended here (re-registered as subclasses) so that the imports keep running one
way, market -> llm_models/clients, and those apps' admins stay as they are."""

from decimal import Decimal
from typing import TYPE_CHECKING, TypedDict

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils import timezone

from clients.admin import ClientAdmin
from clients.models import Client
from core.formatting import money_html
from llm_models.admin import NodeAdmin
from llm_models.models import Node
from market import selectors

if TYPE_CHECKING:
    from django_stubs_ext import WithAnnotations


class _NodeFigures(TypedDict):
    """What MarketNodeAdmin.get_queryset annotates each node with."""

    latency_p50_ms: float | None
    throughput_tps: float | None
    uptime_5m: float | None
    uptime_30m: float | None
    uptime_1d: float | None


class _ClientFigures(TypedDict):
    earnings: Decimal


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.1f}%"


admin.site.unregister(Node)


@admin.register(Node)
class MarketNodeAdmin(NodeAdmin):
    list_display = [*NodeAdmin.list_display, "latency_p50", "uptime_1d"]  # the rest on the node's page
    measured = ["latency_p50", "throughput", "uptime_5m", "uptime_30m", "uptime_1d"]
    readonly_fields = [*NodeAdmin.readonly_fields, *measured]
    fields = [*NodeAdmin.fields, *measured]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Node]:
        now = timezone.now()
        return (
            super()
            .get_queryset(request)
            .annotate(**selectors.node_traffic_annotations(now=now), **selectors.node_uptime_annotations(now=now))
        )

    @admin.display(description="latency p50 (24 h)", ordering="latency_p50_ms")
    def latency_p50(self, obj: "WithAnnotations[Node, _NodeFigures]") -> str:
        value = obj.latency_p50_ms
        return "-" if value is None else f"{value:,.0f} ms"

    @admin.display(description="throughput (24 h)")
    def throughput(self, obj: "WithAnnotations[Node, _NodeFigures]") -> str:
        value = obj.throughput_tps
        return "-" if value is None else f"{value:.1f} tokens/s"

    @admin.display(description="uptime 5 min", ordering="uptime_5m")
    def uptime_5m(self, obj: "WithAnnotations[Node, _NodeFigures]") -> str:
        return _percent(obj.uptime_5m)

    @admin.display(description="uptime 30 min", ordering="uptime_30m")
    def uptime_30m(self, obj: "WithAnnotations[Node, _NodeFigures]") -> str:
        return _percent(obj.uptime_30m)

    @admin.display(description="uptime 1 day", ordering="uptime_1d")
    def uptime_1d(self, obj: "WithAnnotations[Node, _NodeFigures]") -> str:
        return _percent(obj.uptime_1d)


admin.site.unregister(Client)


@admin.register(Client)
class MarketClientAdmin(ClientAdmin):
    list_display = [*ClientAdmin.list_display, "provider_earnings"]
    readonly_fields = [*ClientAdmin.readonly_fields, "provider_earnings"]
    fields = [*ClientAdmin.fields, "provider_earnings"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Client]:
        return super().get_queryset(request).annotate(earnings=selectors.operator_earnings_subquery())

    @admin.display(description="earnings (operator share)", ordering="earnings")
    def provider_earnings(self, obj: "WithAnnotations[Client, _ClientFigures]") -> str:
        return money_html(obj.earnings, 6)  # earned by the micro-dollar
