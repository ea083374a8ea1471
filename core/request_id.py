"""Request ids (docs/API.md §16): `X-Request-Id` taken from the request when it is safe, made otherwise; kept in a
context variable for the request's log lines (core/logging.py) and its calls to nodes (inference/node_client.py).

Both doors set it: core.middleware.RequestIdMiddleware, and the lean ASGI paths (core/asgi.py's LeanPath).
"""

import re
import uuid
from contextvars import ContextVar

HEADER = "X-Request-Id"
MAX_LENGTH = 128
# Letters, digits and a few separators: safe in a header, a log line and a JSON string, whatever the caller sent.
_SAFE = re.compile(r"[A-Za-z0-9._:\-]{1,%d}" % MAX_LENGTH)  # noqa: UP031 - a regex quantifier

current: ContextVar[str | None] = ContextVar("request_id", default=None)


def accept(raw: str | bytes | None) -> str:
    """The caller's id if it is 1..128 safe characters, else a new one (32 hex digits)."""
    if isinstance(raw, bytes):
        raw = raw.decode("latin-1")
    if raw and _SAFE.fullmatch(raw):
        return raw
    return uuid.uuid4().hex
