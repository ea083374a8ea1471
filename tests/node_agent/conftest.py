"""Fixtures for the node agent: the real service as a uvicorn subprocess, a backend stub, a fake nvidia-smi,
and the real `gpu-node` console script run as a subprocess against them."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from core.http_protocol import UVICORN_ARGS
from tests.llm_models.conftest import _stop, _test_database_url
from tests.node_agent.backend_stub import BackendStub

REPO_ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
GPU_NODE = BIN / "gpu-node"

# What the fake nvidia-smi reports: two H100s.
FAKE_GPUS = [
    {
        "index": "0",
        "name": "NVIDIA H100 80GB HBM3",
        "memory.total": "81559",
        "memory.used": "20480",
        "utilization.gpu": "37",
        "temperature.gpu": "61",
        "driver_version": "550.54.15",
    },
    {
        "index": "1",
        "name": "NVIDIA H100 80GB HBM3",
        "memory.total": "81559",
        "memory.used": "1024",
        "utilization.gpu": "41",
        "temperature.gpu": "58",
        "driver_version": "550.54.15",
    },
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Service:
    """The real service (`uvicorn config.asgi:application`) on the test database; stoppable and restartable."""

    def __init__(self, database_url: str, log_dir: Path) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_dir / "service.log"
        self.env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "config.settings.test",
            "DATABASE_URL": database_url,
            "ALLOW_PRIVATE_NODE_ENDPOINTS": "true",
            "CELERY_TASK_ALWAYS_EAGER": "true",
            "NODE_HEARTBEAT_INTERVAL_S": "1",
            "NODE_METRICS_SAMPLE_EVERY_S": "1",
            "PYTHONUNBUFFERED": "1",
        }
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        log = self.log_path.open("a")
        self.process = subprocess.Popen(
            [str(BIN / "uvicorn"), "config.asgi:application", *UVICORN_ARGS, "--host", "127.0.0.1",
             "--port", str(self.port), "--lifespan", "off", "--no-access-log"],
            cwd=REPO_ROOT,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
        log.close()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"the service exited with {self.process.returncode}:\n{self.log_path.read_text()[-4000:]}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        pytest.fail(f"the service did not start:\n{self.log_path.read_text()[-4000:]}")

    def stop(self) -> None:
        if self.process is not None:
            _stop(self.process)


@pytest.fixture(scope="module")
def service(django_db_setup, django_db_blocker, tmp_path_factory) -> Iterator[Service]:  # type: ignore[no-untyped-def]
    """One service per module: it only reads and writes rows each test commits (transactional tests)."""
    with django_db_blocker.unblock():
        database_url = _test_database_url()
    svc = Service(database_url, tmp_path_factory.mktemp("service"))
    svc.start()
    try:
        yield svc
    finally:
        svc.stop()


@pytest.fixture
def backend() -> Iterator[BackendStub]:
    with BackendStub(["meta-llama/Llama-3.1-8B-Instruct", "Qwen/Qwen2.5-7B-Instruct"]) as stub:
        yield stub


@pytest.fixture
def fake_bin(tmp_path: Path) -> Path:
    """A folder holding a fake `nvidia-smi` that answers --query-gpu=<fields> from FAKE_GPUS."""
    folder = tmp_path / "bin"
    folder.mkdir()
    script = folder / "nvidia-smi"
    script.write_text(
        f"#!{sys.executable}\n"
        + textwrap.dedent(
            f"""
            import sys
            GPUS = {FAKE_GPUS!r}
            query = next(a.split("=", 1)[1] for a in sys.argv[1:] if a.startswith("--query-gpu="))
            for gpu in GPUS:
                print(", ".join(gpu[field] for field in query.split(",")))
            """
        )
    )
    script.chmod(0o755)
    return folder


class Agent:
    """Runs the real `gpu-node` console script with a private config file and the fake nvidia-smi on PATH."""

    def __init__(self, home: Path, fake_bin: Path) -> None:
        self.home = home
        self.config_path = home / "gpu-node" / "config.json"
        self.env = {
            **os.environ,
            "HOME": str(home),
            "GPU_NODE_CONFIG": str(self.config_path),
            "PATH": f"{fake_bin}{os.pathsep}{os.environ.get('PATH', '')}",
            "PYTHONUNBUFFERED": "1",
        }
        self.processes: list[subprocess.Popen] = []

    def __call__(self, *args: str, timeout: float = 30) -> subprocess.CompletedProcess:
        """Run a gpu-node command to completion."""
        return subprocess.run(
            [str(GPU_NODE), *args], env=self.env, capture_output=True, text=True, timeout=timeout, check=False
        )

    def start(self, *args: str) -> subprocess.Popen:
        """Start `gpu-node run` (or another long-running command) in the background; its log is `.log_path`."""
        log_path = self.home / f"agent-{len(self.processes)}.log"
        with log_path.open("w") as log:
            process = subprocess.Popen(
                [str(GPU_NODE), *(args or ("run",))],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                text=True,
                start_new_session=True,
            )
        process.log_path = log_path  # type: ignore[attr-defined]
        self.processes.append(process)
        return process

    def register(
        self, service: Service, backend: BackendStub, api_key: str, *extra: str
    ) -> subprocess.CompletedProcess:
        r = self("register", "--server", service.url, "--api-key", api_key, "--backend", backend.url, *extra)
        assert r.returncode == 0, r.stderr
        return r


@pytest.fixture
def agent(tmp_path: Path, fake_bin: Path) -> Iterator[Agent]:
    runner = Agent(tmp_path, fake_bin)
    yield runner
    for process in runner.processes:
        _stop(process)


def log_of(process: subprocess.Popen) -> str:
    return Path(process.log_path).read_text()  # type: ignore[attr-defined]
