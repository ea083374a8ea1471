"""A real OpenAI-compatible HTTP server on 127.0.0.1 that tests start and steer: a stand-in for a GPU node.

It serves `GET /v1/models`, `POST /v1/chat/completions` and `POST /v1/completions` (JSON, or SSE when `stream` is
true) and `POST /v1/embeddings` (JSON) from a thread of the test process; `serves` drops some (404, as a server
without them answers). Each test sets how it behaves (answer, token counts, per-chunk delay, 5xx, hang, dying
mid-stream, delay before the first byte) and reads back the requests it received, headers included.

Two ways of being slow: `hang` accepts a request and sends nothing at all (`hang_after_headers`: the status line
and headers, then nothing), a hung node; `slow_steady(seconds)` streams a token every second for that long, a slow
but healthy one.
"""

from __future__ import annotations

import base64
import json
import socket
import struct
import threading
import time
from dataclasses import dataclass, field

from tests.support.stub_server import StubHandler, StubServer


@dataclass
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]
    body: dict | None


@dataclass
class StubBehaviour:
    """What the node does with the next requests; tests change these fields at any time."""

    answer: str = "Hello from the stub node."
    prompt_tokens: int | None = None  # None: counted from the prompt (chars / 4, at least 1)
    completion_tokens: int | None = None  # None: one per streamed piece (word)
    usage: dict | bool | None = True  # True: report usage; False: omit it; a dict: report exactly that
    status: int = 200  # answer chat requests with this status (5xx to fail) before any body
    first_byte_delay_s: float = 0.0  # wait this long before the status line
    chunk_delay_s: float = 0.0  # wait this long between streamed chunks
    hang: bool = False  # accept the request and send nothing (until the server stops)
    hang_after_headers: bool = False  # send 200 and the headers, then nothing (until the server stops)
    die_after_chunks: int | None = None  # close the connection after this many content chunks
    models: list[str] = field(default_factory=lambda: ["stub/model"])
    gate: threading.Event | None = None  # if set, chat requests wait for it (after being recorded) before answering
    serves: tuple[str, ...] = ("chat/completions", "completions", "embeddings")  # POST paths under /v1 it answers
    dimensions: int = 4  # of each embedding (a request's `dimensions` wins)


class _Handler(StubHandler):
    owner: StubNode
    text = False  # this request is a text completion (/v1/completions)

    def _read_body(self) -> dict | None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            return json.loads(raw) if raw else None
        except ValueError:
            return None

    def do_GET(self) -> None:
        self.owner.record(RecordedRequest("GET", self.path, dict(self.headers.items()), None))
        if self.path.rstrip("/") != "/v1/models":
            self.send_json(404, {"error": {"message": "not found", "type": "invalid_request_error"}})
            return
        models = [{"id": m, "object": "model", "created": 0, "owned_by": "stub"} for m in self.owner.behaviour.models]
        self.send_json(200, {"object": "list", "data": models})

    def do_POST(self) -> None:
        body = self._read_body()
        self.owner.record(RecordedRequest("POST", self.path, dict(self.headers.items()), body))
        b = self.owner.behaviour
        operation = self.path.rstrip("/").removeprefix("/v1/")
        if not self.path.startswith("/v1/") or operation not in b.serves:
            self.send_json(404, {"error": {"message": "not found", "type": "invalid_request_error"}})
            return
        if b.hang:
            self.owner.sleep(3600)
            return
        if b.gate is not None:
            b.gate.wait(timeout=60)
        if self.owner.sleep(b.first_byte_delay_s):
            return
        if b.status != 200:
            self.send_json(b.status, {"error": {"message": "stub failure", "type": "server_error"}})
            return
        body = body or {}
        prompt_chars = sum(len(str(m.get("content", ""))) for m in body.get("messages", []) if isinstance(m, dict))
        prompt_chars += len(str(body.get("prompt") or "")) + len(str(body.get("input") or ""))
        prompt_tokens = b.prompt_tokens if b.prompt_tokens is not None else max(1, prompt_chars // 4)
        if operation == "embeddings":
            self._embeddings(body, prompt_tokens)
            return
        pieces = self.owner.pieces()
        completion_tokens = b.completion_tokens if b.completion_tokens is not None else len(pieces)
        usage: dict | None = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        }
        if isinstance(b.usage, dict):
            usage = b.usage
        elif b.usage is False:
            usage = None
        model = body.get("model", "stub/model")
        self.text = operation == "completions"  # a text completion's chunks and answer
        if body.get("stream"):
            self._stream(
                model, pieces, usage, include_usage=bool((body.get("stream_options") or {}).get("include_usage"))
            )
        elif self.text:
            self.send_json(
                200,
                {
                    "id": "cmpl-stub",
                    "object": "text_completion",
                    "created": int(time.time()),
                    "model": model,
                    "choices": [{"index": 0, "text": b.answer, "logprobs": None, "finish_reason": "stop"}],
                    **({"usage": usage} if usage is not None else {}),
                },
            )
        else:
            payload: dict = {
                "id": "chatcmpl-stub",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": model,
                "choices": [
                    {"index": 0, "message": {"role": "assistant", "content": b.answer}, "finish_reason": "stop"}
                ],
            }
            if usage is not None:
                payload["usage"] = usage
            self.send_json(200, payload)

    def _embeddings(self, body: dict, prompt_tokens: int) -> None:
        value = body.get("input")
        is_one = isinstance(value, str) or (isinstance(value, list) and all(isinstance(t, int) for t in value))
        inputs = [value] if is_one else list(value or [])
        size = body.get("dimensions") or self.owner.behaviour.dimensions
        vectors = [[0.5 * (i + 1) + 0.25 * d for d in range(size)] for i in range(len(inputs))]
        as_base64 = body.get("encoding_format") == "base64"  # float32 little-endian, as OpenAI's
        data = [
            {
                "object": "embedding",
                "index": i,
                "embedding": base64.b64encode(struct.pack(f"<{size}f", *v)).decode() if as_base64 else v,
            }
            for i, v in enumerate(vectors)
        ]
        payload: dict = {"object": "list", "data": data, "model": body.get("model", "stub/model")}
        b = self.owner.behaviour
        if isinstance(b.usage, dict):
            payload["usage"] = b.usage
        elif b.usage is not False:
            payload["usage"] = {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens}
        self.send_json(200, payload)

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()

    def _event(self, payload: dict | str) -> None:
        text = payload if isinstance(payload, str) else json.dumps(payload)
        self._chunk(f"data: {text}\n\n".encode())

    def _stream(self, model: str, pieces: list[str], usage: dict | None, *, include_usage: bool) -> None:
        b = self.owner.behaviour
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        if b.hang_after_headers:
            self.wfile.flush()
            self.owner.sleep(3600)
            return
        base = {"id": "chatcmpl-stub", "object": "chat.completion.chunk", "created": int(time.time()), "model": model}
        if self.text:
            base = {**base, "id": "cmpl-stub", "object": "text_completion"}

        def piece_of(text: str | None, finish: str | None = None) -> dict:
            if self.text:
                return {"index": 0, "text": text or "", "logprobs": None, "finish_reason": finish}
            return {"index": 0, "delta": {} if text is None else {"content": text}, "finish_reason": finish}

        try:
            if not self.text:
                self._event({**base, "choices": [{"index": 0, "delta": {"role": "assistant"}, "finish_reason": None}]})
            for i, piece in enumerate(pieces):
                if b.die_after_chunks is not None and i >= b.die_after_chunks:
                    # Drop the connection without ending the chunked body: the node died mid-stream.
                    self.connection.shutdown(socket.SHUT_RDWR)
                    self.close_connection = True
                    return
                if i and self.owner.sleep(b.chunk_delay_s):
                    return
                self._event({**base, "choices": [piece_of(piece)]})
            self._event({**base, "choices": [piece_of(None, "stop")]})
            if include_usage and usage is not None:
                self._event({**base, "choices": [], "usage": usage})
            self._event("[DONE]")
            self._chunk(b"")
        except (BrokenPipeError, ConnectionResetError):
            # The marketplace hung up (its client went away): note it, as a real server would stop generating.
            self.owner.record(RecordedRequest("DISCONNECT", self.path, {}, None))


class StubNode(StubServer):
    """Start with `StubNode().start()`; `base_url` ends in /v1 like a real node's `endpoint_url`."""

    handler = _Handler
    request_queue_size = 128  # tests open dozens of connections at once

    def __init__(self, name: str = "stub") -> None:
        super().__init__()
        self.name = name
        self.behaviour = StubBehaviour()
        self.requests: list[RecordedRequest] = []
        self._stopping = threading.Event()

    # --- lifecycle ---------------------------------------------------------------------------------------

    @property
    def thread_name(self) -> str:
        return f"stub-node-{self.name}"

    def stop(self) -> None:
        self._stopping.set()
        super().stop()

    @property
    def base_url(self) -> str:
        return f"{self.origin}/v1"

    # --- what tests read ---------------------------------------------------------------------------------

    @property
    def chat_requests(self) -> list[RecordedRequest]:
        with self._lock:
            return [r for r in self.requests if r.path.endswith("/chat/completions")]

    def record(self, request: RecordedRequest) -> None:
        with self._lock:
            self.requests.append(request)

    def pieces(self) -> list[str]:
        """The answer split into the pieces streamed one per chunk (words with their following space)."""
        words = self.behaviour.answer.split(" ")
        return [p for p in [w + " " for w in words[:-1]] + words[-1:] if p]

    def slow_steady(self, seconds: int) -> None:
        """Answer with `seconds + 1` tokens, the first at once and then one a second: a slow but steady stream."""
        self.behaviour.answer = " ".join(f"t{i}" for i in range(seconds + 1))
        self.behaviour.chunk_delay_s = 1.0

    def sleep(self, seconds: float) -> bool:
        """Sleep unless the server is stopping; True if it is."""
        return self._stopping.wait(seconds) if seconds > 0 else self._stopping.is_set()
