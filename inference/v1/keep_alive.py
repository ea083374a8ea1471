"""Keep-alive comments while a stream waits for its first chunk (API.md §11 "Streams"; docs/API.md §9).

`keeping_alive` wraps the relay's chunks: until the first one arrives it yields `protocol.KEEP_ALIVE` each
INFERENCE_KEEPALIVE_S (failovers included), then passes the chunks through as they come, adding nothing per chunk.
"""

import asyncio
import contextlib
from collections.abc import AsyncGenerator
from contextlib import aclosing
from typing import TypeVar

from inference.v1.protocol import KEEP_ALIVE

T = TypeVar("T")


async def _next(chunks: AsyncGenerator[T, None]) -> T:
    return await anext(chunks)


async def keeping_alive(chunks: AsyncGenerator[T, None], *, interval_s: float) -> AsyncGenerator[T | bytes, None]:
    """`chunks`, with KEEP_ALIVE before the first one every `interval_s` it keeps the caller waiting. Closing this
    closes `chunks` (a caller that went away closes the node's stream)."""
    async with aclosing(chunks):
        first = asyncio.ensure_future(_next(chunks))
        try:
            while not (await asyncio.wait({first}, timeout=interval_s))[0]:
                yield KEEP_ALIVE
        finally:
            if not first.done():  # closed or cancelled while waiting: stop the relay where it is
                first.cancel()
                with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration):
                    await first
        try:
            item = first.result()
        except StopAsyncIteration:
            return
        yield item
        async for item in chunks:
            yield item
