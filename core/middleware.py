"""Request-level guards that run before any view parses a body."""

from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse


def _too_large(limit: int) -> JsonResponse:
    detail = f"The request body is larger than the limit of {limit} bytes."
    return JsonResponse(
        {"type": "client_error", "errors": [{"code": "payload_too_large", "detail": detail, "attr": None}]},
        status=413,
    )


class RequestBodyLimitMiddleware:
    """Refuse oversized bodies with 413 by their declared length, so nothing of them is read or stored."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response
        self.limit = settings.MAX_REQUEST_BODY_BYTES

    def __call__(self, request: HttpRequest) -> HttpResponse:
        length = request.META.get("CONTENT_LENGTH")
        if length:
            try:
                too_large = int(length) > self.limit
            except ValueError:
                too_large = False
            if too_large:
                return _too_large(self.limit)
        return self.get_response(request)
