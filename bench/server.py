"""The service as production serves it, in a child process, on a free loopback port."""

import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from core.http_protocol import UVICORN_ARGS

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


@dataclass(frozen=True)
class ServerConfig:
    """How to start the service: a label for the table, and the command (`{port}` is filled in)."""

    label: str
    argv: tuple[str, ...]
    settings_module: str = "config.settings.production"
    environment: tuple[tuple[str, str], ...] = ()  # extra variables for the server process

    def command(self, port: int) -> list[str]:
        return [arg.format(port=port, bin=BIN) for arg in self.argv]


def uvicorn(workers: int, label: str = "", environment: tuple[tuple[str, str], ...] = ()) -> ServerConfig:
    """Procfile's `web` line, with --workers."""
    app = "config.asgi:application"
    argv = (
        "{bin}/uvicorn",
        app,
        *UVICORN_ARGS,
        "--host=127.0.0.1",
        "--port={port}",
        f"--workers={workers}",
        "--no-access-log",
        "--log-level=warning",
    )
    return ServerConfig(label=label or f"uvicorn --workers {workers}", argv=argv, environment=environment)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_ready(
    url: str, proc: subprocess.Popen, *, timeout_s: float = 60, what: str = "server", log: Path | None = None
) -> None:
    """Poll `url` until it answers 200; RuntimeError if `proc` exits first or time runs out."""
    see = f"; see {log}" if log else ""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode} before serving{see}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"{what} not ready at {url} after {timeout_s:.0f} s{see}")


@contextmanager
def child(argv: list[str], *, env: dict[str, str], log: Path | None = None) -> Iterator[subprocess.Popen]:
    """A child process (its output to `log`, else to the bench's own); terminated, then killed, on exit."""
    if log is None:
        proc = subprocess.Popen(argv, cwd=REPO, env=env)
    else:
        with log.open("ab") as out:
            proc = subprocess.Popen(argv, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def worker_pids(root_pid: int) -> list[int]:
    """The root process and all its descendants (uvicorn's supervisor and its workers)."""
    pids = [root_pid]
    for pid in pids:
        children = Path(f"/proc/{pid}/task/{pid}/children")
        if children.exists():
            pids.extend(int(child) for child in children.read_text().split())
    return pids


@dataclass
class RunningServer:
    config: ServerConfig
    base_url: str
    process: subprocess.Popen

    @property
    def pids(self) -> list[int]:
        return worker_pids(self.process.pid)


@contextmanager
def serve(config: ServerConfig, env: dict[str, str], log: Path | None = None) -> Iterator[RunningServer]:
    """Start the server (its output to `log`, else to the bench's own) and wait until it answers /healthz."""
    port = free_port()
    # Production settings redirect plain HTTP to HTTPS; here, as behind the TLS proxy they expect, nothing is.
    env = {
        **env,
        "DJANGO_SETTINGS_MODULE": config.settings_module,
        "SECURE_SSL_REDIRECT": "false",
        **dict(config.environment),
    }
    with child(config.command(port), env=env, log=log) as process:
        base_url = f"http://127.0.0.1:{port}"
        wait_ready(f"{base_url}/healthz", process, log=log)
        time.sleep(1.0)  # let every worker finish importing before load starts
        yield RunningServer(config=config, base_url=base_url, process=process)
