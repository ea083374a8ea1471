"""The web process's HTTP protocol (Procfile: `uvicorn --http core.http_protocol:HttpProtocol`): uvicorn's httptools
protocol, with what one step of the event loop writes on a connection sent in one system call.

uvicorn writes a response's status line and headers as soon as the application sends `http.response.start`, and
its body with `http.response.body`: two writes, two system calls and two wake-ups of the client for every short
answer (on loopback a write also runs the receiver's side of TCP). Here writes made in the same step of the event
loop are joined and sent at the end of that step: a JSON answer goes out in one write, a stream's chunk still goes
out as soon as it is sent (its step ends right after). Nothing else of uvicorn's behaviour changes.
"""

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

UVICORN_ARGS = ("--http", "core.http_protocol:HttpProtocol")  # as Procfile passes it (the tests and the bench too)


class _JoinedWrites:
    """A transport that keeps the writes of one loop step and sends them together at its end; everything else
    goes to the real transport (closing sends what is kept first)."""

    __slots__ = ("_kept", "_loop", "_transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._kept: list[bytes] = []

    def write(self, data: bytes) -> None:
        if not self._kept:
            self._loop.call_soon(self._send)
        self._kept.append(data)

    def _send(self) -> None:
        kept = self._kept
        if kept:
            data = kept[0] if len(kept) == 1 else b"".join(kept)
            kept.clear()
            if not self._transport.is_closing():
                self._transport.write(data)

    def close(self) -> None:
        self._send()
        self._transport.close()

    def abort(self) -> None:
        self._kept.clear()
        self._transport.abort()

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self._send()
        self._transport.set_protocol(protocol)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class HttpProtocol(HttpToolsProtocol):
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]  # as uvicorn's
        super().connection_made(_JoinedWrites(transport, self.loop))  # type: ignore[arg-type]  # a Transport's API
