"""The relay engine: plain async functions that send one chat request to the best node and fail over while nothing
has been relayed, noting what was delivered in a `Delivery` (inference/metering.py, which also says what to bill).
They know nothing of Django requests or the database: callers (the Celery task and the /v1 pipeline,
inference/v1/pipeline.py) route, hold money before and settle after.

    delivery = Delivery()
    async for chunk, payload in relay_stream(candidates=..., body=..., delivery=delivery):
        ...                                   # OpenAI `chat.completion.chunk` dicts, and their JSON as sent
    usage = meter(delivery, prompt=PromptSize.of(body), max_tokens=...)   # what to bill

Failover: a node that cannot be reached, times out, or answers an error status before the first chunk is relayed
is recorded in `delivery.failures` and the next candidate is tried (at most INFERENCE_MAX_ATTEMPTS). Once a chunk
has been relayed nothing is retried: a broken stream ends with `delivery.error` set.

"""

from collections.abc import AsyncGenerator, Callable
from typing import Protocol

from django.conf import settings

from inference import node_client
from inference.completion import Completion
from inference.metering import Delivery
from inference.node_client import NodeCallError
from inference.node_http import NodeHttpClient
from inference.routing import Candidate


class Assembler(Protocol):
    """Joins a stream's chunks into the one answer of a non-stream request (inference/completion.py)."""

    def add(self, chunk: dict) -> None: ...

    def payload(self, *, usage: dict | None) -> dict: ...


def _streamed(body: dict) -> dict:
    """The body nodes get: always streamed, usage always asked for."""
    return {**body, "stream": True, "stream_options": {"include_usage": True}}


def _attempts(candidates: list[Candidate], max_attempts: int | None) -> list[Candidate]:
    return candidates[: max_attempts or settings.INFERENCE_MAX_ATTEMPTS]


async def relay_stream(
    *,
    candidates: list[Candidate],
    body: dict,
    delivery: Delivery,
    http: NodeHttpClient | None = None,
    max_attempts: int | None = None,
    path: str = node_client.CHAT_PATH,
) -> AsyncGenerator[tuple[dict, bytes], None]:
    """Yield the chunks of a streamed chat completion from the first node that answers.

    `body` is an OpenAI chat request (its `stream`/`stream_options` are set here: usage is always asked for).
    Ends normally in every case; `delivery.error` says whether and how the stream failed. Closing this generator
    early (a client that went away) closes the upstream connection. Each chunk comes with its JSON as the node sent
    it, for callers that relay the bytes without encoding the chunk again. `path`: the node's operation
    (`/completions` streams text completions the same way).
    """
    http = http or node_client.shared_http_client()
    upstream = _streamed(body)
    last: NodeCallError | None = None
    for candidate in _attempts(candidates, max_attempts):
        delivery._begin(candidate)
        try:
            async with node_client.stream(http, candidate, upstream, path=path) as batches:
                async for batch in batches:
                    delivery._started()
                    for chunk, payload in batch:
                        delivery.observe_chunk(chunk)
                        yield chunk, payload
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
    `path` and `assemble`: another streamed operation and its answer's assembler (/v1/completions).

    The node's chunks are read a batch at a time (what arrived together) and assembled as they come, without
    relay_stream's step per chunk: a short answer arrives in a read or two."""
    http = http or node_client.shared_http_client()
    upstream = _streamed(body)
    last: NodeCallError | None = None
    for candidate in _attempts(candidates, max_attempts):
        attempt = Delivery(failures=delivery.failures)
        attempt._begin(candidate)
        answer = assemble()
        try:
            await _assemble_from(http, candidate, upstream, path=path, attempt=attempt, answer=answer)
        except NodeCallError as exc:
            if exc.retryable:  # nothing reached the caller: the next node may answer it
                attempt.failures.append((candidate.node_id, exc))
                last = exc
                delivery.candidate = candidate
                continue
            attempt.error = exc  # refused for the request's own fault: no other node would take it
        attempt.latency_ms = attempt._elapsed_ms()
        payload = answer.payload(usage=attempt.usage)
        attempt.observe_completion(payload)
        vars(delivery).update(vars(attempt))  # the attempt that answered (or was refused for the request's fault)
        return payload if attempt.error is None else None
    delivery.error = last or NodeCallError("no_capacity", "No node could take the request.")
    return None


async def _assemble_from(
    http: NodeHttpClient, candidate: Candidate, upstream: dict, *, path: str, attempt: Delivery, answer: Assembler
) -> None:
    """One node's whole stream into `answer` (its `usage` and first byte in `attempt`, which meters the answer once
    it is whole: Delivery.observe_completion); raises its NodeCallError."""
    async with node_client.stream(http, candidate, upstream, path=path) as batches:
        async for batch in batches:
            attempt._started()
            for chunk, _ in batch:
                answer.add(chunk)
                usage = chunk.get("usage")
                if usage is not None and isinstance(usage, dict):
                    attempt.usage = usage


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
