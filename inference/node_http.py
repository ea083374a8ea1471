"""A small HTTP/1.1 client for calls to nodes (asyncio.Protocol + httptools); inference/node_client.py pins the
address, builds the headers and reads the node's events over it.

Only what node calls need: a POST with a Content-Length body in one write; a response framed by Content-Length,
chunks or the connection's close (httptools), gzip or deflate decoded, its body buffered for a reader that takes
it whole (reading paused past _HIGH_WATER unread). Connections are pooled per client (one per event loop) by
(scheme, address, port, TLS server name): one read to the end and not marked `Connection: close` goes back to the
pool, closed after KEEPALIVE_S idle; one left early is closed (that stops the node's generation). A pooled
connection that fails before any response byte (the node closed it while idle) is retried once on a fresh one;
nothing else is retried. Timeouts cost nothing per chunk: one timer per connection re-arms itself and compares
the last read's time (stamped in `data_received`) with the idle timeout, and the clock with the caller's deadline.
"""

import asyncio
import functools
import math
import ssl
import zlib
from typing import Any, NamedTuple, cast

import httptools

KEEPALIVE_S = 15.0  # an idle pooled connection is closed after this
_HIGH_WATER = 256 * 1024  # unread body bytes past which reading is paused
_DRAIN_S = 1.0  # a response released before its end (after `[DONE]`) may take this long to end, else it is closed
_MAX_HEAD_BYTES = 64 * 1024
_DECODED = {b"gzip", b"x-gzip", b"deflate"}


class ConnectError(Exception):
    """The node could not be connected to, or closed the connection before the response's headers."""


class _Stale(ConnectError):
    """Closed before any response byte: on a pooled connection, the node closed it while it was idle."""


class BrokenResponse(Exception):
    """The connection broke after the response's headers."""


class BadResponse(Exception):
    """The node's answer is not HTTP we read (malformed, an unknown Content-Encoding, a broken gzip stream)."""


class TooLarge(Exception):
    """The response's body is larger than the caller's `max_bytes`."""


class Limits(NamedTuple):  # of one request
    connect_s: float  # connecting (TLS included)
    idle_s: float  # a gap between two reads while the reader waits
    max_bytes: int  # of the response's body, decoded


class Origin(NamedTuple):  # where a connection goes, and the pool's key
    scheme: str
    address: str  # an IP address (no brackets)
    port: int
    server_name: str | None  # TLS server name and the name the certificate must hold; None: the address


@functools.cache
def _tls() -> ssl.SSLContext:
    return ssl.create_default_context()  # one per process: building one loads the system's CA store


def _head(target: str, headers: dict[str, str], length: int) -> bytes:
    lines = [f"POST {target} HTTP/1.1", *(f"{k}: {v}" for k, v in headers.items()), f"Content-Length: {length}"]
    text = "\r\n".join(lines) + "\r\n\r\n"
    if text.count("\n") != len(lines) + 1 or text.count("\r") != len(lines) + 1:
        raise ValueError("A request header holds a line break.")  # header injection; the value is not shown
    return text.encode()


class _Connection(asyncio.Protocol):
    """One connection; it holds the response being read (at most one at a time)."""

    transport: asyncio.Transport
    error: BaseException | None  # what ends the response being read, raised once what arrived before it is read
    _decoder: Any

    def __init__(self, pool: "NodeHttpClient", origin: Origin, loop: asyncio.AbstractEventLoop) -> None:
        self._pool = pool
        self.origin = origin
        self._loop = loop
        self._parser = httptools.HttpResponseParser(self)
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0
        self._last_io = loop.time()
        self.closed = self.in_use = self._draining = self._paused = False
        self._waiter: asyncio.Future[None] | None = None
        self._chunks: list[bytes] = []
        self.begin(Limits(0.0, math.inf, 0), deadline=math.inf)
        self.in_use = False

    def begin(self, limits: "Limits", *, deadline: float) -> None:
        """A new request on this connection: its response's state, limits and timer."""
        self.status = 0
        self.headers_done = self.complete = self.keep_alive = self._framed = self._got_byte = False
        self._encoding = b""
        self._decoder = None
        self._chunks.clear()
        self._buffered = self._size = self._head_bytes = 0
        self.error = None
        self._deadline, self._idle_s, self._max_bytes = deadline, limits.idle_s, limits.max_bytes
        self.in_use = True
        self._last_io = self._loop.time()
        self._arm(min(deadline, self._last_io + limits.idle_s))

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self._last_io = self._loop.time()
        if not self.in_use or self.complete:
            self.close()  # bytes nobody asked for: the connection is out of step
            return
        self._got_byte = True
        try:
            self._parser.feed_data(data)
        except (httptools.HttpParserError, httptools.HttpParserUpgrade) as exc:
            cause = exc.__context__
            self._fail(cause if isinstance(cause, BadResponse | TooLarge) else BadResponse("Not valid HTTP."))
        if not self.headers_done:
            self._head_bytes += len(data)
            if self._head_bytes > _MAX_HEAD_BYTES:
                self._fail(BadResponse("The node's response headers are too large."))

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._pool.forget(self)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self.in_use and not self.complete and self.error is None:
            if self.headers_done and not self._framed and not self._draining:
                self.complete = True  # a body ended by the connection's close
            elif not self._got_byte:
                self.error = _Stale("The connection closed before the response.")
            elif self.headers_done:
                self.error = BrokenResponse("The connection broke during the response.")
            else:
                self.error = ConnectError("The connection closed during the response's headers.")
        self._wake()

    def on_message_begin(self) -> None:
        self._encoding, self._framed = b"", False  # also after a 1xx, whose headers are not the response's

    def on_header(self, name: bytes, value: bytes) -> None:
        name = name.lower()
        if name == b"content-encoding":
            self._encoding = value.strip().lower()
        elif name == b"content-length" or name == b"transfer-encoding":
            self._framed = True

    def on_headers_complete(self) -> None:
        status = self._parser.get_status_code()
        if status < 200:
            return  # 1xx: informational, the response follows
        self.status, self.headers_done = status, True
        if self._encoding in _DECODED:
            self._decoder = zlib.decompressobj(32 + zlib.MAX_WBITS)  # a gzip or zlib header, detected
        elif self._encoding not in (b"", b"identity"):
            raise BadResponse("The node's answer has an encoding we do not read.")
        self._wake()

    def on_body(self, body: bytes) -> None:
        if self._decoder is not None:
            try:  # at most one byte past the limit is decoded: a small body cannot blow up in memory
                body = self._decoder.decompress(body, self._max_bytes - self._size + 1)
            except zlib.error as exc:
                raise BadResponse("The node's answer does not decode.") from exc
        self._size += len(body)
        if self._size > self._max_bytes:
            raise TooLarge("The node's answer is too large.")
        if self._draining:
            return  # released after the last event: the rest is not read
        self._chunks.append(body)
        self._buffered += len(body)
        if self._buffered > _HIGH_WATER and not self._paused:
            self._paused = True
            self.transport.pause_reading()
        self._wake()

    def on_message_complete(self) -> None:
        if not self.headers_done:
            return  # the end of a 1xx
        self.complete = True
        self.keep_alive = self._parser.should_keep_alive()
        if self._draining:
            self._settle()
        self._wake()

    async def wait_headers(self) -> None:
        while not self.headers_done:
            if self.error is not None:
                raise self.error
            self._waiter = self._loop.create_future()
            await self._waiter

    async def read(self) -> bytes:
        """The body bytes received and not read yet (waiting for some), b"" at its end; raises the connection's
        error once what arrived before it was read."""
        while True:
            if self._chunks:
                data = self._chunks[0] if len(self._chunks) == 1 else b"".join(self._chunks)
                self._chunks.clear()
                self._buffered = 0
                if self._paused:
                    self._paused = False
                    self.transport.resume_reading()
                return data
            if self.complete:
                return b""
            if self.error is not None:
                raise self.error
            self._last_io = self._loop.time()  # the idle timeout counts from the later of the last read and now
            self._waiter = self._loop.create_future()
            await self._waiter

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)

    def set_deadline(self, when: float) -> None:
        self._deadline = when
        self._arm(when)

    def release(self) -> None:
        """The reader is done: back to the pool once the response has ended (within _DRAIN_S), else closed."""
        if self.complete or self.closed or self.error is not None or not self.headers_done:
            self._settle()
            return
        self._draining = True
        self._chunks.clear()
        if self._paused:
            self._paused = False
            self.transport.resume_reading()
        self.set_deadline(self._loop.time() + _DRAIN_S)

    def _settle(self) -> None:
        self.in_use = self._draining = False
        self._chunks.clear()
        if self.closed or not self.complete or not self.keep_alive or self.error is not None or self._pool.closed:
            self.close()
            return
        self._last_io = self._loop.time()
        self._pool.put(self)
        self._arm(self._last_io + KEEPALIVE_S)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._pool.forget(self)
            self.transport.close()

    def _fail(self, error: BaseException) -> None:
        if not self.complete and self.error is None:
            self.error = error
        self.close()
        self._wake()

    def _arm(self, when: float) -> None:
        if self._timer is not None:
            if self._timer_at <= when:
                return  # it fires earlier and re-arms itself for what is due then
            self._timer.cancel()
        if when != math.inf:
            self._timer_at = when
            self._timer = self._loop.call_at(when, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        if self.closed:
            return
        now = self._loop.time()
        waiting = self._waiter is not None and not self._waiter.done()
        if not self.in_use:
            due = self._last_io + KEEPALIVE_S
        elif self.complete and not self._draining:
            return  # read to the end; the timer is armed again when the connection is pooled
        else:
            due = min(self._deadline, (self._last_io if waiting else now) + self._idle_s)
        if now < due:
            self._arm(due)
        elif self.in_use and not self._draining:
            self._fail(TimeoutError("The node sent nothing in time."))
        else:
            self.in_use = self._draining = False
            self.close()  # idle too long in the pool, or a released response did not end in time


class Response:
    """A response whose headers arrived: `status`, `read()` (see _Connection.read), then `release()` (back to the
    pool when read to the end, after a short wait for its end otherwise) or `close()` (dropped unless read to the
    end)."""

    __slots__ = ("_conn", "read", "status")

    def __init__(self, conn: _Connection) -> None:
        self._conn: _Connection | None = conn
        self.status = conn.status
        self.read = conn.read

    def set_deadline(self, when: float) -> None:  # reads fail with TimeoutError from `when` on (the loop's clock)
        if self._conn is not None:
            self._conn.set_deadline(when)

    def release(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.release()

    def close(self) -> None:
        if self._conn is not None and not self._conn.complete:
            self._conn.close()  # left early: dropping the connection stops the node's generation
        self.release()  # read to the end: back to the pool


class NodeHttpClient:
    """Keep-alive connections to nodes, for one event loop; `async with` (or `close()`) closes them all."""

    def __init__(self) -> None:
        self._idle: dict[Origin, list[_Connection]] = {}
        self._open: set[_Connection] = set()
        self.closed = False

    async def __aenter__(self) -> "NodeHttpClient":
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def close(self) -> None:
        self.closed = True
        for conn in list(self._open):
            conn.close()
        self._idle.clear()

    def put(self, conn: _Connection) -> None:
        self._idle.setdefault(conn.origin, []).append(conn)

    def forget(self, conn: _Connection) -> None:
        self._open.discard(conn)
        idle = self._idle.get(conn.origin)
        if idle and conn in idle:
            idle.remove(conn)

    def _take(self, origin: Origin) -> _Connection | None:
        idle = self._idle.get(origin)
        while idle:
            conn = idle.pop()  # the most recently used: the least likely to have been closed by the node
            if not conn.closed and not conn.transport.is_closing():
                return conn
        return None

    async def post(
        self, origin: Origin, target: str, headers: dict[str, str], body: bytes, *, deadline: float, limits: Limits
    ) -> Response:
        """POST `body` to `target` at `origin`; the response once its headers arrived (before `deadline`, the
        loop's clock, which also bounds its reads until moved). `headers` must not name Content-Length."""
        request = _head(target, headers, len(body)) + body
        for attempt in range(2):
            conn = self._take(origin) if attempt == 0 else None
            pooled = conn is not None
            if conn is None:
                conn = await self._connect(origin, min(deadline, asyncio.get_running_loop().time() + limits.connect_s))
            conn.begin(limits, deadline=deadline)
            conn.transport.write(request)
            try:
                await conn.wait_headers()
            except _Stale:
                if pooled:
                    continue  # the node closed it while it was idle: once more on a fresh connection
                raise
            except BaseException:
                conn.close()  # a timeout, a cancelled caller: the request is abandoned with its connection
                raise
            return Response(conn)
        raise AssertionError("unreachable")  # the second attempt returns or raises

    async def _connect(self, origin: Origin, by: float) -> _Connection:
        if self.closed:
            raise ConnectError("The client is closed.")
        loop = asyncio.get_running_loop()
        tls: dict[str, Any] = {}
        if origin.scheme == "https":
            tls = {"ssl": _tls(), "server_hostname": origin.server_name or origin.address}
        async with asyncio.timeout_at(by):
            _transport, conn = await loop.create_connection(
                lambda: _Connection(self, origin, loop), origin.address, origin.port, **tls
            )
        self._open.add(conn)
        return conn
