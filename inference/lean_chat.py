"""`POST /v1/chat/completions`, the hot path, served beside Django (config/asgi.py).

Every request is authenticated, held, metered, settled and recorded, as on the Django path (openai_views.py),
but none of that costs a database round trip on the request path:
  - the API key and the model's route come from short per-process caches (inference/lean_lookups.py);
  - the hold is a reservation from a lease, money already held in the ledger for many requests
    (inference/leases.py);
  - the usage entry (row fields and cost) goes to a Redis journal *before* the client gets the end of its answer,
    and a Celery task applies it to PostgreSQL exactly once (inference/usage_journal.py, inference/usage.py).
    If Redis cannot take it, the entry is applied to PostgreSQL directly instead.

It serves the common case only; anything else goes to the Django view unchanged, which answers it (errors
included) in OpenAI's shape: a body it cannot parse or check, no or an unknown key, an `Idempotency-Key` (the
Django path stores responses for replay), a model with no live node, a client whose balance is too low for a
lease, a client with an active plan (plans/). On SQLite, or with no journal (USAGE_JOURNAL_URL empty) or
INFERENCE_LEAN_PATH off, Django serves all.
"""

import asyncio
import contextlib
import json
import logging
from collections import defaultdict
from contextlib import aclosing
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.utils import timezone

from clients import ledger
from clients.key_limits import KeyLimits, key_admit_async, key_record_spend_async
from core.asgi import (
    ASGIApp,
    LeanPath,
    Receive,
    Scope,
    Send,
    bearer,
    database_call,
    header,
)
from core.error_render import openai_body, openai_sse_error
from core.errors import DomainError
from core.parsers import MalformedJson, json_loads
from inference import lean_lookups, relay, services, usage, usage_journal
from inference.leases import Lease, LeaseBook
from inference.openai_protocol import (
    BadChatRequest,
    parse_chat_request,
    question_of,
    relay_failure,
    usage_chunk,
)
from inference.relay import Delivery, PromptSize, sse, sse_raw
from inference.routing import Candidate
from llm_models import services as node_services

log = logging.getLogger(__name__)

PATH = "/v1/chat/completions"
_JSON_HEADERS = [(b"content-type", b"application/json"), (b"x-content-type-options", b"nosniff")]
_SSE_HEADERS = [
    (b"content-type", b"text/event-stream"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
    (b"x-content-type-options", b"nosniff"),
]


def enabled() -> bool:
    return (
        settings.INFERENCE_LEAN_PATH
        and usage_journal.enabled()
        and settings.DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql"
    )


# --- Money: leases placed and closed through the ledger and the journal ---------------------------------------


def _place_hold(client_id: int, amount: Decimal, minimum: Decimal, key: str) -> Decimal:
    hold = ledger.hold_place(client_id=client_id, amount=amount, minimum=minimum, key=key, memo="inference lease (/v1)")
    return hold.amount


def _give_back_unspent(key: str, spent: Decimal) -> None:
    """A lease whose requests are over: all but what they spent back to the balance now (their usage, still in the
    journal, is charged from what stays held), or all of it if they spent nothing."""
    if spent > 0:
        ledger.hold_reduce(key=key, to=spent, memo="inference lease (/v1): unspent part")
    else:
        ledger.hold_release(key=key)


_place_hold_async = database_call(_place_hold)
_give_back_unspent_async = database_call(_give_back_unspent)
_apply_now_async = database_call(usage.apply)
_leases_open_async = database_call(usage.leases_open)
_record_failure_async = database_call(node_services.node_record_failure)


async def record(entry: dict[str, Any]) -> None:
    """Journal an entry; if Redis cannot take it, apply it to PostgreSQL now (slower, never lost)."""
    try:
        await usage_journal.append(entry)
    except Exception:  # whatever kept Redis from taking it, the entry must not be lost
        log.warning("usage journal unavailable: applying a %s entry to PostgreSQL directly", entry["t"], exc_info=True)
        await _apply_now_async([entry])


async def _close_lease(key: str, spent: Decimal) -> None:
    try:
        await _give_back_unspent_async(key, spent)
    except Exception:  # a database outage: the close entry below releases it once the journal is applied
        log.warning("giving back the unspent part of lease %s failed", key, exc_info=True)
    await record(usage.close_entry(key))


# --- Responses ----------------------------------------------------------------------------------------------------


async def _send_json(send: Send, status: int, body: bytes, extra: list[tuple[bytes, bytes]] | None = None) -> None:
    headers = [*_JSON_HEADERS, (b"content-length", str(len(body)).encode()), *(extra or [])]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _send_error(send: Send, error: DomainError, extra: list[tuple[bytes, bytes]] | None = None) -> None:
    """The Django view's answer for the same error (openai_views.openai_exception_handler)."""
    retry_after = getattr(error, "retry_after", None)
    headers = [*(extra or []), *((k.encode(), v.encode()) for k, v in getattr(error, "headers", {}).items())]
    if retry_after:
        headers.append((b"retry-after", str(retry_after).encode()))
    body = openai_body(error.status, message=error.detail, code=error.code, param=error.attr)
    await _send_json(send, error.status, json.dumps(body).encode(), headers)


async def _send_failure(send: Send, delivery: Delivery, extra: list[tuple[bytes, bytes]] | None = None) -> None:
    """Nothing was relayed: the Django view's answer for the same failure (openai_protocol.relay_failure)."""
    await _send_error(send, relay_failure(delivery), extra)


# --- The handler --------------------------------------------------------------------------------------------------


@dataclass
class _Call:
    """One request being served: who asks, what, where it may go, and the money reserved for it."""

    client_id: int
    body: dict
    candidates: list[Candidate]
    prompt: PromptSize
    need: Decimal  # reserved from `lease`: the most the request can cost
    lease: Lease
    limits: KeyLimits
    headers: list[tuple[bytes, bytes]]  # x-ratelimit-* of the key (API.md §12)
    began: datetime = field(default_factory=timezone.now)
    delivery: Delivery = field(default_factory=Delivery)

    @property
    def model(self) -> str:
        return self.body["model"]


class ChatCompletionsLeanPath(LeanPath):
    """ASGI middleware: `POST /v1/chat/completions` here in the common case, everything else to `app`."""

    path = PATH

    def __init__(self, app: ASGIApp) -> None:
        super().__init__(app)
        self.leases = LeaseBook(place=_place_hold_async, close=_close_lease)
        self.running: dict[int, int] = defaultdict(int)  # requests this process is relaying, by first-choice node
        self._background: set[asyncio.Task] = set()
        self._ticker: asyncio.Task | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
        else:
            await super().__call__(scope, receive, send)

    def wants(self, scope: Scope) -> bool:
        return enabled()

    async def serve(self, scope: Scope, raw: bytes, receive: Receive, send: Send) -> bool:
        """Answer the request; False (nothing sent, nothing held) when the Django view must answer it."""
        token = bearer(scope)
        if token is None or header(scope, b"idempotency-key") is not None:
            return False
        try:
            body, stream, include_usage = parse_chat_request(json_loads(raw))
        except (MalformedJson, BadChatRequest):
            return False
        limits = await lean_lookups.key_of(token)
        if limits is None:
            return False
        client_id = limits.client_id
        if await lean_lookups.on_a_plan(client_id):
            return False  # its plan's quota and cover are the Django path's (plans/; docs/API.md §9)
        candidates = await lean_lookups.route(body["model"])
        if not candidates:
            return False
        candidates = self._by_load(candidates)
        prompt = PromptSize.of(body)
        need = relay.max_cost(prompt=prompt, max_tokens=body["max_tokens"], candidates=candidates)
        lease = await self._reserve(client_id, need)
        if lease is None:
            return False
        self._start_ticker()
        try:
            admission = await key_admit_async(limits=limits, model=body["model"])  # no I/O for a key without limits
        except DomainError as refused:
            await self.leases.finish(lease, reserved=need, spent=Decimal(0))
            await _send_error(send, refused)
            return True
        call = _Call(
            client_id=client_id,
            body=body,
            candidates=candidates,
            prompt=prompt,
            need=need,
            lease=lease,
            limits=limits,
            headers=admission.as_asgi(),
        )
        spent = Decimal(0)
        first = candidates[0].node_id
        self.running[first] += 1
        try:
            if stream:
                spent = await self._stream(call, send, receive, include_usage=include_usage)
            else:
                spent = await self._complete(call, send)
        finally:
            self.running[first] -= 1
            await self.leases.finish(lease, reserved=need, spent=spent)
        return True

    async def _reserve(self, client_id: int, need: Decimal) -> Lease | None:
        """Reserve `need` from a lease; None when the client has too little (the Django view then answers 402).

        Money in another web process's lease comes back within INFERENCE_LEASE_IDLE_S of its last request there:
        if the client has leases open, wait that long once and try again, rather than refuse money it has."""
        try:
            return await self.leases.reserve(client_id, need)
        except ledger.InsufficientFunds:
            if not await _leases_open_async(client_id=client_id):
                return None
        await asyncio.sleep(settings.INFERENCE_LEASE_IDLE_S + 2 * self.leases.tick_s())
        try:
            return await self.leases.reserve(client_id, need)
        except ledger.InsufficientFunds:
            return None

    def _by_load(self, candidates: list[Candidate]) -> list[Candidate]:
        """The cached ranking, with what this process is relaying to each node added to its load."""
        if not any(self.running.get(c.node_id) for c in candidates):
            return candidates
        weight = settings.INFERENCE_WEIGHT_LOAD
        return sorted(candidates, key=lambda c: (c.score + weight * self.running.get(c.node_id, 0), c.node_id))

    async def _finish(self, call: _Call) -> tuple[Decimal, relay.Usage]:
        """Meter, price and journal the request (before its end reaches the client); learn from failures.
        Returns its cost and the usage to show."""
        delivery = call.delivery
        max_tokens = call.body["max_tokens"]
        fields = services.outcome(
            delivery=delivery, prompt=call.prompt, max_tokens=max_tokens, held_amount=call.need, now=timezone.now()
        )
        candidate = delivery.candidate
        entry = usage.use_entry(
            key=usage.new_request_key(),
            lease_key=call.lease.key,
            client_id=call.client_id,
            owner_id=candidate.owner_id if candidate else None,
            model=call.model,
            question_text=question_of(call.body),
            max_tokens=max_tokens,
            held=call.need,
            fields=fields,
            created_at=call.began,
            first_byte_ms=delivery.first_byte_ms,
            api_key_id=call.limits.key_id,
        )
        await record(entry)
        services.outcome_count(model=call.model, fields=fields)
        self._learn(call.model, delivery)
        if call.limits.tpm is not None:  # the minute's tokens, after the response (its cost: when journal is applied)
            tokens = fields.get("prompt_tokens", 0) + fields.get("completion_tokens", 0)
            self._in_background(key_record_spend_async(limits=call.limits, cost=Decimal(0), tokens=tokens))
        return fields["cost"], relay.meter(delivery, prompt=call.prompt, max_tokens=max_tokens)

    def _learn(self, model: str, delivery: Delivery) -> None:
        """Nodes that failed cool down now (in the background), and this process stops routing to them."""
        failed = [node_id for node_id, error in delivery.failures if error.node_fault]
        if delivery.error is not None and delivery.error.node_fault and delivery.candidate is not None:
            failed.append(delivery.candidate.node_id)
        if not failed:
            return
        lean_lookups.forget_route(model)
        for node_id in dict.fromkeys(failed):
            self._in_background(_record_failure_async(node_id=node_id))

    async def _complete(self, call: _Call, send: Send) -> Decimal:
        payload = await relay.relay_complete(candidates=call.candidates, body=call.body, delivery=call.delivery)
        cost, metered = await self._finish(call)
        if payload is None:
            await _send_failure(send, call.delivery, call.headers)
        else:
            payload["model"] = call.model
            payload["usage"] = metered.as_openai()
            await _send_json(send, 200, json.dumps(payload, separators=(",", ":")).encode(), call.headers)
        return cost

    async def _stream(self, call: _Call, send: Send, receive: Receive, *, include_usage: bool) -> Decimal:
        delivery = call.delivery
        last: dict = {}  # the last chunk relayed; empty until the first, which starts the response

        async def safe_send(message: dict) -> None:
            try:
                await send(message)
            except OSError:  # the client is gone (uvicorn raises ClientDisconnected, an OSError)
                delivery.client_gone = True
                raise asyncio.CancelledError from None

        async def pump() -> None:
            nonlocal last
            chunks = relay.relay_stream(candidates=call.candidates, body=call.body, delivery=delivery, raw=True)
            async with aclosing(chunks):
                async for chunk, payload in chunks:
                    if not chunk.get("choices"):
                        continue  # the node's usage chunk: ours is sent at the end
                    if not last:
                        headers = [*_SSE_HEADERS, *call.headers]
                        await safe_send({"type": "http.response.start", "status": 200, "headers": headers})
                    last = chunk
                    await safe_send({"type": "http.response.body", "body": sse_raw(payload), "more_body": True})

        async def disconnected() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass

        relaying = asyncio.create_task(pump())
        watching = asyncio.create_task(disconnected())
        try:
            await asyncio.wait({relaying, watching}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            watching.cancel()
            if not relaying.done():
                delivery.client_gone = True
                relaying.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await relaying  # a relay error other than cancellation is a bug: it propagates
        cost, metered = await self._finish(call)
        if delivery.client_gone:
            return cost
        if not last:
            await _send_failure(send, delivery, call.headers)
            return cost
        if delivery.error is not None:
            end = openai_sse_error(message=delivery.error.detail, code=delivery.error.code)
        else:
            tail = usage_chunk(last, model=call.model, usage=metered, fallback_id="chatcmpl-lean")
            end = (sse(tail) if include_usage else b"") + sse("[DONE]")
        with contextlib.suppress(OSError):
            await send({"type": "http.response.body", "body": end})
        return cost

    # --- Background work: lease expiry, node failures, shutdown ------------------------------------------------

    def _in_background(self, coroutine: Any) -> None:
        task = asyncio.create_task(coroutine)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def _start_ticker(self) -> None:
        if self._ticker is None or self._ticker.done():
            self._ticker = asyncio.create_task(self._tick())

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(self.leases.tick_s())
            try:
                await self.leases.retire_expired()
            except Exception:  # a Redis or database outage: try again next second
                log.exception("retiring expired leases failed")

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        """Django has no lifespan handling; on shutdown, hand back this process's leases."""
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                with contextlib.suppress(Exception):
                    await self.leases.retire_all()
                    if self._background:
                        await asyncio.wait(self._background, timeout=5)
                if self._ticker is not None:
                    self._ticker.cancel()
                await send({"type": "lifespan.shutdown.complete"})
                return
