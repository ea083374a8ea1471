"""What every stub server here shares: a real HTTP server on 127.0.0.1 (a free port) serving from a daemon thread
of the test process, started and stopped the same way, whose handler reaches its stub as `self.owner`; and a
handler base that logs nothing and answers JSON.

A stub subclasses `StubServer` and names its handler class (`handler`, a `StubHandler`) and its thread's name.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar, Self


class StubHandler(BaseHTTPRequestHandler):
    owner: Any  # the stub this handler serves, set by StubServer.start
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def send_json(self, status: int, payload: dict, *, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)


class StubServer:
    handler: ClassVar[type[StubHandler]]
    request_queue_size: ClassVar[int] = 5  # socketserver's default; a stub that takes bursts raises it

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self.port = 0

    @property
    def thread_name(self) -> str:
        return type(self).__name__

    def start(self) -> Self:
        stub = self

        class Handler(self.handler):  # a class per stub, bound to it
            owner = stub

        class Server(ThreadingHTTPServer):
            request_queue_size = stub.request_queue_size
            daemon_threads = True

        self._server = Server(("127.0.0.1", 0), Handler)
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, name=self.thread_name, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    @property
    def origin(self) -> str:
        """`http://127.0.0.1:<port>`."""
        return f"http://127.0.0.1:{self.port}"
