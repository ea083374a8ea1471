"""Request-level guards that run before any view parses a body, and the request id every request gets."""

from collections.abc import Awaitable, Callable

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse

from core import request_id


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


class RequestIdMiddleware:
    """Take or make the request's id, keep it for its log lines, and return it in `X-Request-Id`."""

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable) -> None:
        self.get_response = get_response
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    def _begin(self, request: HttpRequest) -> str:
        rid = request_id.accept(request.headers.get(request_id.HEADER))
        request.request_id = rid  # type: ignore[attr-defined]
        request_id.current.set(rid)
        return rid

    def __call__(self, request: HttpRequest) -> HttpResponse | Awaitable[HttpResponse]:
        if self.is_async:
            return self.__acall__(request)
        rid = self._begin(request)
        response = self.get_response(request)
        response[request_id.HEADER] = rid
        return response

    async def __acall__(self, request: HttpRequest) -> HttpResponse:
        rid = self._begin(request)
        response = await self.get_response(request)
        response[request_id.HEADER] = rid
        return response
