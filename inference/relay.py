"""The relay engine: plain async functions that send one chat request to the best node, fail over while nothing has
been relayed, and meter what was delivered. They know nothing of Django requests or the database: callers (the
Celery task and the /v1 pipeline, inference/v1/pipeline.py) route, hold money before and settle after.

    delivery = Delivery()
    async for chunk in relay_stream(candidates=..., body=..., delivery=delivery):
        ...                                   # OpenAI `chat.completion.chunk` dicts, as the node sends them
    usage = meter(delivery, prompt=PromptSize.of(body), max_tokens=...)   # what to bill

Failover: a node that cannot be reached, times out, or answers an error status before the first chunk is relayed
is recorded in `delivery.failures` and the next candidate is tried (at most INFERENCE_MAX_ATTEMPTS). Once a chunk
has been relayed nothing is retried: a broken stream ends with `delivery.error` set.

Metering never bills more than was relayed: the node's `usage` is used when present and plausible, the completion
count is capped by `max_tokens` and by the UTF-8 bytes relayed (a token is at least one byte), the prompt count by
the bytes sent plus a template allowance; when `usage` is missing (or the stream broke) tokens are estimated as
characters / 4, rounded up, and `estimated` is set.
"""

import json
import math
import time
from collections.abc import AsyncGenerator, Callable
from contextlib import aclosing
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from typing import Literal, Protocol, overload

from django.conf import settings

from inference import node_client
from inference.completion import Completion
from inference.node_client import NodeCallError
from inference.node_http import NodeHttpClient
from inference.routing import Candidate

MILLION = Decimal(1_000_000)
Q6 = Decimal("0.000001")
# Tokens a chat template may add around each message, and around the whole prompt.
_TEMPLATE_TOKENS_PER_MESSAGE = 16
_TEMPLATE_TOKENS = 64
_UNKEPT_TEXT = frozenset({"reasoning_content", "reasoning", "refusal"})  # relayed text that is not the answer


class Assembler(Protocol):
    """Joins a stream's chunks into the one answer of a non-stream request (inference/completion.py)."""

    def add(self, chunk: dict) -> None: ...

    def payload(self, *, usage: dict | None) -> dict: ...


@dataclass
class Delivery:
    """What happened while relaying one request; filled in by the relay, read by metering and billing."""

    candidate: Candidate | None = None  # the node that answered (or was tried last)
    started: bool = False  # something was relayed: no failover any more
    pieces: list[str] = field(default_factory=list)  # answer text as relayed
    relayed_bytes: int = 0  # UTF-8 bytes of content, tool calls and reasoning relayed
    relayed_chars: int = 0
    usage: dict | None = None  # the node's `usage`, unverified
    finish_reason: str | None = None
    error: NodeCallError | None = None
    failures: list[tuple[int, NodeCallError]] = field(default_factory=list)  # nodes that failed before relaying
    began_at: float = 0.0
    first_byte_ms: int | None = None
    latency_ms: int | None = None
    client_gone: bool = False  # the caller stopped reading (client disconnected)

    @property
    def answer_text(self) -> str:
        return "".join(self.pieces)

    @property
    def ok(self) -> bool:
        return self.started and self.error is None and not self.client_gone

    def _begin(self, candidate: Candidate) -> None:
        self.candidate = candidate
        self.began_at = time.monotonic()

    def _elapsed_ms(self) -> int:
        return int((time.monotonic() - self.began_at) * 1000)

    def _relayed(self, text: str, *, answer: bool) -> None:
        if text:
            chars = len(text)
            self.relayed_bytes += chars if text.isascii() else len(text.encode())
            self.relayed_chars += chars
            if answer:
                self.pieces.append(text)

    def observe_chunk(self, chunk: dict) -> None:
        if isinstance(chunk.get("usage"), dict):
            self.usage = chunk["usage"]
        for choice in chunk.get("choices") or []:
            if not isinstance(choice, dict):
                continue
            delta = choice.get("delta") or {}
            if isinstance(delta, dict):
                self._observe_message(delta)
            if isinstance(choice.get("text"), str):  # a text completion's chunk (/v1/completions)
                self._relayed(choice["text"], answer=True)
            if choice.get("finish_reason"):
                self.finish_reason = str(choice["finish_reason"])

    def observe_completion(self, payload: dict) -> None:
        if isinstance(payload.get("usage"), dict):
            self.usage = payload["usage"]
        for choice in payload.get("choices") or []:
            if isinstance(choice, dict):
                self._observe_message(choice.get("message") or {})
                self.finish_reason = str(choice.get("finish_reason") or "") or None

    def _observe_message(self, message: dict) -> None:
        # The content is the answer; reasoning, refusals and tool calls are relayed (billed) but not kept.
        for key, value in message.items():
            if key == "content" or key in _UNKEPT_TEXT:
                if isinstance(value, str):
                    self._relayed(value, answer=key == "content")
            elif key == "tool_calls" and isinstance(value, list):
                for call in value:
                    function = call.get("function") if isinstance(call, dict) else None
                    if isinstance(function, dict):
                        self._relayed(str(function.get("name") or ""), answer=False)
                        self._relayed(str(function.get("arguments") or ""), answer=False)


@dataclass(frozen=True)
class PromptSize:
    """How big a prompt is, for estimating and capping its token count."""

    chars: int
    bytes: int
    messages: int

    @classmethod
    def of(cls, body: dict) -> "PromptSize":
        texts: list[str] = []
        messages = body.get("messages") or []
        for message in messages:
            content = message.get("content") if isinstance(message, dict) else None
            if isinstance(content, str):
                texts.append(content)
            elif isinstance(content, list):
                texts.extend(str(p.get("text", "")) for p in content if isinstance(p, dict))
            if isinstance(message, dict) and message.get("tool_calls"):
                texts.append(json.dumps(message["tool_calls"]))
        if body.get("tools"):
            texts.append(json.dumps(body["tools"]))
        text = "".join(texts)
        return cls(chars=len(text), bytes=len(text.encode()), messages=len(messages))

    @property
    def estimate(self) -> int:
        """Tokens to expect: characters / 4 plus the template's share."""
        return math.ceil(self.chars / 4) + 4 * self.messages

    @property
    def cap(self) -> int:
        """The most prompt tokens we believe a node: one per byte sent plus the template allowance."""
        return self.bytes + _TEMPLATE_TOKENS_PER_MESSAGE * self.messages + _TEMPLATE_TOKENS


@dataclass(frozen=True)
class Usage:
    prompt_tokens: int
    completion_tokens: int
    estimated: bool  # some count is our estimate, or the node's was capped
    cached_tokens: int | None = None  # the node's prompt_tokens_details.cached_tokens (at most prompt_tokens)
    reasoning_tokens: int | None = None  # the node's completion_tokens_details.reasoning_tokens (at most completion)

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def as_openai(self, *, cost: Decimal | None = None) -> dict:
        """OpenAI's `usage` object; the details only where the node reported them, and `cost` (USD, a JSON number)
        where given (API.md §11 "Usage")."""
        usage: dict = {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.total_tokens,
        }
        if self.cached_tokens is not None:
            usage["prompt_tokens_details"] = {"cached_tokens": self.cached_tokens}
        if self.reasoning_tokens is not None:
            usage["completion_tokens_details"] = {"reasoning_tokens": self.reasoning_tokens}
        if cost is not None:
            usage["cost"] = float(cost)
        return usage


def _count(usage: dict | None, key: str) -> int | None:
    value = (usage or {}).get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def _detail(usage: dict | None, section: str, key: str, *, most: int) -> int | None:
    """A count of the node's `usage[section][key]` (e.g. prompt_tokens_details.cached_tokens), at most `most`."""
    details = (usage or {}).get(section)
    value = _count(details if isinstance(details, dict) else None, key)
    return None if value is None else min(value, most)


def meter(delivery: Delivery, *, prompt: PromptSize, max_tokens: int) -> Usage:
    """Tokens to bill for what was relayed (see the module docstring)."""
    estimated = False
    completion = None if delivery.error else _count(delivery.usage, "completion_tokens")
    if completion is None:
        completion, estimated = math.ceil(delivery.relayed_chars / 4), True
    completion_cap = min(max_tokens, delivery.relayed_bytes)
    if completion > completion_cap:
        completion, estimated = completion_cap, True
    prompt_tokens = _count(delivery.usage, "prompt_tokens")
    if prompt_tokens is None:
        prompt_tokens, estimated = prompt.estimate, True
    if prompt_tokens > prompt.cap:
        prompt_tokens, estimated = prompt.cap, True
    return Usage(
        prompt_tokens=prompt_tokens,
        completion_tokens=completion,
        estimated=estimated,
        cached_tokens=_detail(delivery.usage, "prompt_tokens_details", "cached_tokens", most=prompt_tokens),
        reasoning_tokens=_detail(delivery.usage, "completion_tokens_details", "reasoning_tokens", most=completion),
    )


def price(
    *, prompt_tokens: int, completion_tokens: int, input_per_million: Decimal, output_per_million: Decimal
) -> Decimal:
    """USD for these tokens at these prices per 1M tokens, rounded half-up to 6 places."""
    total = (Decimal(prompt_tokens) * input_per_million + Decimal(completion_tokens) * output_per_million) / MILLION
    return total.quantize(Q6, rounding=ROUND_HALF_UP)


def max_cost(*, prompt: PromptSize, max_tokens: int, candidates: list[Candidate]) -> Decimal:
    """The most a request can cost on any of these nodes (the hold): prompt estimate and max_tokens at its prices."""
    default = settings.INFERENCE_DEFAULT_PRICE_PER_MILLION
    prices = [(c.input_price_per_million, c.output_price_per_million) for c in candidates] or [(default, default)]
    # Billing caps prompt tokens at prompt.cap, so the hold covers that much, never less than is billable.
    return max(
        price(prompt_tokens=prompt.cap, completion_tokens=max_tokens, input_per_million=i, output_per_million=o)
        for i, o in prices
    )


def _attempts(candidates: list[Candidate], max_attempts: int | None) -> list[Candidate]:
    return candidates[: max_attempts or settings.INFERENCE_MAX_ATTEMPTS]


@overload
def relay_stream(
    *,
    candidates: list[Candidate],
    body: dict,
    delivery: Delivery,
    http: NodeHttpClient | None = None,
    max_attempts: int | None = None,
    raw: Literal[False] = False,
    path: str = node_client.CHAT_PATH,
) -> AsyncGenerator[dict, None]: ...


@overload
def relay_stream(
    *,
    candidates: list[Candidate],
    body: dict,
    delivery: Delivery,
    http: NodeHttpClient | None = None,
    max_attempts: int | None = None,
    raw: Literal[True],
    path: str = node_client.CHAT_PATH,
) -> AsyncGenerator[tuple[dict, bytes], None]: ...


async def relay_stream(
    *,
    candidates: list[Candidate],
    body: dict,
    delivery: Delivery,
    http: NodeHttpClient | None = None,
    max_attempts: int | None = None,
    raw: bool = False,
    path: str = node_client.CHAT_PATH,
) -> AsyncGenerator[dict | tuple[dict, bytes], None]:
    """Yield the chunks of a streamed chat completion from the first node that answers.

    `body` is an OpenAI chat request (its `stream`/`stream_options` are set here: usage is always asked for).
    Ends normally in every case; `delivery.error` says whether and how the stream failed. Closing this generator
    early (a client that went away) closes the upstream connection. `raw=True` yields (chunk, its JSON as the node
    sent it) instead, for callers that relay the bytes without encoding the chunk again. `path`: the node's
    operation (`/completions` streams text completions the same way).
    """
    http = http or node_client.shared_http_client()
    upstream = {**body, "stream": True, "stream_options": {"include_usage": True}}
    last: NodeCallError | None = None
    for candidate in _attempts(candidates, max_attempts):
        delivery._begin(candidate)
        try:
            async with node_client.stream(http, candidate, upstream, path=path) as events:
                async for chunk, payload in events:
                    delivery.observe_chunk(chunk)
                    if not delivery.started:
                        delivery.started = True
                        delivery.first_byte_ms = delivery._elapsed_ms()
                    yield (chunk, payload) if raw else chunk
            delivery.latency_ms = delivery._elapsed_ms()
            return
        except NodeCallError as exc:
            if delivery.started or not exc.retryable:
                delivery.error = exc
                delivery.latency_ms = delivery._elapsed_ms()
                return
            delivery.failures.append((candidate.node_id, exc))
            last = exc
    delivery.error = last or NodeCallError("no_capacity", "No node could take the request.")


async def relay_complete(
    *,
    candidates: list[Candidate],
    body: dict,
    delivery: Delivery,
    http: NodeHttpClient | None = None,
    max_attempts: int | None = None,
    path: str = node_client.CHAT_PATH,
    assemble: Callable[[], Assembler] = Completion,
) -> dict | None:
    """A non-stream chat completion from the first node that answers: a `chat.completion`, or None (see
    `delivery`). The node is asked to stream (so a node that sends no first token in time is dropped and the next
    one tried, as for streams, while a long answer is not cut) and its chunks are assembled here. Nothing reaches
    the caller before the whole answer, so a node that breaks mid-answer is failed over too, and not billed.
    `path` and `assemble`: another streamed operation and its answer's assembler (/v1/completions)."""
    last: NodeCallError | None = None
    for candidate in _attempts(candidates, max_attempts):
        attempt = Delivery(failures=delivery.failures)
        answer = assemble()
        chunks = relay_stream(candidates=[candidate], body=body, delivery=attempt, http=http, path=path)
        async with aclosing(chunks):
            async for chunk in chunks:
                answer.add(chunk)
        error = attempt.error
        if error is not None and error.retryable:
            if attempt.started:  # relay_stream recorded a failure before the first chunk; this one broke later
                attempt.failures.append((candidate.node_id, error))
            last = error
            delivery.candidate = candidate
            continue
        vars(delivery).update(vars(attempt))  # the attempt that answered (or was refused for the request's fault)
        return answer.payload(usage=attempt.usage) if error is None else None
    delivery.error = last or NodeCallError("no_capacity", "No node could take the request.")
    return None


async def relay_once(
    *,
    candidates: list[Candidate],
    body: dict,
    delivery: Delivery,
    path: str,
    http: NodeHttpClient | None = None,
    max_attempts: int | None = None,
) -> dict | None:
    """An operation the node answers with one JSON object (embeddings) from the first node that answers it, failed
    over as a stream's first event is; the answer, or None (see `delivery`). Only `usage` is metered from it."""
    http = http or node_client.shared_http_client()
    last: NodeCallError | None = None
    for candidate in _attempts(candidates, max_attempts):
        delivery._begin(candidate)
        try:
            payload = await node_client.post_json(http, candidate, body, path=path)
        except NodeCallError as exc:
            if not exc.retryable:
                delivery.error = exc
                delivery.latency_ms = delivery._elapsed_ms()
                return None
            delivery.failures.append((candidate.node_id, exc))
            last = exc
            continue
        delivery.started = True
        delivery.first_byte_ms = delivery.latency_ms = delivery._elapsed_ms()
        if isinstance(payload.get("usage"), dict):  # an answer without output: none to count
            delivery.usage = {**payload["usage"], "completion_tokens": 0}
        return payload
    delivery.error = last or NodeCallError("no_capacity", "No node could take the request.")
    return None


async def collect(*, candidates: list[Candidate], body: dict, delivery: Delivery) -> None:
    """Relay a stream to nowhere (the worker path): the answer ends up in `delivery`. Own HTTP client: the
    worker runs each task in a fresh event loop."""
    async with node_client.new_http_client() as http:
        async for _ in relay_stream(candidates=candidates, body=body, delivery=delivery, http=http):
            pass
