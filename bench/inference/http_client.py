"""A lean HTTP/1.1 client connection (asyncio protocol, httptools' parser): keep-alive, Content-Length or chunked.

The load generator shares the machine's two cores with the targets, so it spends as little as it can per request:
requests are prepared bytes, responses are parsed in C, and a streamed body is handed over piece by piece as it
arrives (with no SSE parsing unless the caller does it).
"""

import asyncio
import json
from collections.abc import Callable
from typing import cast

import httptools

OnPiece = Callable[[bytes], None]


class Connection(asyncio.Protocol):
    """One client connection; `request()` writes a prepared request and waits for its whole response."""

    def __init__(self) -> None:
        self.parser = httptools.HttpResponseParser(self)
        self.transport: asyncio.Transport | None = None
        self.waiter: asyncio.Future[tuple[int, bytes]] | None = None
        self.on_piece: OnPiece | None = None
        self.pieces: list[bytes] = []
        self.status = 0
        self.keep_alive = True
        self.closed = False

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._fail(ConnectionError(f"connection lost before the response ended: {exc!r}"))

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(ConnectionError(f"unparsable response: {exc!r}"))
            self.close()

    # httptools callbacks
    def on_headers_complete(self) -> None:
        self.status = self.parser.get_status_code()
        self.keep_alive = self.parser.should_keep_alive()

    def on_body(self, body: bytes) -> None:
        if self.on_piece is not None:
            self.on_piece(body)
        else:
            self.pieces.append(body)

    def on_message_complete(self) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result((self.status, b"".join(self.pieces)))

    def _fail(self, exc: Exception) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(exc)

    async def request(self, raw: bytes, on_piece: OnPiece | None = None) -> tuple[int, bytes]:
        """(status, body); with `on_piece` the body goes to it as it arrives and comes back empty."""
        if self.closed or self.transport is None:
            raise ConnectionError("connection closed")
        self.waiter = asyncio.get_running_loop().create_future()
        self.on_piece = on_piece
        self.pieces = []
        self.transport.write(raw)
        return await self.waiter

    @property
    def reusable(self) -> bool:
        return not self.closed and self.keep_alive

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


async def connect(host: str, port: int) -> Connection:
    _, protocol = await asyncio.get_running_loop().create_connection(Connection, host, port)
    return protocol


def prepare(*, host: str, port: int, path: str, body: dict, headers: dict[str, str], close: bool = False) -> bytes:
    """The exact bytes of a JSON POST (keep-alive unless `close`)."""
    payload = json.dumps(body, separators=(",", ":")).encode()
    lines = [f"POST {path} HTTP/1.1", f"Host: {host}:{port}", "Content-Type: application/json"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    lines += [f"Content-Length: {len(payload)}"] + (["Connection: close"] if close else [])
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + payload
