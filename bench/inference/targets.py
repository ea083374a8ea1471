"""The three targets' processes: the stub node, the service (web + Celery worker + beat) and LiteLLM proxy."""

import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from bench import server
from bench.inference import litellm_proxy

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
CHAT_PATH = "/v1/chat/completions"
REDIS_MARKER = b"gpu-marketplace-bench"


@dataclass
class Target:
    """Where a target listens, how it is called, and which processes are its own (for CPU accounting)."""

    name: str  # direct, ours, litellm
    label: str
    port: int
    pids: Callable[[], list[int]]
    workers: int = 1
    headers: dict[str, str] = field(default_factory=dict)
    host: str = "127.0.0.1"


@contextmanager
def stub_node(*, env: dict[str, str], log: Path, chunks: int, pacing_ms: float) -> Iterator[Target]:
    port = server.free_port()
    argv = [
        str(BIN / "python"),
        str(REPO / "bench" / "inference" / "stub_node.py"),
        f"--port={port}",
        f"--chunks={chunks}",
        f"--pacing-ms={pacing_ms}",
    ]
    with server.child(argv, env=env, log=log) as proc:
        server.wait_ready(f"http://127.0.0.1:{port}/health", proc, timeout_s=30, what="stub node", log=log)
        yield Target(name="direct", label="direct (stub node)", port=port, pids=lambda: [proc.pid])


def claim_redis_db(url: str, first: int = 11, last: int = 15) -> str:
    """A Redis database for the service's broker: the first of first..last that is empty or the bench's own,
    flushed and marked. Returns its URL."""
    import redis

    for db in range(first, last + 1):
        conn = redis.Redis.from_url(url, db=db)
        if conn.dbsize() == 0 or conn.get(REDIS_MARKER) is not None:
            conn.flushdb()
            conn.set(REDIS_MARKER, b"1")
            return f"{url.rstrip('/')}/{db}"
    raise RuntimeError(f"no free Redis database among {first}-{last} at {url}")


def celery_commands(schedule: Path) -> dict[str, list[str]]:
    """Procfile's worker and beat lines (log level from the bench's LOG_LEVEL; beat's files in the run's folder)."""
    celery = str(BIN / "celery")
    return {
        "worker": [celery, "-A", "config", "worker", "--loglevel=WARNING", "--pool=threads", "--concurrency=2"],
        "beat": [
            celery,
            "-A",
            "config",
            "beat",
            "--loglevel=WARNING",
            f"--schedule={schedule}",
            f"--pidfile={schedule.with_suffix('.pid')}",
        ],
    }


@dataclass
class Service:
    web: server.RunningServer
    worker: subprocess.Popen

    def web_pids(self) -> list[int]:
        return server.worker_pids(self.web.process.pid)

    def worker_pids(self) -> list[int]:
        return server.worker_pids(self.worker.pid)


@contextmanager
def service(*, env: dict[str, str], logs: Path) -> Iterator[Service]:
    """Procfile's web (the production server command, one worker), worker and beat, with the same environment."""
    commands = celery_commands(logs / "celerybeat-schedule")
    config = server.uvicorn(1)
    with (
        server.child(commands["worker"], env=env, log=logs / "celery-worker.log") as worker,
        server.child(commands["beat"], env=env, log=logs / "celery-beat.log"),
        server.serve(config, env, log=logs / "web.log") as web,
    ):
        yield Service(web=web, worker=worker)


@dataclass
class LiteLLM:
    """LiteLLM proxy started but perhaps not yet serving (its import takes a while: start it early)."""

    process: subprocess.Popen
    port: int
    workers: int
    log: Path

    def ready(self) -> Target:
        url = f"http://127.0.0.1:{self.port}/health/liveliness"
        server.wait_ready(url, self.process, timeout_s=180, what="LiteLLM proxy", log=self.log)
        root = self.process.pid
        return Target(
            name="litellm",
            label=f"LiteLLM {litellm_proxy.version()}",
            port=self.port,
            pids=lambda: server.worker_pids(root),
            workers=self.workers,
            headers={"Authorization": f"Bearer {litellm_proxy.MASTER_KEY}"},
        )


@contextmanager
def litellm(*, stub_port: int, models: list[str], workers: int, logs: Path) -> Iterator[LiteLLM]:
    """`litellm --config ... --num_workers N` with the stub as every model's backend."""
    config = logs / "litellm.yaml"
    litellm_proxy.write_config(config, stub_url=f"http://127.0.0.1:{stub_port}", models=models)
    port = server.free_port()
    log = logs / "litellm.log"
    with server.child(litellm_proxy.command(config, port, workers), env=litellm_proxy.environment(), log=log) as proc:
        yield LiteLLM(process=proc, port=port, workers=workers, log=log)
