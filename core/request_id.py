"""Request ids (docs/API.md §16): `X-Request-Id` taken from the request when it is safe, made otherwise; kept in a
context variable for the request's log lines (core/logging.py) and its calls to nodes (inference/node_client.py).

Both doors set it: core.middleware.RequestIdMiddleware, and the lean ASGI paths (core/asgi.py's LeanPath).
"""

import re
import secrets
from collections.abc import AsyncIterator, Iterator
from contextvars import ContextVar

from django.http import FileResponse, StreamingHttpResponse
from django.http.response import HttpResponseBase

HEADER = "X-Request-Id"
MAX_LENGTH = 128
# Letters, digits and a few separators: safe in a header, a log line and a JSON string, whatever the caller sent.
_SAFE = re.compile(r"[A-Za-z0-9._:\-]{1,%d}" % MAX_LENGTH)  # noqa: UP031 - a regex quantifier

current: ContextVar[str | None] = ContextVar("request_id", default=None)


def accept(raw: str | bytes | None) -> str:
    """The caller's id if it is 1..128 safe characters, else a new one (32 random hex digits)."""
    if isinstance(raw, bytes):
        raw = raw.decode("latin-1")
    if raw and _SAFE.fullmatch(raw):
        return raw
    return secrets.token_hex(16)


def streaming_with_id(response: HttpResponseBase, rid: str) -> HttpResponseBase:
    """A streamed response's parts are made after its request's middleware returned (a stream's node call, its log
    lines): each is made with the request's id set again. Files are left as they are (served by the file itself)."""
    if not isinstance(response, StreamingHttpResponse) or isinstance(response, FileResponse):
        return response
    content = response.streaming_content
    if isinstance(content, AsyncIterator):
        response.streaming_content = _async_parts_with_id(content, rid)
    else:
        response.streaming_content = _parts_with_id(iter(content), rid)
    return response


def _parts_with_id(parts: Iterator[bytes], rid: str) -> Iterator[bytes]:
    while True:
        token = current.set(rid)
        try:
            part = next(parts)
        except StopIteration:
            return
        finally:
            current.reset(token)
        yield part


async def _async_parts_with_id(parts: AsyncIterator[bytes], rid: str) -> AsyncIterator[bytes]:
    try:
        while True:
            token = current.set(rid)
            try:
                part = await anext(parts)
            except StopAsyncIteration:
                return
            finally:
                current.reset(token)
            yield part
    finally:  # closed early (the client left): the stream's own clean-up runs now, with the id
        aclose = getattr(parts, "aclose", None)
        if aclose is not None:
            token = current.set(rid)
            try:
                await aclose()
            finally:
                current.reset(token)
