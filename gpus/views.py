"""Seed 004's `gpu` resource: anyone signed in reads; approved providers create; owners (or admins) write."""

from collections.abc import Sequence
from typing import TYPE_CHECKING

from drf_spectacular.utils import extend_schema
from drf_standardized_errors.openapi_validation_errors import extend_validation_errors
from rest_framework import status, viewsets
from rest_framework.exceptions import PermissionDenied
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response

from clients.permissions import IsApprovedProvider
from gpus import services
from gpus.filters import GpuFilter
from gpus.models import Gpu
from gpus.serializers import GpuIn, GpuOut

if TYPE_CHECKING:
    from rest_framework.permissions import _SupportsHasPermission


@extend_validation_errors(["not_your_user"], field_name="user", actions=["create", "update", "partial_update"])
class GpuViewSet(viewsets.ModelViewSet):
    queryset = Gpu.objects.select_related("user").all()
    serializer_class = GpuOut
    lookup_value_regex = r"\d+"
    filterset_class = GpuFilter
    search_fields = ["gpu_info", "gpu_model", "cpu_name", "region"]
    ordering_fields = ["id", "price_per_hour", "gpu_count", "gpu_memory_gb", "created_at", "gpu_model", "region"]
    ordering = ["id"]

    def get_permissions(self) -> Sequence["_SupportsHasPermission"]:
        if self.action == "create":
            return [IsAuthenticated(), IsApprovedProvider()]
        return super().get_permissions()

    def _owned_object(self) -> Gpu:
        gpu = self.get_object()
        if gpu.user_id != self.request.user.pk and not self.request.user.is_staff:
            raise PermissionDenied("Only the GPU's owner or an admin may change it.")
        return gpu

    @extend_schema(request=GpuIn, responses={201: GpuOut})
    def create(self, request: Request) -> Response:
        data = GpuIn(data=request.data, context={"request": request})
        data.is_valid(raise_exception=True)
        fields = dict(data.validated_data)
        owner = fields.pop("user", request.user)
        gpu = services.gpu_create(user=owner, **fields)
        return Response(GpuOut(gpu).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=GpuIn, responses={200: GpuOut})
    def update(self, request: Request, pk: str | None = None, partial: bool = False) -> Response:
        gpu = self._owned_object()
        data = GpuIn(gpu, data=request.data, partial=partial, context={"request": request})
        data.is_valid(raise_exception=True)
        gpu = services.gpu_update(gpu=gpu, **data.validated_data)
        return Response(GpuOut(gpu).data)

    @extend_schema(request=GpuIn, responses={200: GpuOut})
    def partial_update(self, request: Request, pk: str | None = None) -> Response:
        return self.update(request, pk, partial=True)

    def destroy(self, request: Request, pk: str | None = None) -> Response:
        services.gpu_delete(gpu=self._owned_object())
        return Response(status=status.HTTP_204_NO_CONTENT)
