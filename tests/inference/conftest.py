"""Fixtures for inference: live nodes backed by real stub servers, and helpers to read SSE."""

import json
from collections.abc import Callable
from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from clients.choices import ClientRole
from core.crypto import encrypt
from core.http_protocol import UVICORN_ARGS
from llm_models.choices import NodeStatus
from llm_models.models import LlmModel, Node, NodeModel
from tests.factories import make_client, make_node

MODEL = "stub/model"
NODE_KEY = "sk-node-backend-secret-0123456789"


def live_node(
    *,
    owner,  # type: ignore[no-untyped-def]
    stub=None,  # type: ignore[no-untyped-def]
    model: str = MODEL,
    input_price: str = "1.00",
    output_price: str = "2.00",
    endpoint_url: str | None = None,
    api_key: str = NODE_KEY,
    **fields: object,
) -> Node:
    """An online node owned by `owner`, heard from now, serving `model` at these prices, answering at `stub`."""
    node, _ = make_node(
        owner=owner,
        status=NodeStatus.ONLINE,
        last_heartbeat_at=timezone.now(),
        endpoint_url=endpoint_url or (stub.base_url if stub else "http://127.0.0.1:9/v1"),
        backend_api_key_encrypted=encrypt(api_key),
        **fields,
    )
    llm, _ = LlmModel.objects.get_or_create(name=model)
    NodeModel.objects.create(
        node=node,
        model=llm,
        input_price_per_million=Decimal(input_price),
        output_price_per_million=Decimal(output_price),
    )
    return node


@pytest.fixture
def node_on(provider, private_endpoints, stub_node_factory) -> Callable:  # type: ignore[no-untyped-def]
    """Start a stub server and register a live node on it: `node, stub = node_on(name, **fields)`."""

    def make(name: str = "stub", **fields: object):  # type: ignore[no-untyped-def]
        stub = stub_node_factory(name)
        return live_node(owner=fields.pop("owner", provider[0]), stub=stub, name=name, **fields), stub

    return make


def stale(node: Node) -> None:
    Node.objects.filter(pk=node.pk).update(last_heartbeat_at=timezone.now() - timedelta(hours=1))


def sse_events(raw: str) -> list[tuple[str | None, str]]:
    """(event name, data) of each server-sent event in `raw`."""
    events = []
    for block in raw.split("\n\n"):
        name, data = None, []
        for line in block.splitlines():
            if line.startswith("event:"):
                name = line[6:].strip()
            elif line.startswith("data:"):
                data.append(line[5:].strip())
        if data:
            events.append((name, "\n".join(data)))
    return events


def sse_json(raw: str) -> list[dict]:
    return [json.loads(d) for _, d in sse_events(raw) if d != "[DONE]"]


def fund(client, amount: str = "10.00") -> None:  # type: ignore[no-untyped-def]
    """Top a client up through the ledger, as an admin credit would."""
    import uuid

    from clients import ledger

    ledger.credit(client_id=client.pk, amount=Decimal(amount), key=f"test-fund:{uuid.uuid4().hex}", memo="test top-up")


def balance(client) -> Decimal:  # type: ignore[no-untyped-def]
    from clients import ledger

    return ledger.balance_of(client_id=client.pk)


# --- The service as a real HTTP server (uvicorn, ASGI) ------------------------------------------------------


def start_service(log_path, **extra_env: str):  # type: ignore[no-untyped-def]
    """Start `uvicorn config.asgi:application` on a free port, on this run's test database; returns the process
    (with `base_url` and `log_path`) once it answers /healthz. Stop it with tests/llm_models/conftest.py's `_stop`.

    Stub nodes run in the test process; private endpoints are allowed in the server so it may call them. The lean
    /v1 path retires leases within a second or two and reuses no route across tests.
    """
    import os
    import socket
    import subprocess
    import time

    import httpx

    from tests.llm_models.conftest import REPO_ROOT, _stop, _test_database_url

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings.test",
        "DATABASE_URL": _test_database_url(),
        "CELERY_TASK_ALWAYS_EAGER": "false",
        "ALLOW_PRIVATE_NODE_ENDPOINTS": "true",
        # Generous: tests hold requests at a stub's gate for seconds on a loaded machine (hung-node tests set less).
        "INFERENCE_FIRST_TOKEN_TIMEOUT_S": "20",
        "INFERENCE_LEASE_TTL_S": "1",
        "INFERENCE_ROUTE_CACHE_S": "0",
        "PYTHONUNBUFFERED": "1",
        **extra_env,
    }
    process = subprocess.Popen(
        [str(REPO_ROOT / ".venv" / "bin" / "uvicorn"), "config.asgi:application", *UVICORN_ARGS, "--host", "127.0.0.1",
         "--port", str(port), "--no-access-log", "--log-level", "warning"],
        cwd=REPO_ROOT, env=env, stdout=log_path.open("w"), stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            _stop(process)
            pytest.fail(f"uvicorn did not start:\n{log_path.read_text()[-4000:]}")
        time.sleep(0.2)
    process.base_url = base  # type: ignore[attr-defined]
    process.log_path = log_path  # type: ignore[attr-defined]
    return process


@pytest.fixture(scope="module")
def live_service(django_db_setup, django_db_blocker, tmp_path_factory):  # type: ignore[no-untyped-def]
    """A real uvicorn process (`start_service`) for the module. Tests using it need `transactional_db` so that
    what they write is committed and visible to it."""
    from tests.llm_models.conftest import _stop

    with django_db_blocker.unblock():
        process = start_service(tmp_path_factory.mktemp("uvicorn") / "server.log")
    try:
        yield process
    finally:
        _stop(process)


@pytest.fixture
def usage_journal_clean():  # type: ignore[no-untyped-def]
    """An empty usage journal: entries a previous test left name rows that test's flush removed."""
    import redis
    from django.conf import settings

    from inference.journal import stream as usage_journal

    client = redis.Redis.from_url(settings.USAGE_JOURNAL_URL)
    client.delete(usage_journal.STREAM, usage_journal.DEAD)
    yield client
    client.close()


def by_lean_path(row) -> bool:  # type: ignore[no-untyped-def]
    """Whether the lean /v1 path served this row: it was paid from a lease, not from a hold of its own."""
    from clients.models import Hold

    return not Hold.objects.filter(key=row.ledger_hold_key).exists() and row.channel == "direct"


def settle_usage(*, timeout_s: float = 15.0) -> None:
    """Wait until the lean path's leases are closed and its journal applied (what the Celery beat drain does)."""
    import time

    from clients.choices import HoldStatus
    from clients.models import Hold
    from inference.journal import stream as usage_journal

    deadline = time.monotonic() + timeout_s
    while True:
        usage_journal.drain()
        if not Hold.objects.filter(key__startswith="lease:", status=HoldStatus.HELD).exists():
            return
        if time.monotonic() > deadline:
            raise AssertionError("leases still open after the journal was drained")
        time.sleep(0.1)


# --- Real Celery workers ------------------------------------------------------------------------------------


@pytest.fixture
def start_worker(transactional_db, tmp_path):  # type: ignore[no-untyped-def]
    """Start real `celery worker` processes (tests/llm_models/conftest.py's recipe) that may call stub nodes;
    this process publishes tasks to the broker instead of running them. All are stopped at teardown."""
    import os
    import subprocess

    from config.celery import app as celery_app
    from tests.llm_models.conftest import CELERY_BIN, _broker_reachable, _stop, _test_database_url

    broker_url = celery_app.conf.broker_url
    if not _broker_reachable(broker_url):
        pytest.fail(f"Redis is not reachable at {broker_url}; the worker tests need it")
    eager = celery_app.conf.task_always_eager
    celery_app.conf.task_always_eager = False
    import redis

    redis.Redis.from_url(broker_url).delete("celery")  # tasks left over from an earlier run
    started: list[subprocess.Popen] = []

    def start(name: str = "w1", **extra_env: str) -> subprocess.Popen:
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "config.settings.test",
            "CELERY_BROKER_URL": broker_url,
            "DATABASE_URL": _test_database_url(),
            "CELERY_TASK_ALWAYS_EAGER": "false",
            "ALLOW_PRIVATE_NODE_ENDPOINTS": "true",
            "INFERENCE_FIRST_TOKEN_TIMEOUT_S": "10",
            "PYTHONUNBUFFERED": "1",
            **extra_env,
        }
        log_path = tmp_path / f"worker-{name}.log"
        process = subprocess.Popen(
            [str(CELERY_BIN), "-A", "config", "worker", "--pool=solo", "--concurrency=1", "-Q", "celery",
             "-n", f"{name}@%h", "--loglevel=INFO", "--without-heartbeat", "--without-gossip", "--without-mingle"],
            env=env, stdout=log_path.open("w"), stderr=subprocess.STDOUT, start_new_session=True,
            cwd=str(CELERY_BIN.parent.parent.parent),
        )  # fmt: skip
        process.log_path = log_path  # type: ignore[attr-defined]
        started.append(process)
        return process

    try:
        yield start
    finally:
        celery_app.conf.task_always_eager = eager
        for process in started:
            _stop(process)


def streamed(response) -> str:  # type: ignore[no-untyped-def]
    """The whole body of a streaming response from Django's test client (its content is an async iterator)."""
    from asgiref.sync import async_to_sync

    async def collect() -> bytes:
        return b"".join([part async for part in response.streaming_content])

    return async_to_sync(collect)().decode()


@pytest.fixture
def journal_parties() -> dict:
    """A client, a provider and its node: who a journal entry (tests/inference/journal_helpers.py) names."""
    client, _ = make_client()
    provider, _ = make_client(role=ClientRole.GPU_PROVIDER, approved=True)
    node, _ = make_node(owner=provider)
    return {"client_id": client.pk, "owner_id": provider.pk, "node_id": node.pk, "api_key_id": None}
