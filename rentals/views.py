"""The rentals API (API.md §6): rent, read, cancel, lifecycle jobs, bulk operations, and the inventory."""

from django.db.models import QuerySet
from django.utils import timezone
from django_filters.rest_framework import DjangoFilterBackend
from drf_spectacular.utils import OpenApiParameter, extend_schema
from drf_standardized_errors.openapi_validation_errors import extend_validation_errors
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.filters import OrderingFilter
from rest_framework.generics import GenericAPIView, ListAPIView
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response

from clients.choices import KeyScope
from clients.key_limit_types import key_limits_of
from clients.key_limits import key_admit, key_record_spend
from clients.permissions import request_client
from core.errors import NotFound
from core.filters import NO_NUL_PATTERN
from core.idempotency import IDEMPOTENCY_KEY_PARAMETER, IDEMPOTENCY_RESPONSES, with_idempotency
from core.openapi import error_response
from llm_models.models import NodeCommand
from rentals import commands, selectors, services
from rentals.choices import RentalAction
from rentals.filters import OfferFilter, RentalFilter
from rentals.models import Rental, Snapshot
from rentals.serializers import (
    BulkIn,
    BulkResultOut,
    InventoryItemOut,
    InventoryQueryIn,
    JobOut,
    OfferOut,
    RegionOut,
    RentalExtendIn,
    RentalOut,
    RentalStartIn,
    RentalStopIn,
    SnapshotOut,
)

TEXT = {"type": "string", "pattern": NO_NUL_PATTERN}  # a query text: NUL is refused (400)

BULK_OPERATIONS = services.BULK_OPERATIONS


@extend_validation_errors(["invalid_ssh_key"], field_name="ssh_public_key", actions=["create"])
@extend_validation_errors(["invalid_env_name"], field_name="env", actions=["create"])
@extend_validation_errors(["duplicate_port"], field_name="ports", actions=["create"])
@extend_validation_errors(["duplicate_volume"], field_name="volumes", actions=["create"])
@extend_validation_errors(["image_and_snapshot"], field_name="image", actions=["create"])
@extend_validation_errors(["not_allowed", "required"], field_name="hours", actions=["create"])
@extend_validation_errors(["not_allowed", "required"], field_name="periods", actions=["create"])
@extend_validation_errors(["snapshot_on_other_node"], field_name="snapshot_id", actions=["create"])
@extend_validation_errors(["term_too_long"], field_name="hours", actions=["extend"])
class RentalViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.DestroyModelMixin,
    viewsets.GenericViewSet,
):
    """The caller's rentals. Another client's rental is a 404."""

    serializer_class = RentalOut
    lookup_value_regex = r"\d+"
    filterset_class = RentalFilter
    search_fields = ["node__name"]
    ordering_fields = ["id", "created_at", "starts_at", "ends_at", "total", "hours", "status"]
    ordering = ["-id"]

    def get_queryset(self) -> QuerySet[Rental]:
        if getattr(self, "swagger_fake_view", False):
            return Rental.objects.none()
        return selectors.rental_list_own(client=request_client(self.request))

    @extend_schema(
        request=RentalStartIn,
        parameters=[IDEMPOTENCY_KEY_PARAMETER],
        responses={201: RentalOut, 402: error_response(402), **IDEMPOTENCY_RESPONSES},
        summary="Rent a node: hourly, by day/week/month, or pay as you go; optionally with a container image",
    )
    def create(self, request: Request) -> Response:
        def rent(ref: str) -> Response:
            data = RentalStartIn(data=request.data)
            data.is_valid(raise_exception=True)
            limits = key_limits_of(request)
            key_admit(limits=limits, model=None, scope=KeyScope.RENTALS)  # the key's budget and rpm (API.md §12)
            rental = services.rental_start(
                client=request_client(request),
                api_key_id=None if limits is None else limits.key_id,  # its later charges count to the key too
                **data.validated_data,
            )
            key_record_spend(limits=limits, cost=rental.total, tokens=0)  # what was charged up front
            return Response(RentalOut(rental).data, status=status.HTTP_201_CREATED)

        return with_idempotency(request, rent)

    @extend_schema(request=None, responses={200: RentalOut}, summary="Cancel: unused minutes are refunded")
    def destroy(self, request: Request, pk: str | None = None) -> Response:
        rental = services.rental_cancel(rental=self.get_object())
        return Response(RentalOut(rental).data)

    def _command(self, action_name: str) -> Response:
        job = commands.rental_command(rental=self.get_object(), action=action_name)
        return Response(JobOut(job).data, status=status.HTTP_202_ACCEPTED)

    @extend_schema(request=None, responses={202: JobOut, 501: error_response(501)}, summary="Start the node")
    @action(detail=True, methods=["post"])
    def start(self, request: Request, pk: str | None = None) -> Response:
        return self._command(RentalAction.START)

    @extend_schema(
        request=RentalStopIn,
        responses={202: JobOut, 501: error_response(501)},
        summary="Stop the instance (with `snapshot: true`, save it first)",
    )
    @action(detail=True, methods=["post"])
    def stop(self, request: Request, pk: str | None = None) -> Response:
        data = RentalStopIn(data=request.data or {})
        data.is_valid(raise_exception=True)
        job = commands.rental_command(
            rental=self.get_object(), action=RentalAction.STOP, snapshot=data.validated_data["snapshot"]
        )
        return Response(JobOut(job).data, status=status.HTTP_202_ACCEPTED)

    @extend_schema(
        request=RentalExtendIn,
        parameters=[IDEMPOTENCY_KEY_PARAMETER],
        responses={200: RentalOut, 402: error_response(402), **IDEMPOTENCY_RESPONSES},
        summary="Extend a fixed rental by some hours (charged at once)",
    )
    @action(detail=True, methods=["post"])
    def extend(self, request: Request, pk: str | None = None) -> Response:
        rental = self.get_object()

        def extend(ref: str) -> Response:
            data = RentalExtendIn(data=request.data)
            data.is_valid(raise_exception=True)
            limits = key_limits_of(request)
            key_admit(limits=limits, model=None, scope=KeyScope.RENTALS)
            before = rental.total
            extended = services.rental_extend(rental=rental, hours=data.validated_data["hours"])
            key_record_spend(limits=limits, cost=extended.total - before, tokens=0)
            return Response(RentalOut(extended).data)

        return with_idempotency(request, extend)

    @extend_schema(request=None, responses={202: JobOut, 501: error_response(501)}, summary="Reset the node")
    @action(detail=True, methods=["post"])
    def reset(self, request: Request, pk: str | None = None) -> Response:
        return self._command(RentalAction.RESET)


class RentalBulkView(GenericAPIView):
    """One operation on up to 50 of the caller's rentals; each id gets its own result (partial failure allowed)."""

    serializer_class = BulkIn
    filter_backends: list = []
    pagination_class = None

    @extend_schema(
        request=BulkIn,
        responses={200: BulkResultOut(many=True), 404: error_response(404)},
        parameters=[OpenApiParameter("operation", str, OpenApiParameter.PATH, enum=list(BULK_OPERATIONS))],
        summary="Start, stop, reset or cancel several rentals",
    )
    def post(self, request: Request, operation: str) -> Response:
        if operation not in BULK_OPERATIONS:
            raise NotFound(f"Unknown bulk operation {operation!r}.")
        data = BulkIn(data=request.data)
        data.is_valid(raise_exception=True)
        client = request_client(request)
        return Response(services.rental_bulk(client=client, operation=operation, rental_ids=data.validated_data["ids"]))


@extend_validation_errors(["null_characters_not_allowed"], field_name="gpu_model", methods=["get"])
@extend_validation_errors(["null_characters_not_allowed"], field_name="region", methods=["get"])
class InventoryView(GenericAPIView):
    """What can be rented now, by GPU model and region. Public, like the model menu: it is the shop window."""

    permission_classes = [AllowAny]
    serializer_class = InventoryItemOut
    filter_backends: list = []

    @extend_schema(
        parameters=[
            OpenApiParameter("gpu_model", TEXT, description="GPU model, e.g. H100 (case-insensitive)."),
            OpenApiParameter("region", TEXT, description="Region, e.g. eu-west (case-insensitive)."),
        ],
        responses=InventoryItemOut(many=True),
        summary="Rentable GPUs by model and region",
    )
    def get(self, request: Request) -> Response:
        query = InventoryQueryIn(data=request.query_params)
        query.is_valid(raise_exception=True)
        rows = selectors.inventory_list(
            now=timezone.now(),
            gpu_model=query.validated_data["gpu_model"][:64],
            region=query.validated_data["region"][:64],
        )
        page = self.paginate_queryset(rows)
        return self.get_paginated_response(InventoryItemOut(page, many=True).data)


class JobViewSet(mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """A command sent to a rented node (start, stop, reset, SSH key, end); the caller's own only."""

    serializer_class = JobOut
    lookup_value_regex = r"\d+"
    filter_backends: list = []

    def get_queryset(self) -> QuerySet[NodeCommand]:
        if getattr(self, "swagger_fake_view", False):
            return NodeCommand.objects.none()
        return selectors.job_list_own(client=request_client(self.request))


class SnapshotViewSet(
    mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.DestroyModelMixin, viewsets.GenericViewSet
):
    """The caller's snapshots (saved instances); another client's is a 404."""

    serializer_class = SnapshotOut
    lookup_value_regex = r"\d+"
    filter_backends: list = []

    def get_queryset(self) -> QuerySet[Snapshot]:
        if getattr(self, "swagger_fake_view", False):
            return Snapshot.objects.none()
        return selectors.snapshot_list_own(client=request_client(self.request))

    @extend_schema(responses={204: None}, summary="Delete a snapshot")
    def destroy(self, request: Request, pk: str | None = None) -> Response:
        services.snapshot_delete(snapshot=self.get_object())
        return Response(status=status.HTTP_204_NO_CONTENT)


class RegionListView(GenericAPIView):
    """Regions with rentable nodes: how many, how many are free now, which GPU models. Public (the shop window)."""

    permission_classes = [AllowAny]
    serializer_class = RegionOut
    filter_backends: list = []

    @extend_schema(responses=RegionOut(many=True), summary="Regions with rentable nodes")
    def get(self, request: Request) -> Response:
        page = self.paginate_queryset(selectors.region_list(now=timezone.now()))
        return self.get_paginated_response(RegionOut(page, many=True).data)


class OfferListView(ListAPIView):
    """One row per node that can be rented now, with price, discounts, reliability and capabilities. Public."""

    permission_classes = [AllowAny]
    serializer_class = OfferOut
    filter_backends = [DjangoFilterBackend, OrderingFilter]
    filterset_class = OfferFilter
    ordering_fields = ["price_per_hour", "reliability"]

    def get_queryset(self):
        return selectors.offer_list(now=timezone.now())

    @extend_schema(summary="Rentable nodes with price, discounts, reliability and capabilities")
    def get(self, request: Request, *args: object, **kwargs: object) -> Response:
        return super().get(request, *args, **kwargs)
