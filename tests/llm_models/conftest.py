"""Fixtures for the node registry: a stand-in for DNS, node registration helpers and a real Celery worker."""

import ipaddress
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
from django.db import connection

from config.celery import app as celery_app
from llm_models import endpoint_guard
from tests.conftest import bearer

REPO_ROOT = Path(__file__).resolve().parents[2]
CELERY_BIN = REPO_ROOT / ".venv" / "bin" / "celery"

REGISTER_URL = "/api/v1/llm_models/register/"
HEARTBEAT_URL = "/api/v1/llm_models/heartbeat/"
DEREGISTER_URL = "/api/v1/llm_models/deregister/"
ALL_MODELS_URL = "/api/v1/llm_models/all-models/"

PUBLIC_HOST = "gpu-7.example.net"
PUBLIC_ENDPOINT = f"http://{PUBLIC_HOST}:8000/v1"
BACKEND_API_KEY = "sk-backend-secret-0123456789abcdef"

# What DNS answers in these tests. DNS is outside our system, so it is stood in for; a name not here does not resolve.
FAKE_DNS: dict[str, list[str]] = {
    PUBLIC_HOST: ["93.184.216.34"],
    "node.example.com": ["93.184.216.34", "2606:2800:220:1:248:1893:25c8:1946"],
    "docs-range.example.net": ["203.0.113.7"],
    "localhost": ["127.0.0.1", "::1"],
    "private.example.net": ["10.1.2.3"],
    "rebind.example.net": ["93.184.216.34", "10.1.2.3"],
    "metadata.example.net": ["169.254.169.254"],
}


def errors_of(response) -> list[tuple[str, str | None]]:  # type: ignore[no-untyped-def]
    """The (code, attr) pairs of an error response, after checking its shape."""
    body = response.json()
    assert set(body) == {"type", "errors"}, body
    for error in body["errors"]:
        assert set(error) == {"code", "detail", "attr"}, error
    return [(e["code"], e["attr"]) for e in body["errors"]]


@pytest.fixture(autouse=True)
def fake_dns(monkeypatch) -> dict[str, list[str]]:  # type: ignore[no-untyped-def]
    """Replace the endpoint guard's resolver with FAKE_DNS; tests may add names to the returned table."""
    table = {name: list(addresses) for name, addresses in FAKE_DNS.items()}

    def resolve(host: str, port: int) -> list[endpoint_guard.IPAddress]:
        if host.lower() not in table:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return [ipaddress.ip_address(a) for a in table[host.lower()]]

    monkeypatch.setattr(endpoint_guard, "resolve_host", resolve)
    return table


def register_body(**overrides: object) -> dict:
    body: dict = {
        "name": "gpu-7",
        "endpoint_url": PUBLIC_ENDPOINT,
        "api_key": BACKEND_API_KEY,
        "region": "eu-west",
        "models": [
            {
                "name": "meta-llama/Llama-3.1-8B-Instruct",
                "input_price_per_million": "0.20",
                "output_price_per_million": "0.60",
                "context_window": 131072,
            }
        ],
    }
    body.update(overrides)
    return body


@pytest.fixture
def register(api_client) -> Callable:  # type: ignore[no-untyped-def]
    """POST register/ with a client's raw key (None: anonymous) and a body built from register_body()."""

    def _register(raw_key: str | None, **overrides: object):  # type: ignore[no-untyped-def]
        headers = bearer(raw_key) if raw_key else {}
        return api_client.post(REGISTER_URL, register_body(**overrides), format="json", **headers)

    return _register


@pytest.fixture
def heartbeat(api_client) -> Callable:  # type: ignore[no-untyped-def]
    """POST heartbeat/ with a node token in the Authorization header (None: no header)."""

    def _heartbeat(token: str | None, body: dict | None = None):  # type: ignore[no-untyped-def]
        headers = bearer(token) if token else {}
        return api_client.post(HEARTBEAT_URL, body if body is not None else {}, format="json", **headers)

    return _heartbeat


# --- A real Celery worker -----------------------------------------------------------------------------


def _test_database_url() -> str:
    """The URL of the database this test runs on (pytest-django's test_... database), for another process."""
    s = connection.settings_dict
    user = quote(s.get("USER") or "", safe="")
    password = f":{quote(s['PASSWORD'], safe='')}" if s.get("PASSWORD") else ""
    credentials = f"{user}{password}@" if user else ""
    host = s.get("HOST") or "127.0.0.1"
    port = s.get("PORT") or 5432
    return f"postgres://{credentials}{host}:{port}/{s['NAME']}"


def _broker_reachable(url: str) -> bool:
    import redis

    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=2).ping())
    except redis.exceptions.RedisError:
        return False


def _stop(process: subprocess.Popen) -> None:
    """Stop the worker we started, by its own process group: warm shutdown, then kill if it lingers."""
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=5)


@pytest.fixture
def celery_worker(transactional_db, tmp_path) -> Iterator[subprocess.Popen]:  # type: ignore[no-untyped-def]
    """A real `celery worker` process on the test settings' broker and this test's database, stopped at teardown.

    It depends on transactional_db, so it is stopped before the database is flushed. A worker runs what it
    receives whatever CELERY_TASK_ALWAYS_EAGER says (the flag only changes how a *sender* publishes); it is set
    false here (config/settings/test.py reads it from the environment) so that tasks this worker runs publish
    any follow-up tasks to the broker, as in production, instead of running them inline.
    """
    if not CELERY_BIN.exists():
        pytest.fail(f"{CELERY_BIN} is missing: install requirements-dev.txt into .venv")
    # The broker this process publishes to (CELERY_BROKER_URL, default Redis db 15): a private one per checkout
    # keeps parallel test runs from taking each other's tasks.
    broker_url = celery_app.conf.broker_url
    if not _broker_reachable(broker_url):
        pytest.fail(f"Redis is not reachable at {broker_url}; the worker tests need it")
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings.test",
        "CELERY_BROKER_URL": broker_url,
        "DATABASE_URL": _test_database_url(),
        "CELERY_TASK_ALWAYS_EAGER": "false",
        "PYTHONUNBUFFERED": "1",
    }
    log = (tmp_path / "worker.log").open("w")
    process = subprocess.Popen(
        [str(CELERY_BIN), "-A", "config", "worker", "--pool=solo", "--concurrency=1", "-Q", "celery",
         "--loglevel=INFO", "--without-heartbeat", "--without-gossip", "--without-mingle"],
        cwd=REPO_ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group, so teardown stops it and only it
    )  # fmt: skip
    process.log_path = tmp_path / "worker.log"  # type: ignore[attr-defined]
    try:
        yield process
    finally:
        _stop(process)
        log.close()


def wait_until(predicate: Callable[[], bool], *, timeout: float, process: subprocess.Popen | None = None) -> float:
    """Poll `predicate` until it is true; return the seconds it took. Fails on timeout or if `process` dies."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if predicate():
            return time.monotonic() - start
        if process is not None and process.poll() is not None:
            log = Path(process.log_path).read_text()  # type: ignore[attr-defined]
            pytest.fail(f"the worker exited with {process.returncode}:\n{log[-4000:]}")
        time.sleep(0.2)
    log = Path(process.log_path).read_text() if process is not None else ""  # type: ignore[attr-defined]
    pytest.fail(f"not done within {timeout} s\n{log[-4000:]}")
