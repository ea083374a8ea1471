"""`POST /v1/chat/completions`, the hot path: the lean door of the /v1 pipeline, served beside Django (config/asgi.py).

An ASGI adapter over inference/v1/pipeline.py with the lean strategies: routes cached per process
(v1/routes.CachedRoutes over v1/lookups.py), a reservation from a lease (v1/reserve.LeaseReserve), the usage
entry in the Redis journal before the end of the answer reaches the client (v1/record.JournalRecord). So none of
it costs a database round trip on the request path: the API key comes from a per-process cache (v1/lookups.py).

It serves the common case only; anything else goes to the Django view (the web door) unchanged, which answers it
(errors included) in OpenAI's shape: a body it cannot parse or check, no or an unknown key, an `Idempotency-Key`
(the web door stores responses for replay), a model with no live node, a client whose balance is too low for a
lease, a client with an active plan (plans/). On SQLite, or with no journal (USAGE_JOURNAL_URL empty) or
INFERENCE_LEAN_PATH off, Django serves all.
"""

import asyncio
import contextlib
import logging
from collections.abc import Awaitable
from contextlib import aclosing
from typing import Any

from django.conf import settings

from clients.key_limits import key_admit_async
from core import json_codec
from core.asgi import ASGIApp, LeanPath, Receive, Scope, Send, bearer, header
from core.errors import DomainError
from core.parsers import MalformedJson, json_loads
from inference.journal import stream as journal
from inference.v1 import lookups
from inference.v1.pipeline import Caller, ChatCall, Finished, Pipeline, stream_end
from inference.v1.protocol import BadChatRequest, error_body, parse_chat_request, relay_failure
from inference.v1.record import JournalRecord
from inference.v1.reserve import LeaseReserve
from inference.v1.routes import CachedRoutes

log = logging.getLogger(__name__)

PATH = "/v1/chat/completions"
_JSON_HEADERS = [(b"content-type", b"application/json"), (b"x-content-type-options", b"nosniff")]
_SSE_HEADERS = [
    (b"content-type", b"text/event-stream"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
    (b"x-content-type-options", b"nosniff"),
]
Headers = list[tuple[bytes, bytes]]


def enabled() -> bool:
    return (
        settings.INFERENCE_LEAN_PATH
        and journal.enabled()
        and settings.DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql"
    )


async def _send_json(send: Send, status: int, body: bytes, extra: Headers | None = None) -> None:
    headers = [*_JSON_HEADERS, (b"content-length", str(len(body)).encode()), *(extra or [])]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _send_error(send: Send, error: DomainError, extra: Headers | None = None) -> None:
    """The web door's answer for the same error (v1/views.openai_exception_handler)."""
    body, headers = error_body(error)
    encoded = [*(extra or []), *((k.lower().encode(), v.encode()) for k, v in headers.items())]
    await _send_json(send, error.status, json_codec.dumps(body), encoded)


class ChatCompletionsLeanPath(LeanPath):
    """ASGI middleware: `POST /v1/chat/completions` here in the common case, everything else to `app`."""

    path = PATH

    def __init__(self, app: ASGIApp) -> None:
        super().__init__(app)
        self.routes = CachedRoutes()
        self.reserve = LeaseReserve()
        self.pipeline = Pipeline(
            routes=self.routes,
            reserve=self.reserve,
            record=JournalRecord(forget_route=lookups.forget_route, background=self._in_background),
            on_relay=self.routes.relaying,
        )
        self._background: set[asyncio.Task] = set()
        self._ticker: asyncio.Task | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
        else:
            await super().__call__(scope, receive, send)

    def wants(self, scope: Scope) -> bool:
        return enabled()

    async def serve(self, scope: Scope, raw: bytes, receive: Receive, send: Send) -> bool:
        """Answer the request; False (nothing sent, nothing held) when the web door must answer it."""
        token = bearer(scope)
        if token is None or header(scope, b"idempotency-key") is not None:
            return False
        try:
            request = parse_chat_request(json_loads(raw))
        except (MalformedJson, BadChatRequest):
            return False
        limits = await lookups.key_of(token)  # authenticate
        if limits is None:
            return False
        if await lookups.on_a_plan(limits.client_id):
            return False  # its plan's quota and cover are the web door's (plans/; docs/API.md §9)
        call = await self.pipeline.open(request, Caller(client_id=limits.client_id, limits=limits))
        if call is None:
            return False
        self._start_ticker()
        try:
            admission = await key_admit_async(limits=limits, model=request.model)  # no I/O for a key without limits
        except DomainError as refused:
            await self.pipeline.abandon(call)
            await _send_error(send, refused)
            return True
        headers = admission.as_asgi()
        if request.stream:
            await self._stream(call, headers, send, receive)
        else:
            try:
                payload = await self.pipeline.complete(call)
            except DomainError as failed:
                await _send_error(send, failed, headers)
            else:
                await _send_json(send, 200, json_codec.dumps(payload), headers)
        return True

    async def _stream(self, call: ChatCall, headers: Headers, send: Send, receive: Receive) -> None:
        finished: Finished | None = None
        started = False

        async def safe_send(message: dict) -> None:
            try:
                await send(message)
            except OSError:  # the client is gone (uvicorn raises ClientDisconnected, an OSError)
                raise asyncio.CancelledError from None

        async def pump() -> None:
            nonlocal finished, started
            async with aclosing(self.pipeline.events(call)) as events:
                async for event in events:
                    if isinstance(event, Finished):
                        finished = event
                        break
                    if not started:
                        started = True
                        await safe_send(
                            {"type": "http.response.start", "status": 200, "headers": [*_SSE_HEADERS, *headers]}
                        )
                    await safe_send({"type": "http.response.body", "body": event, "more_body": True})

        async def disconnected() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass

        relaying = asyncio.create_task(pump())
        watching = asyncio.create_task(disconnected())
        try:
            await asyncio.wait({relaying, watching}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            watching.cancel()
            if not relaying.done():
                relaying.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await relaying  # a relay error other than cancellation is a bug: it propagates
        if finished is None:
            return  # the client went away: recorded as such when the events were closed
        if not started:  # nothing sent, not even a keep-alive: a JSON error answer is still possible
            await _send_error(send, relay_failure(call.delivery), headers)
            return
        with contextlib.suppress(OSError):
            await send({"type": "http.response.body", "body": stream_end(call, finished)})

    # --- Background work: lease expiry, node failures, shutdown ------------------------------------------------

    def _in_background(self, work: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def _start_ticker(self) -> None:
        if self._ticker is None or self._ticker.done():
            self._ticker = asyncio.create_task(self._tick())

    async def _tick(self) -> None:
        book = self.reserve.book
        while True:
            await asyncio.sleep(book.tick_s())
            # In the background set, so that a shutdown arriving while a lease is being closed waits for its close
            # (`_lifespan`) instead of cancelling it half-way, which would leave the lease's hold held.
            retiring = asyncio.ensure_future(book.retire_expired())
            self._background.add(retiring)
            retiring.add_done_callback(self._background.discard)
            try:
                await asyncio.shield(retiring)
            except asyncio.CancelledError:
                raise
            except Exception:  # a Redis or database outage: try again next second
                log.exception("retiring expired leases failed")

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        """Django has no lifespan handling; on shutdown, hand back this process's leases."""
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                with contextlib.suppress(Exception):
                    await self.reserve.book.retire_all()
                    if self._background:
                        await asyncio.wait(self._background, timeout=5)
                if self._ticker is not None:
                    self._ticker.cancel()
                await send({"type": "lifespan.shutdown.complete"})
                return
