"""Request-level guards that run before any view parses a body, the guarantee that API errors are JSON, and the
request id every request gets."""

import json
from collections.abc import Awaitable, Callable
from contextvars import Token

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.http.response import HttpResponseBase, HttpResponseRedirectBase
from django.middleware.common import CommonMiddleware as DjangoCommonMiddleware
from django.utils.http import escape_leading_slashes

from core import request_id
from core.error_render import SHOULD_RETRY_HEADER, TOO_LARGE, error_response, is_openai_path, openai_retry_headers

API_PREFIXES = ("/api/", "/v1/")


class JsonErrorMiddleware:
    """Every error under /api/ and /v1/ is JSON in that mount's shape, whatever DEBUG says (API.md §10).

    Views and Django's handlers (core/exception_views.py) already answer JSON; what is left are the pages Django
    renders itself: with DEBUG on, its HTML 404 for an unmatched URL (a malformed id included) and its HTML
    traceback page for a crash; a bare 405 from a plain Django view; an error rendered for a non-JSON view (the
    docs' HTML, the schema's YAML). Those become the mount's JSON error for the same status, headers kept (Allow,
    Retry-After). Outermost, so it sees what every other middleware answered too. A /v1 error gets its
    `x-should-retry` here too (core/error_render.py's rule), whichever handler rendered it.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if response.status_code < 400 or not request.path.startswith(API_PREFIXES):
            return response
        if _is_json(response):
            if is_openai_path(request.path) and not response.has_header(SHOULD_RETRY_HEADER):
                # The /v1 exception handlers render the body; the header is the renderer's rule (API.md §11).
                for name, value in openai_retry_headers(response.status_code, _openai_code(response)).items():
                    response[name] = value
            return response
        keep = {name: response[name] for name in ("Allow", "Retry-After") if response.has_header(name)}
        response.close()
        return error_response(request.path, response.status_code, headers=keep)


def _openai_code(response: HttpResponse) -> str | None:
    """The `code` of an OpenAI-shaped error body; read only for a 409, the one status where it decides a retry."""
    if response.status_code != 409 or response.streaming:
        return None
    try:
        code = json.loads(response.content)["error"]["code"]
    except (ValueError, KeyError, TypeError):
        return None
    return code if isinstance(code, str) else None


def _is_json(response: HttpResponse) -> bool:
    media_type = response.get("Content-Type", "").split(";", 1)[0].strip().lower()
    return media_type == "application/json" or media_type.endswith("+json")


class HttpResponsePermanentRedirectSameMethod(HttpResponseRedirectBase):
    status_code = 308  # the client repeats the request, method and body included, at the new URL


class CommonMiddleware(DjangoCommonMiddleware):
    """Django's, except that a POST/PUT/PATCH/DELETE to a URL missing its trailing slash is redirected with 308
    (method and body kept) instead of a 301 that turns it into a GET, or, with DEBUG on, a RuntimeError (500)."""

    def process_response(self, request: HttpRequest, response: HttpResponseBase) -> HttpResponseBase:
        if (
            response.status_code == 404
            and request.method not in ("GET", "HEAD")
            and self.should_redirect_with_slash(request)
        ):
            return HttpResponsePermanentRedirectSameMethod(
                escape_leading_slashes(request.get_full_path(force_append_slash=True))
            )
        return super().process_response(request, response)


def _too_large(path: str, limit: int) -> JsonResponse:
    return error_response(path, 413, detail=TOO_LARGE.format(limit=limit))


# Paths that take an uploaded file (a fine-tuning dataset: training/, API.md §13) are capped by their own setting.
UPLOAD_PATHS = ("/v1/files", "/v1/files/")


def body_limit(path: str) -> int:
    """The largest body `path` accepts: MAX_REQUEST_BODY_BYTES, or an upload's cap plus room for its form."""
    if path in UPLOAD_PATHS:
        return max(settings.MAX_REQUEST_BODY_BYTES, settings.TRAINING_FILE_MAX_BYTES + 64 * 1024)
    return settings.MAX_REQUEST_BODY_BYTES


class RequestBodyLimitMiddleware:
    """Refuse oversized bodies with 413 by their declared length, so nothing of them is read or stored.

    A body without a declared length (`Transfer-Encoding: chunked`) is read up to the limit in front of Django
    (core/asgi.py's RequestBodyCap), which refuses it there or hands it on with its length."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response
        self.limit = settings.MAX_REQUEST_BODY_BYTES

    def __call__(self, request: HttpRequest) -> HttpResponse:
        length = request.META.get("CONTENT_LENGTH")
        if length:
            limit = body_limit(request.path)
            try:
                too_large = int(length) > limit
            except ValueError:
                too_large = False
            if too_large:
                return _too_large(request.path, limit)
        return self.get_response(request)


class RequestIdMiddleware:
    """Take or make the request's id, keep it for its log lines, and return it in `X-Request-Id`.

    The id is the request's only: it is reset when the response leaves (the next request on this thread or task
    starts without one), and set again around each part a streamed response makes, whose node call and log lines
    run after that (core/request_id.py's `streaming_with_id`)."""

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable) -> None:
        self.get_response = get_response
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    @staticmethod
    def _begin(request: HttpRequest) -> tuple[str, Token[str | None]]:
        rid = request_id.accept(request.headers.get(request_id.HEADER))
        request.request_id = rid  # type: ignore[attr-defined]
        return rid, request_id.current.set(rid)

    @staticmethod
    def _end(response: HttpResponseBase, rid: str) -> HttpResponseBase:
        response[request_id.HEADER] = rid
        return request_id.streaming_with_id(response, rid)

    def __call__(self, request: HttpRequest) -> HttpResponseBase | Awaitable[HttpResponseBase]:
        if self.is_async:
            return self.__acall__(request)
        rid, token = self._begin(request)
        try:
            response = self.get_response(request)
        finally:
            request_id.current.reset(token)
        return self._end(response, rid)

    async def __acall__(self, request: HttpRequest) -> HttpResponseBase:
        rid, token = self._begin(request)
        try:
            response = await self.get_response(request)
        finally:
            request_id.current.reset(token)
        return self._end(response, rid)
