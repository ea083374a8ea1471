"""The default path: the service started exactly as a newcomer starts it, `make run` with nothing configured (a
SQLite file, kombu's filesystem broker, web + Celery worker + Celery beat under honcho), driven over real HTTP
(docs/API.md §10 "The embedded default is a full product").

One service serves the whole session (`service`); `world` walks the README's walkthrough against it once, with a
real stub node (tests/support/stub_node.py) standing in for the GPU server, and keeps what it made for the tests.
At the end the service is stopped as Ctrl-C stops it, and that must end every process cleanly, with no `make`
error and no traceback anywhere in its log.

These tests need neither PostgreSQL nor Redis: `make test-default` runs them alone (CI does, on every change).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tests.support.stub_node import StubNode

REPO_ROOT = Path(__file__).resolve().parents[2]
MODEL = "meta-llama/Llama-3.1-8B-Instruct"
ADMIN = {"username": "admin", "email": "admin@example.com", "password": "change-me-admin-pass"}
# What the walkthrough's own shell would not have: nothing that points the service elsewhere than its defaults.
NOT_INHERITED = (
    "DATABASE_URL",
    "CELERY_BROKER_URL",
    "USAGE_JOURNAL_URL",
    "CACHE_URL",
    "DJANGO_SETTINGS_MODULE",
    "CELERY_TASK_ALWAYS_EAGER",
    "MAKEFLAGS",
    "MAKELEVEL",
    "MFLAGS",
)
HEARTBEAT_TIMEOUT_S = 8
METRICS_SLOT_S = 5  # uptime is counted in slots of this many seconds (60 by default)


@pytest.fixture(autouse=True)
def _postgres_only() -> None:
    """Overrides the suite's PostgreSQL guard (tests/conftest.py): these tests use no test database at all."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate: Callable[[], Any], *, timeout: float, what: str, log: Path | None = None) -> Any:
    """Poll until `predicate()` is truthy and return it; fail naming `what` (with the service's log tail)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.25)
    tail = log.read_text()[-4000:] if log is not None else ""
    pytest.fail(f"{what}: not within {timeout} s\n{tail}")


class DefaultService:
    """`make run` in its own process group, with a private data folder and port; stopped as Ctrl-C stops it."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = data_dir / "make-run.log"
        self.env = {k: v for k, v in os.environ.items() if k not in NOT_INHERITED}
        self.env.update(
            {
                "PORT": str(self.port),
                "DATA_DIR": str(data_dir),
                # As the README's walkthrough starts it: an admin, a node on this machine, a quick expiry.
                "DJANGO_SUPERUSER_USERNAME": ADMIN["username"],
                "DJANGO_SUPERUSER_EMAIL": ADMIN["email"],
                "DJANGO_SUPERUSER_PASSWORD": ADMIN["password"],
                "ALLOW_PRIVATE_NODE_ENDPOINTS": "true",
                "NODE_HEARTBEAT_INTERVAL_S": "2",
                "NODE_HEARTBEAT_TIMEOUT_S": str(HEARTBEAT_TIMEOUT_S),
                "NODE_SWEEP_INTERVAL_S": "2",
                "NODE_METRICS_SAMPLE_EVERY_S": str(METRICS_SLOT_S),
                # Beat's pay-as-you-go charge every 2 s rather than 60 (each started minute is charged once either
                # way): the walkthrough's step 27 sees its first minute billed by beat without waiting a minute.
                "RENTAL_PAYG_CHARGE_INTERVAL_S": "2",
                # Task lines in the log, so that a test can tell which tasks beat sends.
                "CELERY_LOG_LEVEL": "INFO",
                "PYTHONUNBUFFERED": "1",
            }
        )
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        with self.log_path.open("w") as log:
            self.process = subprocess.Popen(
                ["make", "run"],
                cwd=REPO_ROOT,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: the terminal's foreground group
            )

        def up() -> bool:
            if self.process.poll() is not None:
                pytest.fail(f"make run exited with {self.process.returncode}:\n{self.log_path.read_text()[-6000:]}")
            try:
                return httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(up, timeout=300, what="make run answering /readyz", log=self.log_path)

    def processes(self) -> list[psutil.Process]:
        """Every process started for this service (they all carry its DATA_DIR)."""
        found = []
        for proc in psutil.process_iter():
            try:
                if proc.environ().get("DATA_DIR") == str(self.data_dir):
                    found.append(proc)
            except (psutil.AccessDenied, psutil.NoSuchProcess, psutil.ZombieProcess):
                continue
        return found

    def interrupt(self) -> int | None:
        """Ctrl-C: SIGINT to the foreground process group (make, its shell, honcho); make's exit status."""
        assert self.process is not None
        os.killpg(self.process.pid, signal.SIGINT)
        try:
            return self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            return None

    def kill(self) -> None:
        for proc in self.processes():
            with contextlib.suppress(psutil.NoSuchProcess):
                proc.kill()

    def log(self) -> str:
        return self.log_path.read_text()


@pytest.fixture(scope="session")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DefaultService]:
    svc = DefaultService(tmp_path_factory.mktemp("default-path"))
    svc.start()
    try:
        yield svc
    finally:
        status = svc.interrupt()
        leftovers = wait_for_gone(svc)
        svc.kill()
        log = svc.log()
        # The session's own checks on the whole run: Ctrl-C stops all three processes, make reports no error, and
        # nothing ever logged a traceback (a 500 anywhere would have).
        # make itself gets the Ctrl-C too and ends by it (as make does, silently) once its recipe ended cleanly.
        assert status in (0, -signal.SIGINT), f"make run ended with {status} after Ctrl-C:\n{log[-4000:]}"
        assert leftovers == [], f"still running after Ctrl-C: {leftovers}"
        assert "make: ***" not in log, log[-4000:]  # "Interrupt" or "Error 130": a make error on the terminal
        assert "Traceback" not in log, log[log.index("Traceback") - 2000 :][:8000]


def wait_for_gone(svc: DefaultService, timeout: float = 30) -> list[str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        left = svc.processes()
        if not left:
            return []
        time.sleep(0.5)
    return [" ".join(p.cmdline()) for p in svc.processes()]


def ssh_public_key() -> str:
    """A throwaway OpenSSH ed25519 public key line, as `ssh-keygen -t ed25519` would write."""
    key = Ed25519PrivateKey.generate().public_key()
    line = key.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode()
    return f"{line} bob@laptop"


class Api:
    """HTTP to the service under /api/v1/: each call checks the status it expects and returns the JSON body."""

    def __init__(self, base: str) -> None:
        self.http = httpx.Client(base_url=f"{base}/api/v1", timeout=60)

    def call(self, method: str, path: str, *, key: str | None = None, expect: int = 200, **kwargs: Any) -> Any:
        headers = kwargs.pop("headers", {})
        if key:
            headers["Authorization"] = f"Bearer {key}"
        r = self.http.request(method, path, headers=headers, **kwargs)
        assert r.status_code == expect, f"{method} {path}: {r.status_code} {r.text[:2000]}"
        if r.status_code == 204:
            return None
        assert r.headers["content-type"].startswith(("application/json", "text/event-stream")), r.headers
        return r.json() if r.headers["content-type"].startswith("application/json") else r.text

    def get(self, path: str, **kwargs: Any) -> Any:
        return self.call("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> Any:
        return self.call("POST", path, **kwargs)


class Heartbeats:
    """The node agent's part, for nodes the walkthrough keeps live: one heartbeat per node every second."""

    def __init__(self, api: Api) -> None:
        self.api = api
        self.tokens: list[str] = []
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="default-path-heartbeats", daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(1.0):
            for token in list(self.tokens):
                try:
                    r = self.api.http.post(
                        "/llm_models/heartbeat/", json={"metrics": {}}, headers={"Authorization": f"Bearer {token}"}
                    )
                    if r.status_code != 200:
                        self.failures.append(f"{r.status_code} {r.text[:200]}")
                except httpx.HTTPError as exc:
                    self.failures.append(repr(exc))

    def start(self) -> Heartbeats:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


@dataclass
class World:
    """What the walkthrough made, for the tests to look at."""

    service: DefaultService
    api: Api
    stub: StubNode
    admin_key: str = ""
    alice: dict = field(default_factory=dict)
    bob: dict = field(default_factory=dict)
    ids: dict[str, int | str] = field(default_factory=dict)
    results: dict[str, Any] = field(default_factory=dict)


@pytest.fixture(scope="session")
def world(service: DefaultService) -> Iterator[World]:
    stub = StubNode("default-path").start()
    stub.behaviour.models = [MODEL]
    stub.behaviour.answer = "Two, three and five."
    api = Api(service.url)
    heartbeats = Heartbeats(api).start()
    w = World(service=service, api=api, stub=stub)
    try:
        from tests.default_path.walkthrough import walk

        walk(w, heartbeats)
        yield w
    finally:
        heartbeats.stop()
        stub.stop()
        api.http.close()
    assert heartbeats.failures == [], heartbeats.failures[:5]
