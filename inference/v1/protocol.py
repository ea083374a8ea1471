"""The OpenAI chat protocol of /v1, shared by its two adapters (the Django view and the lean ASGI path): the parsed
request (`ChatRequest`), our response ids, SSE framing, the closing usage chunk, the error body of a domain error,
and the answer to a request nothing relayed. Error bodies themselves are core/error_render.py's."""

import json
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from django.conf import settings

from core.error_render import openai_body, openai_retry_headers, openai_type
from core.errors import DomainError
from inference import metering, relay
from inference.choices import InferenceEndpoint
from inference.completion import Completion
from inference.errors import BadChatRequest, EndpointNotServed, NoCapacity, UpstreamRejected
from inference.metering import Delivery, PromptSize
from inference.relay import Assembler
from inference.routing import Candidate
from inference.v1.params import node_body
from inference.v1.routing_controls import NO_CONTROLS, ProviderControls, model_order, parse_provider
from inference.v1.sessions import session_of

ROLES = {"system", "developer", "user", "assistant", "tool", "function"}
MAX_MESSAGES = 1000


def relay_failure(delivery: Delivery) -> DomainError:
    """Why nothing was relayed, as the error to answer: the node refused the request itself (400), or no node
    could answer it (503 with Retry-After)."""
    error = delivery.error
    if error is not None and error.code == "endpoint_not_served":  # every node tried lacks the operation
        return EndpointNotServed(
            "No node serving this model answers this endpoint; use a model made for it.", attr="model"
        )
    if error is not None and not error.node_fault:
        return UpstreamRejected(error.detail)
    return NoCapacity("No node could answer the request; retry later.", retry_after=settings.INFERENCE_RETRY_AFTER_S)


RESPONSE_ID_PREFIX = "chatcmpl-"
# Our ids' prefix by operation (API.md §11 "More endpoints"), as OpenAI's: `cmpl-` for text completions; OpenAI's
# embeddings carry no id, ours do (`emb-`), so that `GET /api/v1/generation/` finds them too.
ID_PREFIXES = {
    InferenceEndpoint.CHAT: RESPONSE_ID_PREFIX,
    InferenceEndpoint.COMPLETIONS: "cmpl-",
    InferenceEndpoint.EMBEDDINGS: "emb-",
}


def response_id(request_key: str, endpoint: str = InferenceEndpoint.CHAT) -> str:
    """Our id of a request's response and of every chunk of its stream (API.md §11 "Our ids"): from its row's
    unique key, never the node's. `GET /api/v1/generation/?id=` finds the row by it (inference/selectors.py)."""
    return ID_PREFIXES[InferenceEndpoint(endpoint)] + request_key


@dataclass(frozen=True)
class Endpoint:
    """What varies between the /v1 operations one pipeline runs (chat here; inference/v1/completions.py and
    embeddings.py): the node's path, how big the prompt is, what the row keeps as its question, how a non-stream
    answer is assembled (None: the node answers one JSON object, relay.relay_once), and the answer's shape."""

    name: InferenceEndpoint
    path: str  # under the node's base URL (which ends in /v1)
    chunk_object: str  # the `object` of its stream's chunks (our usage chunk's)
    prompt_of: Callable[[dict], PromptSize]
    question_of: Callable[[dict], str]
    assemble: Callable[[], Assembler] | None = Completion
    usage_keys: tuple[str, ...] | None = None  # the `usage` keys its answer shows (None: all)

    def complete(self, *, candidates: list[Candidate], body: dict, delivery: Delivery) -> Awaitable[dict | None]:
        """The whole answer of a non-stream request, relayed (the pipeline's `complete`)."""
        if self.assemble is None:
            return relay.relay_once(candidates=candidates, body=body, delivery=delivery, path=self.path)
        return relay.relay_complete(
            candidates=candidates, body=body, delivery=delivery, path=self.path, assemble=self.assemble
        )

    def usage(self, usage: metering.Usage, *, cost: Decimal | None = None) -> dict:
        shown = usage.as_openai(cost=cost)
        return shown if self.usage_keys is None else {k: v for k, v in shown.items() if k in self.usage_keys}


def question_of(body: dict) -> str:
    """The last user message's text, kept as the record's question_text."""
    for message in reversed(body["messages"]):
        if message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, list):
                content = " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
            return str(content or "")[:100_000]
    return ""


CHAT = Endpoint(
    name=InferenceEndpoint.CHAT,
    path="/chat/completions",
    chunk_object="chat.completion.chunk",
    prompt_of=PromptSize.of,
    question_of=question_of,
)


@dataclass
class ChatRequest:
    """A checked /v1 request as it flows through the pipeline's steps: `body` is what the node is sent (for chat,
    every field but the marketplace's own, `user` hashed: v1/params.py); `endpoint` the operation (chat unless
    said); the rest steers the route step."""

    body: dict[str, Any]
    stream: bool
    include_usage: bool  # stream_options.include_usage: a closing usage chunk
    requested_max_tokens: int | None = None  # None: the node's default; the hold is sized by the context window
    fallbacks: tuple[str, ...] = ()  # `models` after `model`, each once (routing_controls.model_order)
    controls: ProviderControls = field(default=NO_CONTROLS)  # `provider`
    session: str | None = None  # `session_id` / `prompt_cache_key` (v1/sessions.py)
    endpoint: Endpoint = field(default=CHAT)

    @property
    def model(self) -> str:
        return str(self.body["model"])

    @property
    def models(self) -> list[str]:
        """The models to try, in order: `model`, then the fallbacks."""
        return [self.model, *self.fallbacks]

    @property
    def plainly_routed(self) -> bool:
        """No routing controls, no fallback models: the route step does what it did before them."""
        return not self.fallbacks and self.controls.unused


class OurIdFrames:
    """A stream's node chunks as SSE frames carrying our id in place of the node's (API.md §11 "Our ids"). Nodes
    put `id` first and keep it for the whole stream: then only those bytes change, with what was encoded for the
    first chunk; otherwise the chunk is encoded again."""

    def __init__(self, our_id: str) -> None:
        self.our_id = our_id
        self._ours = b'data: {"id":' + json.dumps(our_id).encode()
        self._node_id: str | None = None
        self._heads: tuple[bytes, ...] = ()

    def frame(self, chunk: dict, payload: bytes) -> bytes:
        """`data: <the chunk with our id>` and its blank line; `payload` is the chunk's JSON as the node sent it."""
        node_id = chunk.get("id")
        if isinstance(node_id, str):
            if node_id != self._node_id:
                quoted = json.dumps(node_id).encode()
                self._node_id, self._heads = node_id, (b'{"id":' + quoted, b'{"id": ' + quoted)
            for head in self._heads:
                if payload.startswith(head):
                    return self._ours + payload[len(head) :] + b"\n\n"
        return sse_raw(json.dumps({**chunk, "id": self.our_id}, separators=(",", ":")).encode())


def with_our_id(chunk: dict, payload: bytes, our_id: str) -> bytes:
    """The node's chunk JSON (`payload`, as sent) with our id in place of the node's (OurIdFrames, one chunk)."""
    return OurIdFrames(our_id).frame(chunk, payload).removeprefix(b"data: ").removesuffix(b"\n\n")


def sse_raw(payload: bytes) -> bytes:
    """One server-sent event from JSON already encoded on one line (node_client checked it)."""
    return b"data: " + payload + b"\n\n"


def sse(payload: dict | str) -> bytes:
    """One server-sent event: `data: <json>` (or a literal such as `[DONE]`)."""
    text = payload if isinstance(payload, str) else json.dumps(payload, separators=(",", ":"))
    return f"data: {text}\n\n".encode()


def error_body(error: DomainError) -> tuple[dict[str, Any], dict[str, str]]:
    """A domain error as OpenAI's body, and its headers (Retry-After, `x-should-retry: false` where the client must
    not retry it unchanged, and the error's own): both doors answer with these."""
    retry_after = getattr(error, "retry_after", None)
    headers = {
        **openai_retry_headers(error.status, error.code),
        **getattr(error, "headers", {}),
        **({"Retry-After": str(retry_after)} if retry_after else {}),
    }
    return openai_body(error.status, message=error.detail, code=error.code, param=error.attr), headers


def usage_chunk(
    last: dict,
    *,
    model: str,
    usage: metering.Usage,
    response_id: str,
    cost: Decimal | None = None,
    object_name: str = "chat.completion.chunk",
) -> dict:
    """The stream's closing `chat.completion.chunk` (or `object_name`'s) carrying `usage`
    (stream_options.include_usage), its `cost` the ledger's charge."""
    return {
        "id": response_id,
        "object": object_name,
        "created": last.get("created", int(time.time())),
        "model": model,
        "choices": [],
        "usage": usage.as_openai(cost=cost),
    }


def int_field(data: dict, key: str, *, low: int, high: int) -> int | None:
    """`data[key]` checked to be an integer from `low` to `high` (400 naming it otherwise); None when absent."""
    value = data.get(key)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise BadChatRequest(f"`{key}` must be an integer from {low} to {high}.", attr=key)
    return value


def model_field(data: dict) -> str:
    """`data["model"]` checked to be a model name (400 naming it otherwise)."""
    model = data.get("model")
    if not isinstance(model, str) or not model.strip() or len(model) > 255:
        raise BadChatRequest("`model` must be a model name.", attr="model")
    return model


def stream_and_sampling(data: dict) -> tuple[bool, bool]:
    """`stream` and `stream_options.include_usage`, and the sampling numbers (`temperature`, `top_p`, the
    penalties), checked as chat and text completions share them (400 naming the field otherwise)."""
    stream = data.get("stream", False)
    if not isinstance(stream, bool):
        raise BadChatRequest("`stream` must be a boolean.", attr="stream")
    options = data.get("stream_options") or {}
    if not isinstance(options, dict):
        raise BadChatRequest("`stream_options` must be an object.", attr="stream_options")
    for key in ("temperature", "top_p", "presence_penalty", "frequency_penalty"):
        value = data.get(key)
        if value is not None and (
            not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value)
        ):
            raise BadChatRequest(f"`{key}` must be a number.", attr=key)  # 1e400 parses as infinity: not one
    return stream, bool(options.get("include_usage"))


def parse_chat_request(data: object) -> ChatRequest:
    """Check an OpenAI chat request (BadChatRequest, a 400 naming the parameter, if it is not one)."""
    if not isinstance(data, dict):
        raise BadChatRequest("The body must be a JSON object.")
    model = model_field(data)
    messages = data.get("messages")
    if not isinstance(messages, list) or not 1 <= len(messages) <= MAX_MESSAGES:
        raise BadChatRequest(f"`messages` must be a list of 1 to {MAX_MESSAGES} messages.", attr="messages")
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or message.get("role") not in ROLES:
            raise BadChatRequest(f"`messages[{i}]` must be an object with a valid `role`.", attr=f"messages.{i}")
        content = message.get("content")
        if content is not None and not isinstance(content, str | list):
            raise BadChatRequest(f"`messages[{i}].content` must be a string or a list.", attr=f"messages.{i}")
    limit = settings.INFERENCE_MAX_TOKENS_LIMIT
    max_tokens = int_field(data, "max_completion_tokens", low=1, high=limit) or int_field(
        data, "max_tokens", low=1, high=limit
    )
    if data.get("n", 1) != 1:
        raise BadChatRequest("Only `n` = 1 is supported.", attr="n")
    stream, include_usage = stream_and_sampling(data)
    controls = parse_provider(data)
    models = model_order(data) if "models" in data else [model]
    session = session_of(data)
    return ChatRequest(
        body=node_body(data),
        stream=stream,
        include_usage=include_usage,
        requested_max_tokens=max_tokens,
        fallbacks=tuple(models[1:]),
        controls=controls,
        session=session,
    )


# --- Streams (API.md §11 "Streams") -------------------------------------------------------------------------------

# An SSE comment: ignored by every client, it keeps proxies and the client's read timeout from closing a stream
# that has sent nothing yet. Sent before the first token at least every KEEP_ALIVE_INTERVAL_S (v1/keep_alive.py).
KEEP_ALIVE = b": keep-alive\n\n"
KEEP_ALIVE_INTERVAL_S = 10.0


def error_chunk(
    *,
    completion_id: str,
    model: str,
    message: str,
    code: str,
    status: int = 502,
    object_name: str = "chat.completion.chunk",
) -> dict:
    """The chunk that ends a stream whose node failed mid-way (OpenRouter's shape): the error in a data chunk,
    `finish_reason: "error"`; sent after the usage chunk when one was asked for, and no `[DONE]` follows."""
    return {
        "id": completion_id,
        "object": object_name,
        "created": int(time.time()),
        "model": model,
        "error": {"message": message, "type": openai_type(status), "code": code},
        "choices": [{"index": 0, "delta": {}, "finish_reason": "error"}],
    }
