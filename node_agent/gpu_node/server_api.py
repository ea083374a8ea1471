"""The marketplace's node endpoints (docs/API.md §2, §3), with their failures sorted into what the agent does next."""

from __future__ import annotations

from typing import Any

import httpx

from gpu_node import __version__

TIMEOUT_S = 15.0
GPU_URL = "/api/v1/gpu/list/"
REGISTER_URL = "/api/v1/llm_models/register/"
HEARTBEAT_URL = "/api/v1/llm_models/heartbeat/"
DEREGISTER_URL = "/api/v1/llm_models/deregister/"
HEALTH_URL = "/healthz"


class ServerError(Exception):
    """The server answered with an error. `code` is the first error code of its standard error body."""

    def __init__(self, status: int, code: str, detail: str) -> None:
        super().__init__(f"HTTP {status} {code}: {detail}")
        self.status, self.code, self.detail = status, code, detail

    @property
    def transient(self) -> bool:
        """Worth retrying later: the server is overloaded, restarting or broken for now."""
        return self.status >= 500 or self.status in (408, 429)


class ServerUnreachable(Exception):
    """No HTTP answer at all: connection refused, DNS failure, timeout."""


def _error_of(r: httpx.Response) -> ServerError:
    code, detail = "error", r.reason_phrase or "error"
    try:
        body = r.json()
        first = body["errors"][0]
        code, detail = str(first.get("code") or code), str(first.get("detail") or detail)
        if first.get("attr"):
            detail = f"{first['attr']}: {detail}"
    except (ValueError, KeyError, IndexError, TypeError, AttributeError):
        pass
    return ServerError(r.status_code, code, detail)


class ServerApi:
    def __init__(self, base_url: str, *, timeout: float = TIMEOUT_S):
        self.base_url = base_url.rstrip("/")
        self._http = httpx.Client(
            base_url=self.base_url, timeout=timeout, headers={"User-Agent": f"gpu-node/{__version__}"}
        )

    def close(self) -> None:
        self._http.close()

    def _call(self, method: str, path: str, token: str | None, body: Any = None) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        try:
            r = self._http.request(method, path, headers=headers, json=body)
        except httpx.HTTPError as exc:
            raise ServerUnreachable(f"cannot reach {self.base_url}: {exc.__class__.__name__}: {exc}") from exc
        if r.status_code >= 400:
            raise _error_of(r)
        return r

    def _json(self, r: httpx.Response) -> dict[str, Any]:
        try:
            body = r.json()
        except ValueError as exc:
            raise ServerError(r.status_code, "not_json", f"{r.request.url} did not answer JSON") from exc
        if not isinstance(body, dict):
            raise ServerError(r.status_code, "not_json", f"{r.request.url} did not answer a JSON object")
        return body

    def health(self) -> bool:
        try:
            return self._http.get(HEALTH_URL).status_code == 200
        except httpx.HTTPError:
            return False

    def gpu_create(self, *, api_key: str, record: dict[str, Any]) -> dict[str, Any]:
        return self._json(self._call("POST", GPU_URL, api_key, record))

    def gpu_delete(self, *, api_key: str, gpu_id: int) -> None:
        self._call("DELETE", f"{GPU_URL}{gpu_id}/", api_key)

    def node_register(self, *, api_key: str, body: dict[str, Any]) -> dict[str, Any]:
        return self._json(self._call("POST", REGISTER_URL, api_key, body))

    def heartbeat(self, *, token: str, body: dict[str, Any]) -> dict[str, Any]:
        return self._json(self._call("POST", HEARTBEAT_URL, token, body))

    def deregister(self, *, token: str) -> None:
        self._call("DELETE", DEREGISTER_URL, token)
