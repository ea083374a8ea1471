"""Set the service up through its own API: an approved provider registers the stub as a node and heartbeats it; a
client gets an API key and an admin credits it."""

import json
import os
import secrets
import threading
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any

CREDIT = "1000000"  # the most one admin top-up may be (API.md §9)
PRICES = {"input_price_per_million": "0.10", "output_price_per_million": "0.30", "context_window": 8192}
METRICS = {
    "gpu_utilization": 35.0,
    "gpu_memory_used_mb": 20480.0,
    "gpu_memory_total_mb": 81920,
    "gpu_temperature_c": 55.0,
    "cpu_percent": 12.0,
    "ram_used_mb": 32768.0,
    "ram_total_mb": 131072,
}


class ApiError(RuntimeError):
    pass


def call(base_url: str, method: str, path: str, body: dict | None = None, token: str | None = None) -> Any:
    """One JSON request to the service; raises ApiError on anything but 2xx."""
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(base_url + path, data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            raw = response.read()
    except urllib.error.HTTPError as exc:
        raise ApiError(f"{method} {path}: HTTP {exc.code}: {exc.read()[:500]!r}") from exc
    return json.loads(raw) if raw else None


@dataclass(frozen=True)
class Seeded:
    api_key: str
    client_id: int
    node_id: int
    node_token: str
    node_body: dict  # what the node's heartbeats send


def _password() -> str:
    return "Bench-" + secrets.token_urlsafe(18)


def _register_client(base_url: str, username: str) -> dict:
    return call(
        base_url,
        "POST",
        "/api/v1/client/register/",
        {"username": username, "email": f"{username}@bench.example", "password": _password(), "terms_accepted": True},
    )


def _admin_token(base_url: str) -> str:
    """The one account not made through the API: an admin (what `manage.py ensure_superuser` makes), then logged in
    through the API."""
    from django.contrib.auth import get_user_model

    password = _password()
    get_user_model().objects.create_superuser(username="bench-admin", email="admin@bench.example", password=password)
    return call(base_url, "POST", "/api/v1/client/login/", {"username": "bench-admin", "password": password})[
        "user_token"
    ]


def seed(*, base_url: str, stub_url: str, models: list[str]) -> Seeded:
    admin = _admin_token(base_url)
    provider = _register_client(base_url, "bench-inference-provider")
    call(base_url, "POST", f"/api/v1/client/list/{provider['id']}/apply-provider/", token=provider["user_token"])
    call(base_url, "POST", f"/api/v1/client/list/{provider['id']}/approve-provider/", token=admin)
    served = [{"name": model, **PRICES} for model in models]
    node = call(
        base_url,
        "POST",
        "/api/v1/llm_models/register/",
        {
            "name": "bench-stub-node",
            "endpoint_url": f"{stub_url}/v1",
            "api_key": "stub-backend-key",
            "region": "bench",
            "models": served,
        },
        token=provider["user_token"],
    )
    node_body = {"metrics": METRICS, "models": served, "active_requests": 0}
    call(base_url, "POST", "/api/v1/llm_models/heartbeat/", node_body, token=node["node_token"])

    client = _register_client(base_url, "bench-inference-client")
    # The key carries limits (API.md §12), so every request pays for their checks: an rpm far above any level the
    # bench reaches (a Redis counter per request) and a monthly budget (the key's spend is checked and kept).
    # BENCH_KEY_LIMITS=0 seeds a key without limits, to measure the path without their checks.
    limits: dict[str, object] = {"name": "bench", "rpm": 1_000_000, "budget": "1000000", "budget_period": "month"}
    if os.environ.get("BENCH_KEY_LIMITS", "1") == "0":
        limits = {"name": "bench"}
    key = call(base_url, "POST", "/api/v1/client/keys/", limits, token=client["user_token"])["key"]
    call(base_url, "POST", f"/api/v1/client/list/{client['id']}/credit/", {"amount": CREDIT, "memo": "bench"}, admin)
    listed = {m["id"] for m in call(base_url, "GET", "/v1/models", token=key)["data"]}
    if not set(models) <= listed:
        raise ApiError(f"/v1/models lists {sorted(listed)}, not the stub's {models}")
    return Seeded(
        api_key=key, client_id=client["id"], node_id=node["node_id"], node_token=node["node_token"], node_body=node_body
    )


class Heartbeats(threading.Thread):
    """The stub node's agent: a heartbeat every `every_s` seconds until stopped, so the node stays live."""

    def __init__(self, *, base_url: str, seeded: Seeded, every_s: float = 5.0) -> None:
        super().__init__(name="bench-node-heartbeat", daemon=True)
        self.base_url = base_url
        self.seeded = seeded
        self.every_s = every_s
        self.stopped = threading.Event()
        self.sent = 0
        self.failures: list[str] = []

    def run(self) -> None:
        while not self.stopped.wait(self.every_s):
            try:
                call(
                    self.base_url,
                    "POST",
                    "/api/v1/llm_models/heartbeat/",
                    self.seeded.node_body,
                    token=self.seeded.node_token,
                )
                self.sent += 1
            except (ApiError, OSError) as exc:
                self.failures.append(str(exc)[:300])

    def stop(self) -> None:
        self.stopped.set()
        self.join(timeout=35)


def deregister(*, base_url: str, seeded: Seeded) -> None:
    """Take the stub node out of routing (and out of all-models, which later scenarios measure). A failure is only
    reported: this runs while the scenario is being torn down, perhaps after the service has failed."""
    try:
        call(base_url, "DELETE", "/api/v1/llm_models/deregister/", token=seeded.node_token)
    except (ApiError, OSError) as exc:
        print(f"bench: could not deregister the stub node: {exc}", flush=True)
