"""The seed resource's wait for a worker's answer (`POST /api/v1/inference/` without `Prefer: respond-async`).

Under ASGI the wait is held in front of Django (inference/seed_asgi.py), not in a request thread: the view answers
202 at once and names the row in the scope's `WaitInFront`, Django's request ends (its thread with it), and the
ASGI layer awaits the row's end on the process's `FinishWatch`, then answers 201 with the finished record, or the
202 when INFERENCE_SYNC_WAIT_S runs out. Served without that layer (Django's test client, a WSGI server), the view
waits on a `FinishWatch` of its own (`inference_wait_finished`), its thread blocked meanwhile.

A `FinishWatch` checks every row waited for in the process with one query per tick, however many requests wait.
"""

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass

from asgiref.sync import async_to_sync, sync_to_async
from django.http import HttpRequest

from core.asgi import database_call
from inference.models import FINISHED, InferenceRequest

log = logging.getLogger(__name__)

# Where the ASGI layer puts its WaitInFront in the scope Django gets (and so in an ASGIRequest's `scope`).
SCOPE_KEY = "inference.wait_in_front"
TICK_S = 0.1


@dataclass
class WaitInFront:
    """Filled by the view that answers 202 to a caller who wants to wait: the row to wait for, and the request's
    idempotency `ref` (core/idempotency.py), whose stored response becomes the final answer."""

    request_id: int | None = None
    ref: str | None = None
    route: str | None = None  # the metrics' route label: the layer counts the answer it sends (core/metrics.py)


def wait_in_front(request: HttpRequest) -> WaitInFront | None:
    """The slot the ASGI layer left for this request, or None when nothing waits in front of Django."""
    scope = getattr(request, "scope", None)
    return scope.get(SCOPE_KEY) if isinstance(scope, dict) else None


def _finished_ids(ids: Iterable[int]) -> list[int]:
    return list(InferenceRequest.objects.filter(pk__in=ids, status__in=FINISHED).values_list("pk", flat=True))


FinishedIds = Callable[[list[int]], Awaitable[list[int]]]


class FinishWatch:
    """Rows waited for in one event loop, all checked by one query every TICK_S while any is waited for.

    `finished_ids` runs that query; by default through core.asgi.database_call (Django's sync thread, the
    connection handed back after each call), for a layer that has no request cycle.
    """

    def __init__(self, finished_ids: FinishedIds | None = None, *, tick_s: float = TICK_S) -> None:
        self._finished_ids: FinishedIds = finished_ids or database_call(_finished_ids)
        self._tick_s = tick_s
        self._waiters: dict[int, list[asyncio.Future[None]]] = {}
        self._poller: asyncio.Task[None] | None = None

    @classmethod
    def in_this_thread(cls, *, tick_s: float = TICK_S) -> "FinishWatch":
        """A watch whose checks run in the thread that runs its loop through async_to_sync, on that thread's
        connection (and transaction)."""
        return cls(sync_to_async(_finished_ids), tick_s=tick_s)

    async def wait(self, request_id: int, *, timeout: float) -> bool:
        """Whether the row finished within `timeout` seconds; nothing but this coroutine is held meanwhile."""
        finished: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(request_id, []).append(finished)
        if self._poller is None or self._poller.done():
            self._poller = asyncio.create_task(self._poll())
        try:
            await asyncio.wait_for(finished, timeout)
            return True
        except TimeoutError:
            return False
        finally:
            waiting = self._waiters.get(request_id, [])
            if finished in waiting:
                waiting.remove(finished)
            if not waiting:
                self._waiters.pop(request_id, None)

    async def _poll(self) -> None:
        while self._waiters:
            await asyncio.sleep(self._tick_s)
            if not self._waiters:
                return
            try:
                done = await self._finished_ids(list(self._waiters))
            except Exception:  # a database outage: the waits run out, or the next tick sees the rows
                log.exception("checking waited-for inference requests failed")
                continue
            for request_id in done:
                for finished in self._waiters.pop(request_id, []):
                    if not finished.done():
                        finished.set_result(None)


def inference_wait_finished(*, req: InferenceRequest, timeout: float) -> InferenceRequest:
    """The row once finished, or as it is when `timeout` passes: for a view served without the ASGI layer in front
    (the test client, WSGI), whose thread waits."""
    if not req.is_finished and async_to_sync(FinishWatch.in_this_thread().wait)(req.pk, timeout=timeout):
        req.refresh_from_db()
    return req
