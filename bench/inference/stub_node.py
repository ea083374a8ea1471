"""A fast OpenAI-compatible stub node: `python bench/inference/stub_node.py --port P [--chunks 50 --pacing-ms 100]`.

A raw asyncio protocol (uvloop, httptools' parser) with keep-alive, as cheap per request as it can be, so the
other targets' figures are theirs and not the node's. It serves:

- `POST /v1/chat/completions`: non-stream, a short JSON answer with `usage`; stream, SSE chunks (chunked transfer
  encoding), a finish chunk, a usage chunk when `stream_options.include_usage`, then `data: [DONE]`. A stream has
  `min(max_tokens, --chunks)` content chunks; for the model named by `--paced-model` they are `--pacing-ms` apart
  (the first at once), for any other model all at once.
- `GET /v1/models` and `GET /health`.

Standalone on purpose (standard library, uvloop and httptools only): it runs in its own process so its CPU is
never counted as a target's.
"""

import argparse
import asyncio
import json
import resource
import signal
import time
from typing import cast

import httptools
import uvloop

COMPLETION_TEXT = "Hello from the stub node, five words."
COMPLETION_TOKENS = 8
STREAM_TOKEN = "tok "


class Config:
    """What the command line set."""

    def __init__(self, *, chunks: int, pacing_s: float, paced_model: str, models: list[str]) -> None:
        self.chunks = chunks
        self.pacing_s = pacing_s
        self.paced_model = paced_model
        self.models = models
        created = int(time.time())
        listing = {
            "object": "list",
            "data": [{"id": m, "object": "model", "created": created, "owned_by": "bench-stub"} for m in models],
        }
        self.models_response = _response(200, json.dumps(listing).encode(), b"application/json")
        self.health_response = _response(200, b'{"status":"ok"}', b"application/json")
        self.not_found = _response(404, b'{"error":{"message":"not found","type":"invalid_request_error"}}')
        self.bad_request = _response(400, b'{"error":{"message":"bad request","type":"invalid_request_error"}}')


def _response(status: int, body: bytes, content_type: bytes = b"application/json") -> bytes:
    reason = {200: b"OK", 400: b"Bad Request", 404: b"Not Found"}[status]
    return (
        b"HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %d\r\n\r\n" % (status, reason, content_type, len(body))
    ) + body


def _chunk(payload: bytes) -> bytes:
    """One SSE event in one HTTP chunk."""
    event = b"data: " + payload + b"\n\n"
    return b"%x\r\n%s\r\n" % (len(event), event)


def _prompt_tokens(messages: object) -> int:
    if not isinstance(messages, list):
        return 1
    chars = sum(len(str(m.get("content", ""))) for m in messages if isinstance(m, dict))
    return max(1, chars // 4 + 4 * len(messages))


STREAM_HEAD = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
    b"Transfer-Encoding: chunked\r\n\r\n"
)


class StubProtocol(asyncio.Protocol):
    """One client connection: parse requests with httptools, answer each in turn (no pipelining needed)."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.url = b""
        self.body: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            assert self.transport is not None
            self.transport.close()

    # httptools callbacks
    def on_message_begin(self) -> None:
        self.url = b""
        self.body = []

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        assert self.transport is not None
        method = self.parser.get_method()
        path = self.url.split(b"?", 1)[0].rstrip(b"/")
        keep_alive = self.parser.should_keep_alive()
        if method == b"POST" and path == b"/v1/chat/completions":
            self._chat(b"".join(self.body), keep_alive)
            return
        if method == b"GET" and path == b"/v1/models":
            self.transport.write(self.config.models_response)
        elif method == b"GET" and path == b"/health":
            self.transport.write(self.config.health_response)
        else:
            self.transport.write(self.config.not_found)
        if not keep_alive:
            self.transport.close()

    def _chat(self, raw: bytes, keep_alive: bool) -> None:
        assert self.transport is not None
        try:
            request = json.loads(raw)
            model = str(request["model"])
            max_tokens = int(request.get("max_completion_tokens") or request.get("max_tokens") or 16)
        except (ValueError, KeyError, TypeError):
            self.transport.write(self.config.bad_request)
            return
        prompt_tokens = _prompt_tokens(request.get("messages"))
        if request.get("stream"):
            options = request.get("stream_options") or {}
            asyncio.get_running_loop().create_task(
                self._stream(model, max_tokens, prompt_tokens, bool(options.get("include_usage")), keep_alive)
            )
            return
        completion_tokens = min(max_tokens, COMPLETION_TOKENS)
        answer = {
            "id": "chatcmpl-stub",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": COMPLETION_TEXT},
                    "finish_reason": "stop" if completion_tokens < max_tokens else "length",
                }
            ],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
        }
        self.transport.write(_response(200, json.dumps(answer, separators=(",", ":")).encode()))
        if not keep_alive:
            self.transport.close()

    async def _stream(
        self, model: str, max_tokens: int, prompt_tokens: int, include_usage: bool, keep_alive: bool
    ) -> None:
        transport = self.transport
        assert transport is not None
        created = int(time.time())
        head = (
            f'{{"id":"chatcmpl-stub","object":"chat.completion.chunk","created":{created},"model":{json.dumps(model)}'
        )
        count = max(1, min(max_tokens, self.config.chunks))
        pacing = self.config.pacing_s if model == self.config.paced_model else 0.0
        first = _chunk(
            (
                head + ',"choices":[{"index":0,"delta":{"role":"assistant","content":'
                f'"{STREAM_TOKEN}"}},"finish_reason":null}}]}}'
            ).encode()
        )
        token = _chunk(
            (
                head + f',"choices":[{{"index":0,"delta":{{"content":"{STREAM_TOKEN}"}},"finish_reason":null}}]}}'
            ).encode()
        )
        transport.write(STREAM_HEAD + first)
        for _ in range(count - 1):
            if pacing:
                await asyncio.sleep(pacing)
            if transport.is_closing():
                return
            transport.write(token)
        finish = (
            head + ',"choices":[{"index":0,"delta":{},"finish_reason":"' + ("length" if count >= max_tokens else "stop")
        )
        tail = _chunk((finish + '"}]}').encode())
        if include_usage:
            usage = {"prompt_tokens": prompt_tokens, "completion_tokens": count, "total_tokens": prompt_tokens + count}
            tail += _chunk((head + ',"choices":[],"usage":' + json.dumps(usage) + "}").encode())
        transport.write(tail + _chunk(b"[DONE]") + b"0\r\n\r\n")
        if not keep_alive:
            transport.close()


async def serve(port: int, config: Config) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: StubProtocol(config), "127.0.0.1", port, backlog=4096)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with server:
        await stop.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--chunks", type=int, default=50, help="content chunks of a stream (at most max_tokens)")
    parser.add_argument("--pacing-ms", type=float, default=100.0, help="gap between chunks of the paced model")
    parser.add_argument("--paced-model", default="bench-paced")
    parser.add_argument("--models", default="bench-model,bench-paced", help="what GET /v1/models lists")
    args = parser.parse_args()
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    config = Config(
        chunks=args.chunks,
        pacing_s=args.pacing_ms / 1000,
        paced_model=args.paced_model,
        models=[m for m in args.models.split(",") if m],
    )
    uvloop.run(serve(args.port, config))


if __name__ == "__main__":
    main()
