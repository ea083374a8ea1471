"""Small ASGI pieces for the lean paths served beside Django (see config/asgi.py).

A lean path answers the common case of one hot endpoint without Django's request cycle; anything it does not
handle is handed to Django unchanged, body included, so Django stays the one place that renders every error.
"""

import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import close_old_connections
from django.http.request import split_domain_port, validate_host

from core import metrics, request_id
from core.error_render import TOO_LARGE, encoded_body_for, is_openai_path, openai_retry_headers_asgi, status_error
from core.middleware import body_limit

log = logging.getLogger(__name__)

Scope = dict[str, Any]
# Messages as Django's ASGIHandler types them: a lean path passes these on to it.
Receive = Callable[[], Awaitable[Mapping[str, Any]]]
Send = Callable[[Mapping[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def database_call(fn: Callable[..., Any]) -> Callable[..., Awaitable[Any]]:
    """`fn` (sync, using the ORM) as a coroutine function run in Django's sync thread, its connection handed back
    to the pool afterwards: a lean path has no request cycle to do that (and to drop a broken connection)."""

    def run(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        finally:
            close_old_connections()

    return sync_to_async(run)


class BodyTooLarge(Exception):
    """The body passed the limit: hand `received` (what was read of it) and the rest to Django, which answers 413."""

    def __init__(self, received: bytes, *, complete: bool) -> None:
        super().__init__("request body over the limit")
        self.received = received
        self.complete = complete  # False: the rest of the body is still to come from `receive`


def header(scope: Scope, name: bytes) -> bytes | None:
    """The first value of a request header (`name` in lower case), or None."""
    for key, value in scope["headers"]:
        if key == name:
            return value
    return None


def bearer(scope: Scope) -> str | None:
    """The token of an `Authorization: Bearer <token>` header, or None (no header, another scheme, a malformed one)."""
    value = header(scope, b"authorization")
    if value is None:
        return None
    scheme, _, token = value.decode("latin-1").partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token and " " not in token else None


def host_allowed(scope: Scope, allowed_hosts: list[str]) -> bool:
    """Django's ALLOWED_HOSTS check on the Host header, so a lean path serves exactly the hosts Django does."""
    host = header(scope, b"host")
    if host is None:
        return False
    domain, _port = split_domain_port(host.decode("latin-1"))
    return bool(domain) and validate_host(domain, allowed_hosts)


async def read_body(receive: Receive, *, limit: int) -> bytes:
    """The whole request body; BodyTooLarge as soon as it passes `limit` bytes."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return b"".join(chunks)
        chunk = message.get("body", b"")
        size += len(chunk)
        chunks.append(chunk)
        if size > limit:
            raise BodyTooLarge(b"".join(chunks), complete=not message.get("more_body"))
        if not message.get("more_body"):
            return b"".join(chunks)


def replaying(body: bytes, receive: Receive, *, complete: bool = True) -> Receive:
    """A `receive` that gives `body` (already read) first, then whatever the real one says.

    `complete=False`: `body` is only the start of the request body, and the rest still comes from `receive`.
    """
    sent = False

    async def replay() -> Mapping[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": not complete}
        return await receive()

    return replay


async def send_json(
    send: Send, status: int, payload: bytes | dict[str, Any], extra: list[tuple[bytes, bytes]] | None = None
) -> None:
    """One complete JSON response (`extra`: more headers)."""
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), *(extra or [])]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class LeanPath:
    """ASGI middleware that answers the common case of one hot `POST` endpoint beside Django (config/asgi.py).

    A subclass names `path`, says when it is on (`wants`) and answers in `serve`, which returns False when it
    sent nothing: Django then gets the request, body included, as does every other request and a body over
    MAX_REQUEST_BODY_BYTES (Django answers that 413).
    """

    path: str

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    def wants(self, scope: Scope) -> bool:
        return True

    async def serve(self, scope: Scope, body: bytes, receive: Receive, send: Send) -> bool:
        raise NotImplementedError

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not (
            scope["type"] == "http"
            and scope["path"] == self.path
            and scope["method"] == "POST"
            and self.wants(scope)
            and host_allowed(scope, settings.ALLOWED_HOSTS)
        ):
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        rid = request_id.accept(header(scope, b"x-request-id"))
        reset = request_id.current.set(rid)
        try:
            try:
                body = await read_body(receive, limit=settings.MAX_REQUEST_BODY_BYTES)
            except BodyTooLarge as too_large:
                received = replaying(too_large.received, receive, complete=too_large.complete)
                await self.app(_with_request_id(scope, rid), received, send)
                return
            status = 0  # nothing sent yet

            async def sending(message: Mapping[str, Any]) -> None:
                nonlocal status
                if message["type"] == "http.response.start":
                    status = message["status"]
                    message = {**message, "headers": [*message["headers"], (b"x-request-id", rid.encode())]}
                await send(message)

            try:
                served = await self.serve(scope, body, receive, sending)
            except Exception:  # a bug: answered as Django answers one, a JSON 500 in the mount's shape
                log.exception("Internal Server Error: %s", scope["path"])
                if status:
                    raise  # the response is under way: only closing the connection is left
                code, detail = status_error(500)
                await send_json(sending, 500, encoded_body_for(scope["path"], 500, code=code, detail=detail))
                served = True
            if served:
                metrics.observe_http(route=self.path, method="POST", status=status or 500, started=started)
            else:
                await self.app(_with_request_id(scope, rid), replaying(body, receive), send)
        finally:
            request_id.current.reset(reset)


def _with_request_id(scope: Scope, rid: str) -> Scope:
    """The scope Django gets, carrying the id this request already has (made here if the caller sent none)."""
    headers = [(k, v) for k, v in scope["headers"] if k != b"x-request-id"]
    return {**scope, "headers": [*headers, (b"x-request-id", rid.encode())]}


class RequestBodyCap:
    """ASGI middleware, outermost (config/asgi.py): a body sent without a length (`Transfer-Encoding: chunked`) is
    read here, up to MAX_REQUEST_BODY_BYTES, and handed on with its `Content-Length`; past the limit it is refused
    with 413 in the mount's shape, as a body with a declared length is (core/middleware.py).

    Django's ASGI handler would spool such a body to disk whatever its size, and DRF then reads it as empty (no
    length); the lean paths read it whole. Here every path gets the same bytes, or the same 413.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or header(scope, b"transfer-encoding") is None:
            await self.app(scope, receive, send)
            return
        limit = body_limit(scope["path"])
        try:
            body = await read_body(receive, limit=limit)
        except BodyTooLarge:
            detail = TOO_LARGE.format(limit=limit)
            error = encoded_body_for(scope["path"], 413, code="payload_too_large", detail=detail)
            retry = openai_retry_headers_asgi(413) if is_openai_path(scope["path"]) else []
            await send_json(send, 413, error, retry)
            return
        headers = [(k, v) for k, v in scope["headers"] if k not in (b"transfer-encoding", b"content-length")]
        headers.append((b"content-length", str(len(body)).encode()))
        await self.app({**scope, "headers": headers}, replaying(body, receive), send)
