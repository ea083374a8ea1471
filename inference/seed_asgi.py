"""`POST /api/v1/inference/`'s wait for the answer, held in front of Django (config/asgi.py; inference/waits.py).

Django gets the request with a `WaitInFront` in its scope. When the view answers 202 to a caller who wants to wait
(no `Prefer: respond-async`), it names the row there; its response is held back, Django's request ends, and this
layer awaits the row on the process's FinishWatch: no thread is held and no query is made per waiting request.
Then it answers 201 with the finished record (stored for the request's Idempotency-Key too, so a replay gets it),
or sends Django's 202 as it was once INFERENCE_SYNC_WAIT_S has passed, or nothing if the client went away.
Every other request, and every other answer, passes through untouched.
"""

import asyncio
import contextlib
import logging
import time
from collections.abc import Mapping
from typing import Any

from django.conf import settings
from rest_framework.renderers import JSONRenderer

from core import metrics
from core.asgi import ASGIApp, Receive, Scope, Send, database_call
from core.idempotency import idempotency_answer_replace
from inference.models import InferenceRequest
from inference.serializers import InferenceOut
from inference.waits import SCOPE_KEY, FinishWatch, WaitInFront

log = logging.getLogger(__name__)

PATH = "/api/v1/inference/"
CLIENT_GONE = 499  # the status counted for a caller that left before its answer (nginx's "client closed request")
Message = Mapping[str, Any]


def _answer_finished(request_id: int, ref: str | None) -> bytes:
    """The finished record as the view renders it, stored as the answer to the request's Idempotency-Key."""
    data = InferenceOut(InferenceRequest.objects.get(pk=request_id)).data
    if ref is not None:
        idempotency_answer_replace(ref=ref, status_code=201, body=data)
    return JSONRenderer().render(data)


answer_finished = database_call(_answer_finished)


class SeedAnswerWait:
    """ASGI middleware: the seed resource's synchronous ask waits here, everything else goes to `app` as it is."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.watch = FinishWatch()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not (scope["type"] == "http" and scope["path"] == PATH and scope["method"] == "POST"):
            await self.app(scope, receive, send)
            return
        slot = WaitInFront()
        held: list[Message] = []
        sent = 0  # the status Django's answer went out with, when it was not held
        started = time.perf_counter()

        async def holding(message: Message) -> None:
            nonlocal sent
            if held or (message["type"] == "http.response.start" and message["status"] == 202 and slot.request_id):
                held.append(message)  # the 202 of a request to wait for: sent, or replaced, after the wait
            else:
                if message["type"] == "http.response.start":
                    sent = message["status"]
                await send(message)

        await self.app({**scope, SCOPE_KEY: slot}, receive, holding)
        if held and slot.request_id is not None:
            sent = await self._wait_then_answer(slot, held, receive, send)
        if slot.route is not None:  # the view left counting this answer to us (core/metrics.py)
            metrics.observe_http(route=slot.route, method="POST", status=sent or CLIENT_GONE, started=started)

    async def _wait_then_answer(self, slot: WaitInFront, held: list[Message], receive: Receive, send: Send) -> int:
        """Send the answer once the row is finished (201) or the wait is over (the held 202); its status, 0 when
        the client went away first."""
        assert slot.request_id is not None
        waiting = asyncio.create_task(self.watch.wait(slot.request_id, timeout=settings.INFERENCE_SYNC_WAIT_S))
        gone = asyncio.create_task(_disconnected(receive))
        try:
            await asyncio.wait({waiting, gone}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            gone.cancel()
        if not waiting.done():
            waiting.cancel()
            return 0  # the client went away: its Idempotency-Key keeps the 202
        if waiting.result():
            try:
                body = await answer_finished(slot.request_id, slot.ref)
            except Exception:  # a database outage: the 202 (poll `GET {id}/`) is still a true answer
                log.exception("answering a finished inference request failed")
            else:
                held = [_with_body(held[0], 201, body), {"type": "http.response.body", "body": body}]
        with contextlib.suppress(OSError):  # the client is gone (uvicorn raises ClientDisconnected, an OSError)
            for message in held:
                await send(message)
        return int(held[0]["status"])


async def _disconnected(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


def _with_body(start: Message, status: int, body: bytes) -> Message:
    """Django's response start with another status and length; its other headers (request id, limits) kept."""
    headers = [(k, v) for k, v in start["headers"] if k.lower() != b"content-length"]
    return {**start, "status": status, "headers": [*headers, (b"content-length", str(len(body)).encode())]}
