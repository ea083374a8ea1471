"""A tiny OpenAI-compatible backend for the agent tests: `GET /v1/models` from a list the test can change."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class BackendStub:
    """Real HTTP on 127.0.0.1. `models` is what `/v1/models` lists; `openai=False` makes it an ordinary web page."""

    def __init__(self, models: list[str] | None = None, *, openai: bool = True) -> None:
        self.models = list(models or [])
        self.openai = openai
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if not stub.openai:
                    self._send(200, b"<html><body>It works!</body></html>", "text/html")
                elif self.path.rstrip("/") != "/v1/models":
                    self._send(404, b'{"error": {"message": "not found"}}', "application/json")
                else:
                    data = [{"id": name, "object": "model", "owned_by": "stub"} for name in stub.models]
                    self._send(200, json.dumps({"object": "list", "data": data}).encode(), "application/json")

            def _send(self, status: int, body: bytes, content_type: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        """The OpenAI base URL, /v1 included."""
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def __enter__(self) -> BackendStub:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
