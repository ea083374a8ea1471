from rest_framework.permissions import BasePermission


def client_of(request) -> "object | None":  # type: ignore[no-untyped-def]
    user = request.user
    return getattr(user, "client", None) if user and user.is_authenticated else None


class IsAdmin(BasePermission):
    """Staff only."""

    def has_permission(self, request, view) -> bool:  # type: ignore[no-untyped-def]
        return bool(request.user and request.user.is_authenticated and request.user.is_staff)


class IsApprovedProvider(BasePermission):
    """A GPU provider whose application an admin approved (admins pass too)."""

    message = "Only approved GPU providers may do this."

    def has_permission(self, request, view) -> bool:  # type: ignore[no-untyped-def]
        client = client_of(request)
        return bool(client and (request.user.is_staff or client.is_approved_provider))
