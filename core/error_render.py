"""The one renderer of error bodies for each mount (API.md §0, §10; STYLE.md §6).

- `/api/` (and anything that is not `/v1/`): drf-standardized-errors' shape,
  `{"type", "errors": [{"code", "detail", "attr"}]}`, built from the library's own dataclasses; DRF views get it
  from the library's exception handler (core/errors.py), every other place from `api_body`.
- `/v1/`: OpenAI's shape, `{"error": {"message", "type", "param", "code"}}`, as JSON (`openai_body`), with
  `x-should-retry: false` where the client must not retry unchanged (`openai_retry_headers`). A broken /v1 stream
  ends with API.md §11's error chunk (inference/v1/protocol.error_chunk); `openai_sse_error`, the SSE `error`
  event, ends the seed resource's `stream/` (inference/views.py).

Every place that answers an error calls these: Django's error handlers and the JSON-error middleware
(core/exception_views.py, core/middleware.py), the /v1/ exception handler (inference/v1/views.py), the lean
ASGI paths (core/asgi.py, inference/v1/asgi.py) and the SSE streams (inference/relay.py). `body_for` picks the
mount's shape from the request path.
"""

import json
from dataclasses import asdict
from typing import Any, Literal

from django.http import JsonResponse
from drf_standardized_errors.types import CLIENT_ERROR, SERVER_ERROR, Error, ErrorResponse

OPENAI_PREFIX = "/v1/"

# The code and detail of an error known only by its HTTP status (an unknown path, a method not allowed, a body
# over the limit, a crash), as DRF names the same conditions.
STATUS_ERRORS: dict[int, tuple[str, str]] = {
    400: ("bad_request", "Bad request."),
    401: ("not_authenticated", "Authentication credentials were not provided."),
    403: ("permission_denied", "You do not have permission to perform this action."),
    404: ("not_found", "Not found."),
    405: ("method_not_allowed", "Method not allowed."),
    406: ("not_acceptable", "Could not satisfy the request Accept header."),
    408: ("request_timeout", "The request took too long to arrive."),
    411: ("length_required", "The request body's length is required."),
    413: ("payload_too_large", "The request body is too large."),
    415: ("unsupported_media_type", "Unsupported media type in the request."),
    429: ("throttled", "Request was throttled."),
    500: ("error", "Server Error (500)"),
}


TOO_LARGE = "The request body is larger than the limit of {limit} bytes."


def status_error(status: int) -> tuple[str, str]:
    """(code, detail) for an error known only by its status."""
    if status in STATUS_ERRORS:
        return STATUS_ERRORS[status]
    return STATUS_ERRORS[400] if status < 500 else STATUS_ERRORS[500]


def is_openai_path(path: str) -> bool:
    return path.startswith(OPENAI_PREFIX)


# --- /api/ ------------------------------------------------------------------------------------------------------


def api_body(status: int, *, code: str, detail: str, attr: str | None = None) -> dict[str, Any]:
    """drf-standardized-errors' body for one error."""
    kind: Literal["client_error", "server_error"] = CLIENT_ERROR if status < 500 else SERVER_ERROR
    return asdict(ErrorResponse(kind, [Error(code=code, detail=detail, attr=attr)]))


# --- /v1/ -------------------------------------------------------------------------------------------------------


def openai_type(status: int) -> str:
    """OpenAI's error `type` for a status (what its SDKs map to an exception class)."""
    if status == 401:
        return "authentication_error"
    if status == 402:
        return "insufficient_quota"
    if status == 429:
        return "rate_limit_error"
    return "server_error" if status >= 500 else "invalid_request_error"


def openai_body(status: int, *, message: str, code: str, param: str | None = None) -> dict[str, Any]:
    """OpenAI's error body, which its SDKs turn into the matching exception."""
    return {"error": {"message": message, "type": openai_type(status), "param": param, "code": code}}


# `x-should-retry` (API.md §11): OpenAI's SDKs retry 408, 409, 429 and 5xx unless the response says not to. A
# 4xx the client must not send again unchanged says `false`; these may succeed as they are, later.
SHOULD_RETRY_HEADER = "x-should-retry"
_RETRYABLE_STATUSES = frozenset({408, 429})
# A 409 that ends by itself: the same request (its Idempotency-Key) is still being served.
_RETRYABLE_CONFLICTS = frozenset({"request_in_progress", "idempotency_key_in_use"})


def should_retry(status: int, code: str | None = None) -> bool | None:
    """False for an answer the client must not retry unchanged (any 4xx but 408, 429 and a 409 of a request still
    in progress); None where the SDK's own rule stands."""
    if not 400 <= status < 500 or status in _RETRYABLE_STATUSES:
        return None
    if status == 409 and code in _RETRYABLE_CONFLICTS:
        return None
    return False


def openai_retry_headers(status: int, code: str | None = None) -> dict[str, str]:
    """The `x-should-retry` header of a /v1 error response, if it needs one."""
    return {SHOULD_RETRY_HEADER: "false"} if should_retry(status, code) is False else {}


def openai_retry_headers_asgi(status: int, code: str | None = None) -> list[tuple[bytes, bytes]]:
    """`openai_retry_headers` as ASGI header pairs (the lean path's `_send_json` extras)."""
    return [(k.encode(), v.encode()) for k, v in openai_retry_headers(status, code).items()]


def openai_sse_error(*, message: str, code: str, status: int = 500) -> bytes:
    """The SSE `error` event that ends a failed seed `stream/` (no `[DONE]` after it), in OpenAI's error shape."""
    body = json.dumps(openai_body(status, message=message, code=code))
    return f"event: error\ndata: {body}\n\n".encode()


# --- Either mount, by path ------------------------------------------------------------------------------------


def body_for(path: str, status: int, *, code: str, detail: str, attr: str | None = None) -> dict[str, Any]:
    """The error body in the shape of the mount `path` is under."""
    if is_openai_path(path):
        return openai_body(status, message=detail, code=code, param=attr)
    return api_body(status, code=code, detail=detail, attr=attr)


def encoded_body_for(path: str, status: int, *, code: str, detail: str, attr: str | None = None) -> bytes:
    """`body_for` as the bytes of a JSON response (for ASGI code, which has no Django response)."""
    return json.dumps(body_for(path, status, code=code, detail=detail, attr=attr)).encode()


def error_response(
    path: str,
    status: int,
    *,
    code: str | None = None,
    detail: str | None = None,
    attr: str | None = None,
    headers: dict[str, str] | None = None,
) -> JsonResponse:
    """A Django JSON error response in the shape of `path`'s mount; code and detail default to the status's."""
    default_code, default_detail = status_error(status)
    body = body_for(path, status, code=code or default_code, detail=detail or default_detail, attr=attr)
    if is_openai_path(path):
        headers = {**openai_retry_headers(status, code or default_code), **(headers or {})}
    return JsonResponse(body, status=status, headers=headers)
