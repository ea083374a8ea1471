"""core/redis_mux.py: one pipelined connection per URL and loop, against the real Redis and, where Redis cannot be
made to misbehave, a raw asyncio server started by the test."""

import asyncio

import pytest
import redis
from django.conf import settings

from core.redis_mux import RedisMux, redis_mux


def _url() -> str:
    return settings.KEY_LIMITS_REDIS_URL


def test_replies_come_back_to_their_callers_in_any_interleaving() -> None:
    async def run() -> list[tuple[int, bytes | None]]:
        mux = redis_mux(_url(), timeout_s=2)
        await mux.execute("DEL", "gm:test:mux")

        async def one(i: int) -> tuple[int, bytes | None]:
            await mux.execute("HSET", "gm:test:mux", str(i), f"v{i}")
            return i, await mux.execute("HGET", "gm:test:mux", str(i))

        return await asyncio.gather(*(one(i) for i in range(200)))

    for i, value in asyncio.run(run()):
        assert value == f"v{i}".encode()


def test_the_url_selects_its_database() -> None:
    base = _url().rsplit("/", 1)[0]

    async def run() -> None:
        await redis_mux(f"{base}/3", timeout_s=2).execute("SET", "gm:test:db", "three")

    asyncio.run(run())
    other = redis.Redis.from_url(f"{base}/3")
    assert other.get("gm:test:db") == b"three"
    assert redis.Redis.from_url(f"{base}/4").get("gm:test:db") is None
    other.delete("gm:test:db")


def test_an_error_reply_raises_redis_pys_error_and_the_connection_goes_on() -> None:
    async def run() -> tuple[type, bytes]:
        mux = redis_mux(_url(), timeout_s=2)
        try:
            await mux.execute("EVALSHA", "0" * 40, 0)
        except redis.RedisError as exc:
            error = type(exc)
        return error, await mux.execute("PING")

    error, pong = asyncio.run(run())
    assert error is redis.exceptions.NoScriptError
    assert pong == b"PONG"


def test_commands_sent_together_are_not_split_by_another_callers() -> None:
    """A MULTI/EXEC of execute_many is one block on the wire, whatever else the loop sends meanwhile."""

    async def run() -> list:
        mux = redis_mux(_url(), timeout_s=2)
        await mux.execute("DEL", "gm:test:tx")
        block = mux.execute_many([("MULTI",), ("INCRBY", "gm:test:tx", 5), ("EXPIRE", "gm:test:tx", 60), ("EXEC",)])
        others = [mux.execute("INCR", "gm:test:other") for _ in range(50)]
        replies, *_ = await asyncio.gather(block, *others)
        return replies

    replies = asyncio.run(run())
    assert replies[0] == b"OK"
    assert replies[3] == [5, 1]  # EXEC's replies: INCRBY's and EXPIRE's


async def _server(handler) -> tuple[asyncio.Server, int]:  # type: ignore[no-untyped-def]
    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


def test_a_command_not_answered_in_time_fails_and_the_next_one_reconnects() -> None:
    connections: list[int] = []

    async def run() -> tuple[type, bytes]:
        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            connections.append(1)
            first = len(connections) == 1
            while data := await reader.read(1024):
                if not first:  # the second connection answers PING
                    writer.write(b"+PONG\r\n" * data.count(b"PING"))
            writer.close()

        server, port = await _server(handler)
        mux = RedisMux(f"redis://127.0.0.1:{port}", timeout_s=0.2)
        try:
            await mux.execute("PING")
        except redis.RedisError as exc:
            error = type(exc)
        pong = await mux.execute("PING")
        mux.close()
        server.close()
        return error, pong

    error, pong = asyncio.run(run())
    assert error is redis.TimeoutError
    assert pong == b"PONG"
    assert len(connections) == 2


def test_a_dropped_connection_fails_what_was_waiting_and_the_next_command_reconnects() -> None:
    async def run() -> tuple[list, bytes]:
        served = 0

        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            nonlocal served
            served += 1
            if served == 1:
                await reader.read(1024)
                writer.close()  # drops the first connection with its commands unanswered
                return
            while data := await reader.read(1024):
                writer.write(b"+PONG\r\n" * data.count(b"PING"))
            writer.close()

        server, port = await _server(handler)
        mux = RedisMux(f"redis://127.0.0.1:{port}", timeout_s=2)
        first = await asyncio.gather(*(mux.execute("PING") for _ in range(3)), return_exceptions=True)
        pong = await mux.execute("PING")
        mux.close()
        server.close()
        return [type(r) for r in first], pong

    errors, pong = asyncio.run(run())
    assert errors == [redis.ConnectionError] * 3
    assert pong == b"PONG"


def test_a_redis_that_cannot_be_reached_is_a_connection_error() -> None:
    async def run() -> None:
        await RedisMux("redis://127.0.0.1:1/0", timeout_s=1).execute("PING")

    with pytest.raises(redis.ConnectionError):
        asyncio.run(run())


def test_a_server_that_does_not_speak_resp_is_a_connection_error_naming_it() -> None:
    async def run() -> redis.RedisError:
        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.read(1024)
            writer.write(b"HTTP/1.1 400 Bad Request\r\n\r\n")  # something else listens on the port
            await reader.read(1024)
            writer.close()

        server, port = await _server(handler)
        mux = RedisMux(f"redis://127.0.0.1:{port}", timeout_s=5)
        try:
            await asyncio.wait_for(mux.execute("PING"), 2)
        except redis.RedisError as exc:
            error = exc
        mux.close()
        server.close()
        return error

    error = asyncio.run(run())
    assert type(error) is redis.ConnectionError
    assert "not a reply" in str(error)


def test_a_refused_password_is_an_error_and_its_connection_is_closed_not_kept() -> None:
    async def run() -> tuple[type, bool]:
        closed = asyncio.Event()

        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.read(1024)  # the AUTH
            writer.write(b"-WRONGPASS invalid username-password pair\r\n")
            await writer.drain()
            if await reader.read(1024) == b"":
                closed.set()
            writer.close()

        server, port = await _server(handler)
        mux = RedisMux(f"redis://:wrong@127.0.0.1:{port}/0", timeout_s=2)
        try:
            await mux.execute("PING")
        except redis.RedisError as exc:
            error = type(exc)
        await asyncio.wait_for(closed.wait(), 2)
        server.close()
        return error, mux.connection is None

    error, forgotten = asyncio.run(run())
    assert issubclass(error, redis.ResponseError)
    assert forgotten
