"""`Authorization: Bearer <api key>` for clients (API.md §0)."""

from datetime import timedelta
from typing import TYPE_CHECKING

from django.utils import timezone
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication, exceptions
from rest_framework.request import Request

from clients.models import ApiKey
from core.tokens import hash_secret

if TYPE_CHECKING:
    from drf_spectacular.openapi import AutoSchema

INVALID_KEY = "Invalid or revoked API key."
# last_used_at is refreshed at most this often, so authentication is not a write per request.
LAST_USED_RESOLUTION = timedelta(minutes=1)


def bearer_token(request: Request) -> str | None:
    """The token of an `Authorization: Bearer ...` header, or None when there is no such header."""
    header = authentication.get_authorization_header(request).split()
    if not header or header[0].lower() != b"bearer":
        return None
    if len(header) != 2:
        raise exceptions.AuthenticationFailed("Invalid Authorization header: expected 'Bearer <token>'.")
    try:
        return header[1].decode("ascii")
    except UnicodeDecodeError as exc:
        raise exceptions.AuthenticationFailed("Invalid token characters.") from exc


def api_key_active(*, digest: str) -> ApiKey | None:
    """The one rule of which key authenticates (both /v1 doors and the API): unrevoked, of an active user, with its
    client and user loaded. Its last use is recorded at most every LAST_USED_RESOLUTION. Expiry and scopes are
    checked by the caller (a 401 and a 403 of their own, API.md §12)."""
    key = ApiKey.objects.select_related("client__user").filter(digest=digest, revoked_at__isnull=True).first()
    if key is None or not key.client.user.is_active:
        return None
    now = timezone.now()
    if key.last_used_at is None or now - key.last_used_at > LAST_USED_RESOLUTION:
        ApiKey.objects.filter(pk=key.pk).update(last_used_at=now)
    return key


class ApiKeyAuthentication(authentication.BaseAuthentication):
    """A client's API key, looked up by its digest; revoked keys and inactive users are refused."""

    keyword = "Bearer"

    def authenticate(self, request: Request) -> tuple | None:
        """The key's user and the key; an expired key is a 401, a key without the view's scope a 403 (§12)."""
        result = self.lookup(request)
        if result is None:
            return None
        key: ApiKey = result[1]
        if key.expires_at is not None and key.expires_at <= timezone.now():
            raise exceptions.AuthenticationFailed("This API key has expired.", code="key_expired")
        view = (getattr(request, "parser_context", None) or {}).get("view")
        if view is not None:
            # Imported here: DRF loads this module while core.errors (which key_limits' errors use) is loading.
            from clients.key_scopes import key_require_scope

            key_require_scope(key=key, view=view, method=request.method or "GET")
        return result

    def lookup(self, request: Request) -> tuple | None:
        raw = bearer_token(request)
        if raw is None:
            return None
        key = api_key_active(digest=hash_secret(raw))
        if key is None:
            raise exceptions.AuthenticationFailed(INVALID_KEY, code="invalid_api_key")
        return key.client.user, key

    def authenticate_header(self, request: Request) -> str:
        return 'Bearer realm="api"'


class ApiKeyAuthenticationScheme(OpenApiAuthenticationExtension):
    target_class = "clients.authentication.ApiKeyAuthentication"
    name = "apiKey"

    def get_security_definition(self, auto_schema: "AutoSchema") -> dict[str, str]:
        return {"type": "http", "scheme": "bearer", "description": "A client API key (`gmk_...`)."}
