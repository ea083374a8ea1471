from typing import TYPE_CHECKING

from django.http import HttpRequest
from rest_framework.exceptions import NotAuthenticated
from rest_framework.permissions import BasePermission
from rest_framework.request import Request

from clients.models import Client

if TYPE_CHECKING:
    from rest_framework.views import APIView


def client_of(request: HttpRequest | Request) -> Client | None:
    """The signed-in user's client, or None (anonymous)."""
    user = request.user
    if not (user and user.is_authenticated):
        return None
    client: Client | None = getattr(user, "client", None)
    return client


def request_client(request: HttpRequest | Request) -> Client:
    """The caller's client, in a view that requires authentication (an anonymous caller is a 401)."""
    client = client_of(request)
    if client is None:
        raise NotAuthenticated()
    return client


class IsAdmin(BasePermission):
    """Staff only."""

    def has_permission(self, request: Request, view: "APIView") -> bool:
        return bool(request.user and request.user.is_authenticated and request.user.is_staff)


class IsApprovedProvider(BasePermission):
    """A GPU provider whose application an admin approved (admins pass too)."""

    message = "Only approved GPU providers may do this."

    def has_permission(self, request: Request, view: "APIView") -> bool:
        client = client_of(request)
        return bool(client and (request.user.is_staff or client.is_approved_provider))
