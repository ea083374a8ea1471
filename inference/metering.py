"""What a relayed request delivered (`Delivery`, filled in by inference/relay.py) and what it costs.

Metering never bills more than was relayed: the node's `usage` is used when present and plausible, the completion
count is capped by `max_tokens` and by the UTF-8 bytes relayed (a token is at least one byte), the prompt count by
the bytes sent plus a template allowance; when `usage` is missing (or the stream broke) tokens are estimated as
characters / 4, rounded up, and `estimated` is set.
"""

import json
import math
import time
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal

from django.conf import settings

from inference.node_client import NodeCallError
from inference.routing import Candidate

MILLION = Decimal(1_000_000)
Q6 = Decimal("0.000001")
# Tokens a chat template may add around each message, and around the whole prompt.
_TEMPLATE_TOKENS_PER_MESSAGE = 16
_TEMPLATE_TOKENS = 64
_UNKEPT_TEXT = frozenset({"reasoning_content", "reasoning", "refusal"})  # relayed text that is not the answer


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

    def _started(self) -> None:
        """Something arrived from the node: no failover any more, and the first byte's time is kept."""
        if not self.started:
            self.started = True
            self.first_byte_ms = self._elapsed_ms()

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
        """A whole answer assembled from the node's chunks (relay_complete): what reaches the caller is this, so it
        is metered once, as observe_chunk meters a stream's chunks (a chat message or a text completion's text)."""
        if isinstance(payload.get("usage"), dict):
            self.usage = payload["usage"]
        for choice in payload.get("choices") or []:
            if not isinstance(choice, dict):
                continue
            message = choice.get("message")
            if isinstance(message, dict):
                self._observe_message(message)
            if isinstance(choice.get("text"), str):
                self._relayed(choice["text"], answer=True)
            if choice.get("finish_reason"):
                self.finish_reason = str(choice["finish_reason"])

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
