"""Client endpoints (seed 004 `client`): auth flows, the client list, keys and provider onboarding."""

from collections.abc import Sequence
from typing import TYPE_CHECKING

from django.contrib.auth import logout as django_logout
from django.db.models import QuerySet
from drf_spectacular.utils import extend_schema
from drf_standardized_errors.openapi_validation_errors import extend_validation_errors
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.permissions import AllowAny, IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.throttling import ScopedRateThrottle
from rest_framework.views import APIView

from clients import ledger, selectors, services
from clients.filters import ClientFilter, LedgerEntryFilter
from clients.models import ApiKey, Client, LedgerEntry
from clients.permissions import IsAdmin, request_client
from clients.serializers import (
    ApiKeyIn,
    ApiKeyOut,
    ClientCreateIn,
    ClientOut,
    ClientUpdateIn,
    CreditIn,
    GoogleAuthIn,
    LedgerEntryOut,
    LoginIn,
    PasswordResetConfirmIn,
    PasswordResetIn,
    RegisterIn,
)
from core.errors import NotFound
from core.http import client_ip
from core.idempotency import IDEMPOTENCY_KEY_PARAMETER, IDEMPOTENCY_RESPONSES, with_idempotency
from core.openapi import error_response
from core.serializers import DetailOut

if TYPE_CHECKING:
    from rest_framework.permissions import _SupportsHasPermission


def _signed_in_response(signed_in: services.SignedIn, status_code: int) -> Response:
    data = ClientOut(signed_in.client, context={"raw_token": signed_in.raw_key}).data
    return Response(data, status=status_code)


class _AnonymousAuthView(APIView):
    """Sign-in style endpoints: no credentials needed, no CSRF, rate limited per address."""

    authentication_classes: list = []
    permission_classes = [AllowAny]
    throttle_classes = [ScopedRateThrottle]
    throttle_scope = "auth"


@extend_validation_errors(["terms_not_accepted"], field_name="terms_accepted")
class ClientRegisterView(_AnonymousAuthView):
    @extend_schema(request=RegisterIn, responses={201: ClientOut}, summary="Sign up with a password")
    def post(self, request: Request) -> Response:
        data = RegisterIn(data=request.data)
        data.is_valid(raise_exception=True)
        v = data.validated_data
        signed_in = services.client_register(
            request=request._request,
            username=v["username"],
            email=v["email"],
            password=v["password"],
            phone_no=v.get("phone_no") or None,
            ip=client_ip(request),
        )
        return _signed_in_response(signed_in, status.HTTP_201_CREATED)


@extend_validation_errors(["required"], field_name="username")  # neither username nor email given
class ClientLoginView(_AnonymousAuthView):
    @extend_schema(request=LoginIn, responses={200: ClientOut}, summary="Log in; returns a new API key")
    def post(self, request: Request) -> Response:
        data = LoginIn(data=request.data)
        data.is_valid(raise_exception=True)
        signed_in = services.client_login(
            identifier=data.validated_data["identifier"],
            password=data.validated_data["password"],
            ip=client_ip(request),
        )
        return _signed_in_response(signed_in, status.HTTP_200_OK)


class ClientLogoutView(APIView):
    key_scope = ""  # any key may revoke itself

    @extend_schema(request=None, responses={200: DetailOut}, summary="Revoke the key (or end the session) used")
    def post(self, request: Request) -> Response:
        if isinstance(request.auth, ApiKey):
            services.api_key_revoke(client=request_client(request), key_id=request.auth.pk)
        django_logout(request._request)
        return Response({"detail": "Logged out."})


class ClientPasswordResetView(_AnonymousAuthView):
    @extend_schema(request=PasswordResetIn, responses={200: DetailOut}, summary="Email a password-reset link")
    def post(self, request: Request) -> Response:
        data = PasswordResetIn(data=request.data)
        data.is_valid(raise_exception=True)
        services.password_reset_request(email=data.validated_data["email"])
        return Response({"detail": "If an account has this email, a reset link has been sent to it."})


class ClientResetPasswordView(_AnonymousAuthView):
    @extend_schema(request=PasswordResetConfirmIn, responses={200: DetailOut}, summary="Set a new password")
    def post(self, request: Request, uidb64: str, token: str) -> Response:
        data = PasswordResetConfirmIn(data=request.data)
        data.is_valid(raise_exception=True)
        services.password_reset_confirm(uidb64=uidb64, token=token, new_password=data.validated_data["new_password"])
        return Response({"detail": "Your password has been changed."})


@extend_validation_errors(["required"], field_name="id_token")  # neither id_token nor access_token given
class ClientGoogleAuthView(_AnonymousAuthView):
    @extend_schema(
        request=GoogleAuthIn,
        responses={200: ClientOut, 503: error_response(503)},
        summary="Sign in with a Google token",
    )
    def post(self, request: Request) -> Response:
        data = GoogleAuthIn(data=request.data)
        data.is_valid(raise_exception=True)
        signed_in = services.google_sign_in(
            request=request._request,
            id_token=data.validated_data.get("id_token", ""),
            access_token=data.validated_data.get("access_token", ""),
            ip=client_ip(request),
        )
        return _signed_in_response(signed_in, status.HTTP_200_OK)


class ClientViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.DestroyModelMixin,
    viewsets.GenericViewSet,
):
    """Seed 004's client list. Non-admins see and change only themselves; others' ids are 404."""

    serializer_class = ClientOut
    lookup_value_regex = r"\d+"
    filterset_class = ClientFilter
    search_fields = ["user__username", "user__email", "phone_no"]
    ordering_fields = ["id", "user__username", "provider_registration_date", "balance", "created_at"]
    ordering = ["id"]

    def get_queryset(self) -> QuerySet[Client]:
        if getattr(self, "swagger_fake_view", False):
            return Client.objects.none()
        return selectors.client_list_visible(viewer=request_client(self.request))

    def get_permissions(self) -> Sequence["_SupportsHasPermission"]:
        if self.action in ("create", "approve_provider", "revoke_provider", "credit"):
            return [IsAuthenticated(), IsAdmin()]
        return super().get_permissions()

    @extend_schema(request=ClientCreateIn, responses={201: ClientOut}, summary="Create a client (admin)")
    def create(self, request: Request) -> Response:
        data = ClientCreateIn(data=request.data)
        data.is_valid(raise_exception=True)
        signed_in = services.client_create_by_admin(**data.validated_data)
        return _signed_in_response(signed_in, status.HTTP_201_CREATED)

    @extend_schema(request=ClientCreateIn, responses={200: ClientOut})
    def update(self, request: Request, pk: str | None = None) -> Response:
        return self._update(request, serializer_class=ClientCreateIn, partial=False)

    @extend_schema(request=ClientUpdateIn, responses={200: ClientOut})
    def partial_update(self, request: Request, pk: str | None = None) -> Response:
        return self._update(request, serializer_class=ClientUpdateIn, partial=True)

    def _update(self, request: Request, serializer_class: type, *, partial: bool) -> Response:
        client = self.get_object()
        # partial: a PATCH may name just `user.username` or just `user.email`.
        data = serializer_class(data=request.data, partial=partial)
        data.is_valid(raise_exception=True)
        services.client_update(client=client, **data.validated_data)
        return Response(ClientOut(self.get_object()).data)

    def perform_destroy(self, instance: Client) -> None:
        services.client_deactivate(client=instance)

    @extend_schema(request=None, responses={200: ClientOut}, summary="Apply to become a GPU provider")
    @action(detail=True, methods=["post"], url_path="apply-provider")
    def apply_provider(self, request: Request, pk: str | None = None) -> Response:
        client = services.client_apply_provider(client=self.get_object())
        return Response(ClientOut(client).data)

    @extend_schema(request=None, responses={200: ClientOut}, summary="Approve a provider application (admin)")
    @action(detail=True, methods=["post"], url_path="approve-provider")
    def approve_provider(self, request: Request, pk: str | None = None) -> Response:
        client = services.client_approve_provider(client=self.get_object())
        return Response(ClientOut(client).data)

    @extend_schema(request=None, responses={200: ClientOut}, summary="Revoke a provider's approval (admin)")
    @action(detail=True, methods=["post"], url_path="revoke-provider")
    def revoke_provider(self, request: Request, pk: str | None = None) -> Response:
        client = services.client_revoke_provider(client=self.get_object())
        return Response(ClientOut(client).data)

    @extend_schema(
        request=CreditIn,
        parameters=[IDEMPOTENCY_KEY_PARAMETER],
        responses={200: ClientOut, **IDEMPOTENCY_RESPONSES},
        summary="Credit a client's balance (admin)",
    )
    @action(detail=True, methods=["post"])
    def credit(self, request: Request, pk: str | None = None) -> Response:
        def top_up(ref: str) -> Response:
            client = self.get_object()
            data = CreditIn(data=request.data)
            data.is_valid(raise_exception=True)
            ledger.credit(client_id=client.pk, key=f"admin-credit:{ref}", **data.validated_data)
            client.refresh_from_db(fields=["balance"])
            return Response(ClientOut(client).data)

        return with_idempotency(request, top_up)


class ApiKeyViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    mixins.DestroyModelMixin,
    viewsets.GenericViewSet,
):
    """The caller's own named API keys and their limits (API.md §12); a new key is shown in full once.

    A key needs the `account` scope to create, change or revoke keys (clients/key_limits.py)."""

    http_method_names = ["get", "post", "patch", "delete", "head", "options"]
    key_scope: str | None = None  # by method (clients/key_limits.py); `current` sets "" (any key)

    serializer_class = ApiKeyOut
    lookup_value_regex = r"\d+"
    search_fields = ["name"]
    ordering_fields = ["created_at", "name", "last_used_at"]
    filterset_fields: list[str] = []

    def get_queryset(self) -> QuerySet[ApiKey]:
        if getattr(self, "swagger_fake_view", False):
            return ApiKey.objects.none()
        return selectors.api_key_list_active(client=request_client(self.request))

    @extend_schema(
        request=ApiKeyIn, responses={201: ApiKeyOut, 403: error_response(403)}, summary="Create a named API key"
    )
    def create(self, request: Request) -> Response:
        data = ApiKeyIn(data=request.data)
        data.is_valid(raise_exception=True)
        key, raw = services.api_key_create(
            client=request_client(request), granting=_calling_key(request), **data.validated_data
        )
        return Response(ApiKeyOut(key, context={"raw_token": raw}).data, status=status.HTTP_201_CREATED)

    @extend_schema(
        request=ApiKeyIn(partial=True),
        responses={200: ApiKeyOut, 403: error_response(403)},
        summary="Change a key's name or limits",
    )
    def partial_update(self, request: Request, pk: str | None = None) -> Response:
        key = self.get_object()
        data = ApiKeyIn(data=request.data, partial=True)
        data.is_valid(raise_exception=True)
        key = services.api_key_update(
            client=request_client(request), key_id=key.pk, granting=_calling_key(request), **data.validated_data
        )
        return Response(ApiKeyOut(key).data)

    @extend_schema(responses={200: ApiKeyOut}, summary="The API key making this request, with its limits and spend")
    @action(detail=False, methods=["get"], url_path="current", filter_backends=[], pagination_class=None, key_scope="")
    def current(self, request: Request) -> Response:
        key = _calling_key(request)
        if key is None:
            raise NotFound("This request was not made with an API key.")
        return Response(ApiKeyOut(selectors.api_key_list_active(client=request_client(request)).get(pk=key.pk)).data)

    def destroy(self, request: Request, pk: str | None = None) -> Response:
        services.api_key_revoke(client=request_client(request), key_id=self.get_object().pk)
        return Response(status=status.HTTP_204_NO_CONTENT)


def _calling_key(request: Request) -> ApiKey | None:
    return request.auth if isinstance(request.auth, ApiKey) else None


class LedgerEntryViewSet(mixins.ListModelMixin, viewsets.GenericViewSet):
    """The caller's ledger entries, newest first. An admin sees every account's and may filter by `?client=`."""

    serializer_class = LedgerEntryOut
    filterset_class = LedgerEntryFilter
    search_fields = ["transaction__memo"]
    ordering_fields = ["id", "created_at", "amount"]
    ordering = ["-id"]

    def get_queryset(self) -> QuerySet[LedgerEntry]:
        if getattr(self, "swagger_fake_view", False):
            return LedgerEntry.objects.none()
        return selectors.ledger_entry_list_visible(viewer=request_client(self.request))
