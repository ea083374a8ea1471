"""Keep-alive comments while a stream waits for its first chunk (API.md §11 "Streams"; docs/API.md §9).

`until_first` waits for the relay's first chunk, yielding `protocol.KEEP_ALIVE` every `interval_s()` meanwhile
(failovers included), then that chunk, and stops: the caller reads the rest from the relay itself, so nothing is
added per chunk.
"""

import asyncio
import contextlib
from collections.abc import AsyncGenerator
from typing import TypeVar

from django.conf import settings

from inference.v1.protocol import KEEP_ALIVE, KEEP_ALIVE_INTERVAL_S

T = TypeVar("T")


def interval_s() -> float:
    """Seconds between keep-alives: INFERENCE_KEEPALIVE_S, never above the contract's 10 s."""
    return min(settings.INFERENCE_KEEPALIVE_S, KEEP_ALIVE_INTERVAL_S)


async def _next(chunks: AsyncGenerator[T, None]) -> T:
    return await anext(chunks)


async def until_first(chunks: AsyncGenerator[T, None]) -> AsyncGenerator[T | bytes, None]:
    """KEEP_ALIVE every `interval_s()` until `chunks` yields its first item, then that item (nothing if `chunks`
    ends first). Closed while it waits (the caller went away), it stops `chunks` where it is; closing `chunks`
    stays the caller's."""
    first = asyncio.ensure_future(_next(chunks))
    try:
        while not (await asyncio.wait({first}, timeout=interval_s()))[0]:
            yield KEEP_ALIVE
    finally:
        if not first.done():
            first.cancel()
            with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration):
                await first
    try:
        item = first.result()
    except StopAsyncIteration:
        return
    yield item
