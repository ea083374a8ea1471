"""The provider's OpenAI-compatible server: which models it serves (`GET {base}/models`).

OpenAI, vLLM, llama.cpp server and Ollama all answer `GET /v1/models` with `{"data": [{"id": ...}, ...]}`.
"""

from __future__ import annotations

import httpx

TIMEOUT_S = 10.0
MAX_MODELS = 256  # the server accepts at most this many per node
MAX_NAME = 255


class BackendError(Exception):
    """The backend is unreachable or does not speak the OpenAI API."""


def models_url(backend_url: str) -> str:
    return backend_url.rstrip("/") + "/models"


def list_models(backend_url: str, api_key: str = "", *, timeout: float = TIMEOUT_S) -> list[str]:
    """The model ids the backend lists, sorted and de-duplicated."""
    url = models_url(backend_url)
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    try:
        r = httpx.get(url, headers=headers, timeout=timeout, follow_redirects=False)
    except httpx.HTTPError as exc:
        raise BackendError(f"cannot reach the backend at {url}: {exc.__class__.__name__}: {exc}") from exc
    if r.status_code in (401, 403):
        raise BackendError(f"the backend refused the key at {url} (HTTP {r.status_code}); check --backend-key")
    if r.status_code != 200:
        raise BackendError(
            f"the backend at {url} answered HTTP {r.status_code}; is {backend_url} an OpenAI-compatible "
            "base URL ending in /v1?"
        )
    try:
        body = r.json()
    except ValueError:
        body = None
    data = body.get("data") if isinstance(body, dict) else None
    if not isinstance(data, list):
        raise BackendError(
            f'the backend at {url} is not OpenAI-compatible: no JSON object with a "data" list; '
            "the base URL must end in /v1 (e.g. http://HOST:8000/v1)"
        )
    names = {
        item["id"]
        for item in data
        if isinstance(item, dict) and isinstance(item.get("id"), str) and 0 < len(item["id"]) <= MAX_NAME
    }
    return sorted(names)[:MAX_MODELS]
