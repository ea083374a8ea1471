"""Django helpers for server-sent event streams, shared by the seed views and the /v1 views: the response itself,
and the `ref` that keys a stream sent with an Idempotency-Key."""

import hashlib
import re
from collections.abc import AsyncIterator

from django.http import StreamingHttpResponse
from rest_framework.request import Request

from core.idempotency import HEADER, KEY_PATTERN, InvalidIdempotencyKey


def stream_ref(request: Request) -> str | None:
    """The `ref` of a stream sent with an Idempotency-Key (streams are not stored for replay, so with_idempotency
    cannot take them): the hold is keyed by it, so the same key again is refused instead of charged twice."""
    raw = request.headers.get(HEADER)
    if raw is None or not request.user.is_authenticated:
        return None
    if not re.fullmatch(KEY_PATTERN, raw):
        raise InvalidIdempotencyKey(f"The {HEADER} header must be 1 to 255 visible ASCII characters.")
    scope = f"{request.user.pk}\n{request.path}\n{raw}"
    return "stream:" + hashlib.sha256(scope.encode()).hexdigest()[:40]  # hashed into the request_key


def sse_response(events: AsyncIterator[bytes]) -> StreamingHttpResponse:
    """A server-sent event stream, not to be cached or buffered by a proxy."""
    response = StreamingHttpResponse(events, content_type="text/event-stream")
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"
    return response
