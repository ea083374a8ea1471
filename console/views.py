"""GET /metrics, guarded: a bearer token (METRICS_TOKEN), or loopback callers when no token is set."""

import hmac
import ipaddress

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.http import require_GET
from prometheus_client import CONTENT_TYPE_LATEST

from console.metrics import exposition


def _forbidden(detail: str) -> JsonResponse:
    return JsonResponse(
        {"type": "client_error", "errors": [{"code": "permission_denied", "detail": detail, "attr": None}]},
        status=403,
    )


def _loopback(request: HttpRequest) -> bool:
    try:
        return ipaddress.ip_address(request.META.get("REMOTE_ADDR", "")).is_loopback
    except ValueError:
        return False


@require_GET
def metrics(request: HttpRequest) -> HttpResponse:
    token = settings.METRICS_TOKEN
    if token:
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), token.encode()):
            return _forbidden("GET /metrics needs `Authorization: Bearer <METRICS_TOKEN>`.")
    elif not _loopback(request):
        return _forbidden("GET /metrics answers loopback callers only when METRICS_TOKEN is not set.")
    return HttpResponse(exposition(), content_type=CONTENT_TYPE_LATEST)
