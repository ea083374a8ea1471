"""Plans (API.md §12): the public list, admin create/update, subscribe; the caller's subscription."""

from collections.abc import Sequence
from typing import TYPE_CHECKING

from django.db.models import QuerySet
from drf_spectacular.utils import extend_schema
from drf_standardized_errors.openapi_validation_errors import extend_validation_errors
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.permissions import AllowAny, IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from clients.permissions import IsAdmin, request_client
from core.errors import NotFound
from core.openapi import error_response
from plans import services
from plans.models import Plan
from plans.serializers import PlanIn, PlanOut, SubscriptionOut

if TYPE_CHECKING:
    from rest_framework.permissions import _SupportsHasPermission


@extend_validation_errors(["unique"], field_name="name", actions=["create", "partial_update"])
class PlanViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Plans open to subscription (admins see retired ones too)."""

    serializer_class = PlanOut
    lookup_value_regex = r"\d+"
    http_method_names = ["get", "post", "patch", "head", "options"]
    filterset_fields: list[str] = []
    search_fields = ["name"]
    ordering_fields = ["price_per_month", "daily_requests", "name", "id"]
    ordering = ["price_per_month", "id"]

    def get_queryset(self) -> QuerySet[Plan]:
        if self.request.user.is_authenticated and self.request.user.is_staff:
            return Plan.objects.all()
        return Plan.objects.filter(is_active=True)

    def get_permissions(self) -> Sequence["_SupportsHasPermission"]:
        if self.action in ("create", "partial_update"):
            return [IsAuthenticated(), IsAdmin()]
        if self.action == "subscribe":
            return [IsAuthenticated()]
        return [AllowAny()]

    @extend_schema(request=PlanIn, responses={201: PlanOut}, summary="Create a plan (admin)")
    def create(self, request: Request) -> Response:
        data = PlanIn(data=request.data)
        data.is_valid(raise_exception=True)
        plan = services.plan_create(**data.validated_data)
        return Response(PlanOut(plan).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=PlanIn(partial=True), responses={200: PlanOut}, summary="Change a plan (admin)")
    def partial_update(self, request: Request, pk: str | None = None) -> Response:
        plan = self.get_object()
        data = PlanIn(data=request.data, partial=True, context={"plan": plan})
        data.is_valid(raise_exception=True)
        plan = services.plan_update(plan=plan, **data.validated_data)
        return Response(PlanOut(plan).data)

    @extend_schema(
        request=None,
        responses={201: SubscriptionOut, 402: error_response(402), 409: error_response(409)},
        summary="Subscribe to a plan; its first month is charged at once",
    )
    @action(detail=True, methods=["post"])
    def subscribe(self, request: Request, pk: str | None = None) -> Response:
        sub = services.subscription_start(client=request_client(request), plan=self.get_object())
        return Response(SubscriptionOut(sub).data, status=status.HTTP_201_CREATED)


class SubscriptionView(APIView):
    """The caller's active plan."""

    key_scope = None  # reading needs no scope; cancelling (a write) needs `account`

    @extend_schema(responses={200: SubscriptionOut, 404: error_response(404)}, summary="Your active plan")
    def get(self, request: Request) -> Response:
        sub = services.subscription_get_active(client=request_client(request))
        if sub is None:
            raise NotFound("You have no active plan.")
        return Response(SubscriptionOut(sub).data)

    @extend_schema(
        responses={200: SubscriptionOut, 404: error_response(404)},
        summary="Stop renewal: the plan stays active to renews_at",
    )
    def delete(self, request: Request) -> Response:
        sub = services.subscription_cancel(client=request_client(request))
        return Response(SubscriptionOut(sub).data)
