"""The one /v1 pipeline: route → reserve → relay → record → teach routing, each step once. Chat, and through the
web door `/v1/completions` and `/v1/embeddings`: the request's `Endpoint` (v1/protocol.py) is what varies.

Both doors run it: the lean ASGI path (inference/v1/asgi.py) and the Django view (inference/v1/views.py), which
authenticate the caller and admit it under its key's limits first, each in its own way. What differs between them
is a strategy of a step, chosen per door (`lean` or `web` below), not a second code path:

| step | lean (PostgreSQL + journal) | web (the Django view; SQLite, Idempotency-Key, x402, plans) |
|---|---|---|
| route | cached per process, by this process's load (v1/routes.py) | routing.route, the caller's private models too |
| reserve | from a lease (v1/reserve.py LeaseReserve, v1/leases.py) | a hold of its own, with its row (HoldReserve) |
| record | a usage entry in the Redis journal (v1/record.py) | the row's UPDATE and the settle (RowRecord) |

Relaying (`complete`, `events`) and teaching routing (inference/routing_lessons.py, from the record step) are the
same for both. Every response and chunk carries our id, `chatcmpl-<the row's request_key>`, minted in `open`.
"""

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from contextlib import aclosing
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any, Protocol

from django.utils import timezone

from clients.key_limit_types import KeyLimits
from inference import metering, relay, services
from inference.choices import InferenceEndpoint
from inference.metering import Delivery, PromptSize, Usage
from inference.routing import Candidate
from inference.v1 import keep_alive
from inference.v1.params import hold_max_tokens
from inference.v1.prompt_parts import has_parts, prompt_size
from inference.v1.protocol import (
    ChatRequest,
    OurIdFrames,
    error_chunk,
    relay_failure,
    response_id,
    sse,
    usage_chunk,
)


@dataclass
class Caller:
    """Who asks, as its door authenticated and admitted it."""

    client_id: int
    limits: KeyLimits | None = None  # None: a session or a keyless payer
    covered: bool = False  # within the client's plan's daily quota (the web door's plans)
    ref: str | None = None  # the logical request (an Idempotency-Key): derives the row's key

    @property
    def key_id(self) -> int | None:
        return None if self.limits is None else self.limits.key_id


@dataclass
class ChatCall:
    """One request going through the steps: what is asked, by whom, where it may go, what is reserved for it and
    what happened. `reservation` and `row` belong to the strategies that made them."""

    request: ChatRequest
    caller: Caller
    key: str  # the row's request_key
    candidates: list[Candidate]
    prompt: PromptSize
    need: Decimal  # the most the request can cost: what is reserved
    max_tokens: int  # the completion tokens held for, and the most billed (v1/params.hold_max_tokens)
    began: datetime = field(default_factory=timezone.now)
    delivery: Delivery = field(default_factory=Delivery)
    reservation: Any = None
    row: Any = None  # the InferenceRequest, where the record strategy keeps one
    cost: Decimal = Decimal(0)  # charged, once recorded
    recording: "asyncio.Future[None] | None" = None  # the record step, run once
    last: dict = field(default_factory=dict)  # the last chunk relayed

    @property
    def id(self) -> str:
        return response_id(self.key, self.request.endpoint.name)

    @property
    def model(self) -> str:
        """The model that answered (a fallback of `models` sends its own name: Candidate.model), else the one asked."""
        candidate = self.delivery.candidate
        return (candidate.model if candidate is not None else None) or self.request.model

    def usage(self) -> Usage:
        """The usage to show the caller (what was billed)."""
        return metering.meter(self.delivery, prompt=self.prompt, max_tokens=self.max_tokens)

    @property
    def charge(self) -> Decimal:
        """What the ledger charged the caller for this request, once recorded: `cost`, or 0 when the client's plan
        covered it (the platform paid the node; docs/API.md §9). The `cost` of the response's usage."""
        return Decimal(0) if self.caller.covered else self.cost


class Routes(Protocol):
    async def __call__(self, request: ChatRequest, caller: Caller) -> list[Candidate] | None:
        """Candidates for the request (its models, routing controls and session: v1/routes.py), best first; None
        hands the request to another door (raises a DomainError where none may)."""
        ...

    async def window(self, request: ChatRequest, candidates: list[Candidate]) -> int | None:
        """The largest context window of the candidates' models, None if unknown (sizes an omitted max_tokens)."""
        ...


class Reserve(Protocol):
    async def reserve(self, call: ChatCall) -> bool:
        """Set `call.reservation`; False (nothing reserved) hands the request to another door."""
        ...

    async def release(self, call: ChatCall) -> None:
        """The request is over (recorded, `call.cost` known, or abandoned): give back what it did not spend."""
        ...


class Record(Protocol):
    async def record(self, call: ChatCall) -> None:
        """Write the outcome and charge it (`call.cost`), count it, and teach routing (routing_lessons)."""
        ...


@dataclass(frozen=True)
class Finished:
    """The end of a stream, recorded: `relayed` is False when no chunk reached the caller."""

    relayed: bool
    error: Any  # the relay's NodeCallError, or None
    usage: Usage
    row: Any


@dataclass
class Pipeline:
    routes: Routes
    reserve: Reserve
    record: Record
    on_relay: Callable[[ChatCall], Any] | None = None  # a door's bookkeeping around relaying (load by node)

    async def open(self, request: ChatRequest, caller: Caller) -> ChatCall | None:
        """Route and reserve; None when a strategy hands the request to another door (nothing is held then)."""
        candidates = await self.routes(request, caller)
        if not candidates:
            return None
        window = await self.routes.window(request, candidates) if needs_window(request) else None
        prompt, max_tokens, need = sized(request, candidates, window)
        call = ChatCall(
            request=request,
            caller=caller,
            key=services.new_request_key(caller.ref),
            candidates=candidates,
            prompt=prompt,
            need=need,
            max_tokens=max_tokens,
        )
        if not await self.reserve.reserve(call):
            return None
        return call

    async def abandon(self, call: ChatCall) -> None:
        """A call opened and then refused by its door (its key's limits): nothing spent."""
        await self.reserve.release(call)

    async def _finish(self, call: ChatCall) -> None:
        """Record the call, once: a caller cancelled meanwhile (a client that left) does not cut the record short,
        and whoever comes next waits for the same one."""
        if call.recording is None:
            call.recording = asyncio.ensure_future(self.record.record(call))
        await asyncio.shield(call.recording)

    async def _end(self, call: ChatCall) -> None:
        try:
            await self._finish(call)
        finally:
            await self.reserve.release(call)

    async def complete(self, call: ChatCall) -> dict:
        """A non-stream answer with our id, the model asked for and the billed usage; raises the DomainError of a
        request nothing relayed."""
        try:
            endpoint = call.request.endpoint
            payload = await self._relaying(
                call, endpoint.complete(candidates=call.candidates, body=call.request.body, delivery=call.delivery)
            )
            await self._finish(call)
        finally:
            await self.reserve.release(call)
        if payload is None:
            raise relay_failure(call.delivery)
        payload["id"] = call.id
        payload["model"] = call.model
        payload["usage"] = call.request.endpoint.usage(call.usage(), cost=call.charge)
        return payload

    async def _relaying(self, call: ChatCall, work: Awaitable[Any]) -> Any:
        if self.on_relay is None:
            return await work
        done = self.on_relay(call)
        try:
            return await work
        finally:
            done()

    async def events(self, call: ChatCall) -> AsyncGenerator[bytes | Finished, None]:
        """The stream: `: keep-alive` comments until the first chunk (v1/keep_alive.py), each node chunk with
        choices as one SSE frame (our id in it), then, once the request is recorded, one `Finished`. Closed early
        (the caller went away), it records what was delivered as such and closes the node's stream; either way the
        reservation's rest is given back."""
        done = self.on_relay(call) if self.on_relay is not None else None
        try:
            chunks = relay.relay_stream(
                candidates=call.candidates,
                body=call.request.body,
                delivery=call.delivery,
                path=call.request.endpoint.path,
            )
            frames = OurIdFrames(call.id)
            async with aclosing(chunks), aclosing(keep_alive.until_first(chunks)) as head:
                sources: tuple[AsyncIterator[bytes | tuple[dict, bytes]], ...] = (head, chunks)
                for source in sources:  # the keep-alives and the first chunk, then the rest
                    async for item in source:
                        if isinstance(item, bytes):  # a keep-alive comment
                            yield item
                            continue
                        chunk, payload = item
                        if not chunk.get("choices"):
                            continue  # the node's usage chunk: the door sends ours
                        call.last = chunk
                        yield frames.frame(chunk, payload)
            if done is not None:
                done()
                done = None
            await self._finish(call)
            yield Finished(relayed=bool(call.last), error=call.delivery.error, usage=call.usage(), row=call.row)
        finally:
            if done is not None:
                done()
            if call.recording is None:
                call.delivery.client_gone = True
            await asyncio.shield(self._end(call))


def needs_window(request: ChatRequest) -> bool:
    """Whether sizing the request needs its models' context window: a chat with max_tokens omitted, or non-text
    parts (the other operations size their prompt from the body alone: Endpoint.prompt_of)."""
    chat = request.endpoint.name == InferenceEndpoint.CHAT
    return chat and (request.requested_max_tokens is None or has_parts(request.body))


def sized(request: ChatRequest, candidates: list[Candidate], window: int | None) -> tuple[PromptSize, int, Decimal]:
    """The prompt's size (image and audio parts counted), the completion tokens held for, and the hold: the most
    the request can cost on any candidate."""
    if request.endpoint.name != InferenceEndpoint.CHAT:
        prompt, max_tokens = request.endpoint.prompt_of(request.body), request.requested_max_tokens or 0
        return prompt, max_tokens, metering.max_cost(prompt=prompt, max_tokens=max_tokens, candidates=candidates)
    prompt = prompt_size(request.body, context_window=window)
    max_tokens = hold_max_tokens(
        requested=request.requested_max_tokens, context_window=window, prompt_tokens=prompt.estimate
    )
    return prompt, max_tokens, metering.max_cost(prompt=prompt, max_tokens=max_tokens, candidates=candidates)


def stream_end(call: ChatCall, finished: Finished) -> bytes:
    """What ends a stream whose response has begun (200 sent), on both doors: the usage chunk when asked for, then
    `[DONE]`, or, for a node that broke mid-way or a request nothing relayed after a keep-alive, the error chunk
    and no `[DONE]` (API.md §11 "Streams")."""
    head = b""
    if call.request.include_usage:
        head = sse(
            usage_chunk(
                call.last,
                model=call.model,
                usage=finished.usage,
                response_id=call.id,
                cost=call.charge,
                object_name=call.request.endpoint.chunk_object,
            )
        )
    if finished.relayed and finished.error is None:
        return head + sse("[DONE]")
    if finished.relayed:
        message, code, status = finished.error.detail, finished.error.code, 502
    else:
        failure = relay_failure(call.delivery)
        message, code, status = failure.detail, failure.code, failure.status
    end = error_chunk(
        completion_id=call.id,
        model=call.model,
        message=message,
        code=code,
        status=status,
        object_name=call.request.endpoint.chunk_object,
    )
    return head + sse(end)
