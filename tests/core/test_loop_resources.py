"""core/loop_resources.py: what a loop owns is closed when the loop shuts down, and not before."""

import asyncio
import gc

from core.loop_resources import close_with_loop
from core.redis_mux import redis_mux


def test_a_closer_runs_when_the_loop_shuts_down_and_not_when_collected_before() -> None:
    calls: list[str] = []

    async def main() -> list[str]:
        close_with_loop(lambda: calls.append("sync"))

        async def closing() -> None:
            calls.append("async")

        close_with_loop(closing)
        gc.collect()  # the registration is held until the loop finalizes it
        await asyncio.sleep(0)
        return list(calls)

    during = asyncio.run(main())

    assert during == []
    assert sorted(calls) == ["async", "sync"]


def test_the_loops_redis_connection_is_closed_with_the_loop(settings) -> None:  # type: ignore[no-untyped-def]
    async def main():  # type: ignore[no-untyped-def]
        mux = redis_mux(settings.KEY_LIMITS_REDIS_URL, timeout_s=2)
        await mux.execute("PING")
        return mux.connection

    connection = asyncio.run(main())

    assert connection is not None and connection.transport is not None
    assert connection.transport.is_closing()
