"""One pipelined Redis connection per URL and event loop, for the commands of the /v1 hot path (a key's admission,
the usage journal's appends, a session's node).

Redis answers the commands of one connection in the order they were sent, so every coroutine of a loop can share
one connection: a command is queued with the future its reply settles, the commands queued while the loop runs
one step go out in one write, and the replies are parsed by hiredis (C) as they arrive. That is what redis-py's
asyncio client does per command (a connection taken from a pool under a lock, a timeout context, its own writes
and reads), at a fraction of the CPU: under load, a thousand admissions and appends share a few round trips.

Errors are redis-py's (`redis.ConnectionError`, `redis.TimeoutError`, `redis.ResponseError` and its
`NoScriptError`), so callers keep one `except redis.RedisError` fallback. A command still unanswered `timeout_s`
after it was sent fails with every command behind it (the connection is dropped); the next command reconnects.
Blocking commands (BLPOP, XREAD BLOCK) do not belong here: they would hold up everyone's replies.

    mux = redis_mux(url, timeout_s=2)
    count = await mux.execute("INCR", "gm:some:counter")
    added, _ = await mux.execute_many([("INCRBY", name, 5), ("EXPIRE", name, 120)])  # sent together, in order
"""

import asyncio
import collections
import ssl
import weakref
from collections.abc import Sequence
from typing import Any

import hiredis
import redis
from redis.connection import SSLConnection, parse_url

from core.loop_resources import close_with_loop

Command = Sequence[Any]


def _reply_error(message: str) -> redis.ResponseError:
    if message.startswith("NOSCRIPT"):
        return redis.exceptions.NoScriptError(message)
    return redis.ResponseError(message)


class _Connection(asyncio.Protocol):
    """A connected socket: what was sent and not yet answered, in order, each with its future and when it went."""

    def __init__(self, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        self.reader = hiredis.Reader(replyError=_reply_error)
        self.pending: collections.deque[tuple[asyncio.Future[Any], float]] = collections.deque()
        self.outgoing: list[bytes] = []
        self.transport: asyncio.Transport | None = None
        self.lost = False
        self.loop = asyncio.get_running_loop()
        self._timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # a stream transport: create_connection's

    def send(self, commands: Sequence[Command]) -> list[asyncio.Future[Any]]:
        """Queue the commands (written together at the end of this loop step) and return their futures."""
        now = self.loop.time()
        futures = []
        if not self.outgoing:
            self.loop.call_soon(self._flush)
        for command in commands:
            self.outgoing.append(hiredis.pack_command(tuple(command)))
            future = self.loop.create_future()
            self.pending.append((future, now))
            futures.append(future)
        if self._timer is None:
            self._timer = self.loop.call_at(now + self.timeout_s, self._check_timeout)
        return futures

    def _flush(self) -> None:
        if self.outgoing and self.transport is not None and not self.lost:
            data, self.outgoing = b"".join(self.outgoing), []
            self.transport.write(data)

    def data_received(self, data: bytes) -> None:
        self.reader.feed(data)
        pending = self.pending
        while True:
            try:
                reply = self.reader.gets()
            except hiredis.ProtocolError as exc:  # not RESP: nothing after it can be trusted
                self._fail(redis.ConnectionError(f"Redis sent what is not a reply: {exc}"))
                return
            if reply is False:
                return
            if not pending:  # a reply nobody asked for: the stream is out of step, drop the connection
                self._fail(redis.ConnectionError("Redis sent a reply to no command"))
                return
            future, _ = pending.popleft()
            if future.done():
                continue  # its caller is gone; the reply is consumed all the same
            if isinstance(reply, redis.ResponseError):
                future.set_exception(reply)
                future.exception()  # retrieved: no warning if its caller is gone
            else:
                future.set_result(reply)

    def _check_timeout(self) -> None:
        self._timer = None
        if not self.pending or self.lost:
            return
        due = self.pending[0][1] + self.timeout_s
        if self.loop.time() >= due:
            self._fail(redis.TimeoutError("Timeout reading from Redis"))
        else:
            self._timer = self.loop.call_at(due, self._check_timeout)

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(redis.ConnectionError(f"Connection to Redis lost{f': {exc}' if exc else ''}"))

    def _fail(self, error: redis.RedisError) -> None:
        self.lost = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        while self.pending:
            future, _ = self.pending.popleft()
            if not future.done():
                future.set_exception(error)
                future.exception()
        if self.transport is not None:
            self.transport.abort()

    def close(self) -> None:
        self.lost = True
        if self.transport is not None:
            self.transport.close()


class RedisMux:
    """The shared connection to one Redis (by URL): `execute`, `execute_many`."""

    def __init__(self, url: str, *, timeout_s: float) -> None:
        self.options = parse_url(url)
        self.timeout_s = timeout_s
        self.connection: _Connection | None = None
        self._connecting: asyncio.Future[_Connection] | None = None

    async def execute(self, *command: Any) -> Any:
        """One command's reply (bytes, int, list, None...)."""
        connection = self.connection
        if connection is None or connection.lost:
            connection = await self._connected()
        return await connection.send((command,))[0]

    async def execute_many(self, commands: Sequence[Command]) -> list[Any]:
        """Several commands sent back to back (no other coroutine's command between them: MULTI/EXEC may be among
        them); their replies in order. The first error is raised, after every reply has arrived."""
        connection = self.connection
        if connection is None or connection.lost:
            connection = await self._connected()
        return await _replies(connection, commands)

    async def _connected(self) -> _Connection:
        if self._connecting is None:
            self._connecting = asyncio.ensure_future(self._connect())
        try:
            return await asyncio.shield(self._connecting)
        finally:
            if self._connecting is not None and self._connecting.done():
                self._connecting = None

    async def _connect(self) -> _Connection:
        options, loop = self.options, asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self.timeout_s):
                if "path" in options:
                    _, connection = await loop.create_unix_connection(
                        lambda: _Connection(self.timeout_s), options["path"]
                    )
                else:
                    tls = ssl.create_default_context() if options.get("connection_class") is SSLConnection else None
                    _, connection = await loop.create_connection(
                        lambda: _Connection(self.timeout_s), options["host"], options.get("port", 6379), ssl=tls
                    )
                try:
                    await self._hello(connection)
                except BaseException:
                    connection.close()  # refused (a wrong password), timed out or cancelled: not left open
                    raise
        except TimeoutError as exc:
            raise redis.TimeoutError("Timeout connecting to Redis") from exc
        except OSError as exc:
            raise redis.ConnectionError(f"Error connecting to Redis: {exc}") from exc
        self.connection = connection
        return connection

    async def _hello(self, connection: _Connection) -> None:
        """AUTH and SELECT, as the URL says."""
        options = self.options
        commands: list[Command] = []
        if options.get("password"):
            user = options.get("username")
            commands.append(("AUTH", user, options["password"]) if user else ("AUTH", options["password"]))
        if options.get("db"):
            commands.append(("SELECT", options["db"]))
        if commands:
            await _replies(connection, commands)

    def close(self) -> None:
        if self.connection is not None:
            self.connection.close()
            self.connection = None


async def _replies(connection: _Connection, commands: Sequence[Command]) -> list[Any]:
    """Send the commands back to back; their replies in order, the first error raised once all have arrived."""
    futures = connection.send(commands)
    await asyncio.wait(futures)
    return [future.result() for future in futures]


_muxes: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[tuple[str, float], RedisMux]]" = (
    weakref.WeakKeyDictionary()
)


def _close_all(muxes: dict[tuple[str, float], RedisMux]) -> None:
    for mux in muxes.values():
        mux.close()


def redis_mux(url: str, *, timeout_s: float) -> RedisMux:
    """The running loop's shared connection to `url` (commands unanswered after `timeout_s` fail); closed when the
    loop shuts down."""
    loop = asyncio.get_running_loop()
    muxes = _muxes.get(loop)
    if muxes is None:
        muxes = _muxes[loop] = {}
        close_with_loop(lambda: _close_all(muxes))
    mux = muxes.get((url, timeout_s))
    if mux is None:
        mux = muxes[(url, timeout_s)] = RedisMux(url, timeout_s=timeout_s)
    return mux
