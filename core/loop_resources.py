"""What belongs to one event loop (a pooled connection, a shared client) and must be closed when the loop shuts down.

`asyncio.run` and uvicorn finalize a loop's async generators when it shuts down (`loop.shutdown_asyncgens`), so a
started generator registered with the loop, suspended in a `try` whose `finally` does the closing, runs that
closing then: short-lived loops (tests, a Celery task's `asyncio.run`) leak no sockets.
"""

import asyncio
import contextlib
from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import Any

# The generators, held until their loop finalizes them (a loop keeps only weak references: one collected earlier
# would run its closer then).
_kept: set[AsyncGenerator[None, None]] = set()


async def _closing(closer: Callable[[], Any]) -> AsyncGenerator[None, None]:
    try:
        yield
    finally:
        result = closer()
        if isinstance(result, Awaitable):
            await result


def close_with_loop(closer: Callable[[], Any]) -> None:
    """Call `closer` (a function, or one returning an awaitable) when the running loop shuts down."""
    asyncio.get_running_loop()  # only inside a running loop: its shutdown hook is what runs the closer
    generator: AsyncGenerator[None, None]

    def close_and_forget() -> Any:
        _kept.discard(generator)
        return closer()

    generator = _closing(close_and_forget)
    step = generator.__anext__()  # registers the generator with this loop's shutdown hook
    with contextlib.suppress(StopIteration):
        step.send(None)  # run it to its `yield` (nothing there awaits), so closing it runs the `finally`
    _kept.add(generator)
