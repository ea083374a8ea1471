"""Requests relayed by the web process itself (streams and /v1/): the relay engine plus finishing the row.

`relay_and_finish` is an async generator independent of Django's request object: give it an `Opened` request
(row written, hold placed) and it yields what happens, finishing the row (settle or release) exactly once, also
when the consumer stops early because the client went away (the upstream request is then closed).
"""

import asyncio
from collections.abc import AsyncIterator
from contextlib import aclosing
from dataclasses import dataclass

from asgiref.sync import sync_to_async

from inference import relay, services
from inference.models import InferenceRequest
from inference.node_client import NodeCallError
from inference.relay import Delivery, Usage
from inference.services import Opened


@dataclass
class Finished:
    """The row as saved, and the usage billed (None when nothing was relayed)."""

    request: InferenceRequest
    usage: Usage | None
    error: NodeCallError | None


async def relay_and_finish(opened: Opened) -> AsyncIterator[dict | Finished]:
    """Yield the node's chunk dicts as they arrive (usage-only chunks are kept back), then one `Finished`."""
    delivery = Delivery()
    finished = False
    attempt = opened.request.attempts
    try:
        async with aclosing(
            relay.relay_stream(candidates=opened.candidates, body=opened.body, delivery=delivery)
        ) as chunks:
            async for chunk in chunks:
                if chunk.get("choices"):
                    yield chunk
        req = await sync_to_async(services.inference_finish)(
            req=opened.request, attempt=attempt, delivery=delivery, prompt=opened.prompt
        )
        finished = True
        usage = relay.meter(delivery, prompt=opened.prompt, max_tokens=opened.request.max_tokens)
        yield Finished(request=req or opened.request, usage=usage if delivery.started else None, error=delivery.error)
    finally:
        if not finished:
            # The consumer stopped (client disconnect, cancellation): bill what was delivered, release the rest.
            delivery.client_gone = True
            await asyncio.shield(
                sync_to_async(services.inference_finish)(
                    req=opened.request, attempt=attempt, delivery=delivery, prompt=opened.prompt
                )
            )
