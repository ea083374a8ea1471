"""The public market read API (docs/API.md §7): anyone may read it, anonymous callers are throttled."""

from typing import Any

from django.conf import settings
from django.db.models import F, Prefetch, QuerySet
from django.shortcuts import get_object_or_404
from django_filters.rest_framework import DjangoFilterBackend
from drf_spectacular.utils import OpenApiParameter, extend_schema
from drf_standardized_errors.openapi_validation_errors import extend_validation_errors
from rest_framework import filters
from rest_framework.exceptions import ValidationError
from rest_framework.generics import GenericAPIView, ListAPIView, RetrieveAPIView
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.throttling import AnonRateThrottle
from rest_framework.views import APIView

from core.filters import NO_NUL_PATTERN, SearchFilter
from llm_models.models import LlmModel, NodeModel
from llm_models.uptime import UPTIME_WINDOWS
from market import selectors
from market.filters import MarketNodeFilter, MarketProviderFilter
from market.serializers import (
    MarketModelOut,
    MarketNodeDetailOut,
    MarketNodeOut,
    MarketProviderOut,
    MarketStatsOut,
    MetricSampleOut,
    MonitoringOut,
    MonitoringQueryIn,
)

UPTIME_FIELDS = list(UPTIME_WINDOWS)


class MarketAnonThrottle(AnonRateThrottle):
    """Anonymous callers, per address: MARKET_ANON_THROTTLE_RATE (read at request time, so it can be changed)."""

    scope = "market_anon"

    def get_rate(self) -> str | None:
        return settings.MARKET_ANON_THROTTLE_RATE


class NullsLastOrdering(filters.OrderingFilter):
    """DRF's `?ordering=`, with nulls (nothing measured yet) last either way and the id as the tie-breaker."""

    def filter_queryset(self, request: Request, queryset: QuerySet[Any], view: APIView) -> QuerySet[Any]:
        ordering = self.get_ordering(request, queryset, view)
        if not ordering:
            return queryset
        terms = [F(o[1:]).desc(nulls_last=True) if o.startswith("-") else F(o).asc(nulls_last=True) for o in ordering]
        return queryset.order_by(*terms, "pk")


class MarketView(GenericAPIView):
    permission_classes = [AllowAny]
    throttle_classes = [MarketAnonThrottle]


def _text_param(request: Request, name: str) -> str:
    value = request.query_params.get(name, "").strip()
    if "\x00" in value:
        raise ValidationError({name: ["Null characters are not allowed."]}, code="null_characters_not_allowed")
    return value


TEXT = {"type": "string", "pattern": NO_NUL_PATTERN}


@extend_validation_errors(["null_characters_not_allowed"], field_name="region", methods=["get"])
@extend_validation_errors(["null_characters_not_allowed"], field_name="gpu_model", methods=["get"])
class MarketModelListView(MarketView, ListAPIView):
    """Every model: live node count, lowest live prices per 1M tokens, context window, measured latency."""

    serializer_class = MarketModelOut
    filter_backends = [SearchFilter, NullsLastOrdering]
    search_fields = ["name"]
    ordering_fields = [
        "name",
        "live_nodes",
        "input_price_per_million",
        "output_price_per_million",
        "latency_p50_ms",
        "id",
    ]
    ordering = ["name"]

    def get_queryset(self) -> QuerySet[LlmModel]:
        return selectors.model_list(
            region=_text_param(self.request, "region"), gpu_model=_text_param(self.request, "gpu_model")
        )

    @extend_schema(
        summary="List models",
        parameters=[
            OpenApiParameter("region", TEXT, description="Only models with a live node in this region."),
            OpenApiParameter("gpu_model", TEXT, description="Only models with a live node on this GPU (e.g. H100)."),
        ],
    )
    def get(self, request: Request, *args: object, **kwargs: object) -> Response:
        return super().get(request, *args, **kwargs)


class MarketModelDetailView(MarketView, RetrieveAPIView):
    serializer_class = MarketModelOut

    def get_queryset(self) -> QuerySet[LlmModel]:
        return selectors.model_list()

    @extend_schema(summary="Get a model")
    def get(self, request: Request, *args: object, **kwargs: object) -> Response:
        return super().get(request, *args, **kwargs)


class MarketModelProvidersView(MarketView, ListAPIView):
    """The live nodes serving a model, with prices, measured latency, throughput and uptime. 404: unknown model."""

    serializer_class = MarketProviderOut
    filterset_class = MarketProviderFilter
    filter_backends = [DjangoFilterBackend, NullsLastOrdering]
    ordering_fields = [
        "price",
        "input_price_per_million",
        "output_price_per_million",
        "latency_p50_ms",
        "throughput_tps",
        *UPTIME_FIELDS,
        "node_id",
    ]
    ordering = ["price"]

    def get_queryset(self) -> QuerySet[NodeModel]:
        if getattr(self, "swagger_fake_view", False):
            return NodeModel.objects.none()
        model = get_object_or_404(LlmModel, pk=self.kwargs["pk"], owner__isnull=True)
        return selectors.model_providers(model=model)

    @extend_schema(summary="List a model's providers (live nodes)")
    def get(self, request: Request, *args: object, **kwargs: object) -> Response:
        return super().get(request, *args, **kwargs)


def _with_models(qs: QuerySet) -> QuerySet:
    """Served models and prices in one extra query per page."""
    return qs.prefetch_related(
        Prefetch(
            "node_models",
            queryset=NodeModel.objects.filter(model__owner__isnull=True)
            .select_related("model")
            .order_by("model__name"),
        )
    )


class MarketNodeListView(MarketView, ListAPIView):
    """Registered nodes (deregistered ones are gone) with GPU, models and prices, latency and uptime."""

    serializer_class = MarketNodeOut
    filterset_class = MarketNodeFilter
    filter_backends = [DjangoFilterBackend, NullsLastOrdering]
    ordering_fields = ["id", "name", "price", "latency_p50_ms", "throughput_tps", *UPTIME_FIELDS, "last_heartbeat_at"]
    ordering = ["id"]

    def get_queryset(self) -> QuerySet:
        return _with_models(selectors.node_list())

    @extend_schema(summary="List nodes")
    def get(self, request: Request, *args: object, **kwargs: object) -> Response:
        return super().get(request, *args, **kwargs)


class MarketNodeDetailView(MarketView, RetrieveAPIView):
    serializer_class = MarketNodeDetailOut

    def get_queryset(self) -> QuerySet:
        return _with_models(selectors.node_list())

    @extend_schema(summary="Get a node (404 once deregistered)")
    def get(self, request: Request, *args: object, **kwargs: object) -> Response:
        return super().get(request, *args, **kwargs)


@extend_validation_errors(["invalid", "make_aware", "overflow"], field_name="since", methods=["get"])
@extend_validation_errors(["invalid", "make_aware", "overflow"], field_name="until", methods=["get"])
class MarketNodeMonitoringView(MarketView):
    """A node's latest metrics and its kept history (one sample per slot, newest first), paginated."""

    serializer_class = MetricSampleOut

    @extend_schema(
        summary="A node's live metrics and recent history",
        parameters=[MonitoringQueryIn],
        responses=MonitoringOut,
    )
    def get(self, request: Request, pk: int) -> Response:
        query = MonitoringQueryIn(data=request.query_params)
        query.is_valid(raise_exception=True)
        node = selectors.node_get_live(pk=pk)
        samples = selectors.node_metric_samples(node=node, **query.validated_data)
        page = self.paginate_queryset(samples)
        paginated = self.get_paginated_response(MetricSampleOut(page, many=True).data).data
        body = {
            "node_id": node.pk,
            "status": node.status,
            "live": node.live,
            "last_heartbeat_at": node.last_heartbeat_at,
            "latest_metrics": node.latest_metrics,
            "active_requests": node.active_requests,
            **paginated,
        }
        return Response(MonitoringOut(body).data)


class MarketStatsView(APIView):
    permission_classes = [AllowAny]
    throttle_classes = [MarketAnonThrottle]

    @extend_schema(summary="Marketplace statistics", responses=MarketStatsOut)
    def get(self, request: Request) -> Response:
        return Response(MarketStatsOut(selectors.market_stats_cached()).data)
