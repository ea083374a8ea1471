"""Money in and out (docs/API.md §15): card top-ups, the Stripe webhook, provider payouts."""

from collections.abc import Callable

from django.db.models import Model
from drf_spectacular.utils import OpenApiParameter, OpenApiRequest, extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.parsers import BaseParser
from rest_framework.permissions import AllowAny, IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.serializers import Serializer
from rest_framework.views import APIView

from clients.permissions import IsAdmin, IsApprovedProvider, request_client
from core.idempotency import IDEMPOTENCY_KEY_PARAMETER, IDEMPOTENCY_RESPONSES, with_idempotency
from core.openapi import error_response
from payments import selectors, services
from payments.filters import PayoutFilter, TopUpFilter
from payments.models import Payout, TopUp
from payments.serializers import (
    PayoutDecisionIn,
    PayoutIn,
    PayoutOut,
    PayoutRejectIn,
    StripeWebhookOut,
    TopUpIn,
    TopUpOut,
)


def _create_once(
    request: Request, *, data_class: type[Serializer], create: Callable[..., Model], out_class: type[Serializer]
) -> Response:
    """Create the caller's row for the body's `amount` (`create(client=, amount=)`), once per Idempotency-Key: 201."""

    def run(ref: str) -> Response:
        data = data_class(data=request.data)
        data.is_valid(raise_exception=True)
        row = create(client=request_client(request), amount=data.validated_data["amount"])
        return Response(out_class(row).data, status=status.HTTP_201_CREATED)

    return with_idempotency(request, run)


class TopUpViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """The caller's card top-ups (an admin sees all); `POST` opens a Stripe Checkout Session."""

    serializer_class = TopUpOut
    lookup_value_regex = r"\d+"
    filterset_class = TopUpFilter
    search_fields = ["stripe_session_id", "client__user__username"]
    ordering_fields = ["id", "created_at", "amount"]
    ordering = ["-id"]

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return TopUp.objects.none()
        return selectors.topup_list_visible(viewer=request_client(self.request))

    @extend_schema(
        request=TopUpIn,
        parameters=[IDEMPOTENCY_KEY_PARAMETER],
        responses={201: TopUpOut, 502: error_response(502), 503: error_response(503), **IDEMPOTENCY_RESPONSES},
        summary="Top up by card: a Stripe Checkout Session to pay",
    )
    def create(self, request: Request) -> Response:
        return _create_once(request, data_class=TopUpIn, create=services.topup_create, out_class=TopUpOut)


class _RawBodyParser(BaseParser):
    """Leave the body alone: the signature is over its exact bytes (read from request.body)."""

    media_type = "*/*"

    def parse(self, stream, media_type=None, parser_context=None):
        return {}


class StripeWebhookView(APIView):
    """Stripe's events about our Checkout Sessions; authenticated by the Stripe-Signature header alone."""

    authentication_classes: list = []
    permission_classes = [AllowAny]
    parser_classes = [_RawBodyParser]

    @extend_schema(
        request=OpenApiRequest({"type": "object", "additionalProperties": True}),
        parameters=[
            OpenApiParameter(
                "Stripe-Signature",
                str,
                OpenApiParameter.HEADER,
                required=True,
                description="Stripe's signature of the raw body (`t=<unix time>,v1=<HMAC-SHA256 hex>`).",
            )
        ],
        responses={200: StripeWebhookOut, 400: error_response(400), 503: error_response(503)},
        summary="Stripe webhook (signed by Stripe)",
    )
    def post(self, request: Request) -> Response:
        handled = services.stripe_webhook_handle(
            payload=request._request.body, signature=request.headers.get("Stripe-Signature")
        )
        return Response({"received": True, "handled": handled})


class PayoutViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.CreateModelMixin, viewsets.GenericViewSet):
    """Payouts: an approved provider asks for its earnings (the amount is held); an admin approves or rejects."""

    serializer_class = PayoutOut
    lookup_value_regex = r"\d+"
    filterset_class = PayoutFilter
    search_fields = ["reference", "client__user__username"]
    ordering_fields = ["id", "created_at", "amount"]
    ordering = ["-id"]

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return Payout.objects.none()
        return selectors.payout_list_visible(viewer=request_client(self.request))

    def get_permissions(self):
        if self.action == "create":
            return [IsAuthenticated(), IsApprovedProvider()]
        if self.action in ("approve", "reject"):
            return [IsAuthenticated(), IsAdmin()]
        return super().get_permissions()

    @extend_schema(
        request=PayoutIn,
        parameters=[IDEMPOTENCY_KEY_PARAMETER],
        responses={201: PayoutOut, **IDEMPOTENCY_RESPONSES},
        summary="Ask to be paid out (approved providers)",
    )
    def create(self, request: Request) -> Response:
        return _create_once(request, data_class=PayoutIn, create=services.payout_request, out_class=PayoutOut)

    @extend_schema(request=PayoutDecisionIn, responses={200: PayoutOut}, summary="Mark a payout paid (admin)")
    @action(detail=True, methods=["post"])
    def approve(self, request: Request, pk: str | None = None) -> Response:
        return self._decide(request, data_class=PayoutDecisionIn, decide=services.payout_approve)

    @extend_schema(request=PayoutRejectIn, responses={200: PayoutOut}, summary="Reject a payout (admin)")
    @action(detail=True, methods=["post"])
    def reject(self, request: Request, pk: str | None = None) -> Response:
        return self._decide(request, data_class=PayoutRejectIn, decide=services.payout_reject)

    def _decide(self, request: Request, *, data_class: type[Serializer], decide: Callable[..., Payout]) -> Response:
        """An admin's decision on this payout: `decide(payout_id=, admin=, reference=)` with the body's reference."""
        data = data_class(data=request.data)
        data.is_valid(raise_exception=True)
        payout = decide(
            payout_id=self.get_object().pk, admin=request_client(request), reference=data.validated_data["reference"]
        )
        return Response(PayoutOut(payout).data)
