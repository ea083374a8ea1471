"""End to end (API.md §13): the real `gpu-node` agent, with a small fake trainer as its `train` hook, the real
service (uvicorn) and a stub backend go through upload → create → dispatch → progress → success; then the owner
chats with the fine-tuned model and another client gets 404. Also: cancel while running and while queued, and a job
whose node's agent dies."""

import json
import math
import sys
from collections.abc import Iterator
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import httpx
import pytest
from django.utils import timezone

from clients import ledger
from clients.choices import ClientRole
from clients.models import Hold
from llm_models.choices import NodeStatus
from llm_models.models import Node
from llm_models.services import node_mark_stale_offline
from tests.factories import make_client
from tests.llm_models.conftest import _test_database_url, wait_until
from tests.node_agent.conftest import Service
from tests.training.conftest import CHAT, JSONL, balance, fund
from training.models import TrainingEvent, TrainingJob
from training.services import training_sweep

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.live_server]
TRAINER = Path(__file__).with_name("fake_trainer.py")
BASE = "stub/model"


@pytest.fixture(scope="module")
def service(django_db_setup, django_db_blocker, tmp_path_factory) -> Iterator[Service]:  # type: ignore[no-untyped-def]
    """The service with uploads in a temporary folder and a fast training sweep."""
    with django_db_blocker.unblock():
        database_url = _test_database_url()
    folder = tmp_path_factory.mktemp("service")
    svc = Service(database_url, folder)
    svc.env["MEDIA_ROOT"] = str(folder / "media")
    svc.start()
    try:
        yield svc
    finally:
        svc.stop()


def _auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def _start_training_agent(agent, service: Service, backend_url: str, tmp_path: Path, step_s: str):  # type: ignore[no-untyped-def]
    _, provider_key = make_client(role=ClientRole.GPU_PROVIDER, approved=True)
    r = agent("register", "--server", service.url, "--api-key", provider_key, "--backend", backend_url,
              "--price-per-hour", "6.00")  # fmt: skip
    assert r.returncode == 0, r.stderr
    cancel_hook = tmp_path / "train_cancel.sh"
    cancel_hook.write_text("#!/bin/sh\necho cancelled\n")
    cancel_hook.chmod(0o755)
    config = json.loads(agent.config_path.read_text())
    config["capabilities"] = ["inference", "training"]
    config["hooks"] = {"train": [sys.executable, str(TRAINER)], "train_cancel": [str(cancel_hook)]}
    agent.config_path.write_text(json.dumps(config))
    agent.env["FAKE_TRAINER_STEP_S"] = step_s
    process = agent.start("run")
    node = Node.objects.get(pk=config["node_id"])
    wait_until(
        lambda: (n := Node.objects.get(pk=node.pk)).status == NodeStatus.ONLINE and "training" in n.capabilities,
        timeout=20,
        process=process,
    )
    return node, process


def _upload_and_create(service: Service, key: str, **extra: object) -> int:
    upload = httpx.post(f"{service.url}/v1/files", headers=_auth(key), timeout=10,
                        files={"file": ("chat.jsonl", JSONL.encode())}, data={"purpose": "fine-tune"})  # fmt: skip
    assert upload.status_code == 200, upload.text
    created = httpx.post(f"{service.url}/api/v1/training/create/", headers=_auth(key), timeout=10, json={
        "model": BASE, "file_id": upload.json()["id"], "epochs": 1, "learning_rate": 0.0001, "batch_size": 2, **extra,
    })  # fmt: skip
    assert created.status_code == 201, created.text
    return int(created.json()["id"])


def test_upload_create_dispatch_progress_success_then_the_owner_chats_with_its_model(
    service,
    agent,
    stub_node,
    tmp_path,
):
    node, process = _start_training_agent(agent, service, stub_node.base_url, tmp_path, step_s="1.5")
    owner, key = make_client()
    fund(owner, "20.00")
    stranger, stranger_key = make_client()
    fund(stranger, "20.00")

    job_id = _upload_and_create(service, key, suffix="e2e")
    assert TrainingJob.objects.get(pk=job_id).node_id == node.pk

    wait_until(lambda: TrainingJob.objects.get(pk=job_id).is_finished, timeout=60, process=process)

    job = TrainingJob.objects.get(pk=job_id)
    assert job.status == "succeeded", (
        job.status,
        job.error_message,
        list(job.events.values_list("message", flat=True)),
    )
    name = f"ft:{BASE}:e2e:{job_id}"
    assert (job.fine_tuned_model, job.progress) == (name, 1.0)
    losses = list(TrainingEvent.objects.filter(job=job, loss__isnull=False).values_list("loss", flat=True))
    assert losses and losses == sorted(losses, reverse=True)  # the curve the fake trainer printed, going down
    events = httpx.get(f"{service.url}/api/v1/training/jobs/{job_id}/events/", headers=_auth(key), timeout=10)
    assert [e["loss"] for e in events.json()["results"] if e["loss"] is not None] == losses
    # Billed by the started minute at the node's price (6.00/h: 0.10 a minute), the rest released.
    minutes = math.ceil((job.finished_at - job.started_at).total_seconds() / 60)
    assert job.charged == Decimal("0.1") * minutes
    assert balance(owner) == Decimal("20.00") - job.charged
    assert ledger.reconcile() == []

    stub_node.behaviour.answer = "fine-tuned hello"
    chat = {"model": name, "messages": [CHAT["messages"][0]], "max_tokens": 5}
    mine = httpx.post(f"{service.url}/v1/chat/completions", headers=_auth(key), json=chat, timeout=30)
    assert mine.status_code == 200, mine.text
    assert mine.json()["choices"][0]["message"]["content"] == "fine-tuned hello"
    assert stub_node.chat_requests[-1].body["model"] == name
    theirs = httpx.post(f"{service.url}/v1/chat/completions", headers=_auth(stranger_key), json=chat, timeout=30)
    assert theirs.status_code == 404
    assert theirs.json()["error"]["code"] == "model_not_found"
    own_models = httpx.get(f"{service.url}/v1/models", headers=_auth(key), timeout=10).json()["data"]
    assert name in [m["id"] for m in own_models]


def test_cancel_while_running_tells_the_agent_and_charges_started_minutes(
    service,
    agent,
    stub_node,
    tmp_path,
):
    node, process = _start_training_agent(agent, service, stub_node.base_url, tmp_path, step_s="5")
    owner, key = make_client()
    fund(owner, "20.00")
    job_id = _upload_and_create(service, key)
    wait_until(lambda: TrainingJob.objects.get(pk=job_id).status == "running", timeout=30, process=process)
    r = httpx.delete(f"{service.url}/api/v1/training/jobs/{job_id}/", headers=_auth(key), timeout=10)
    assert r.status_code == 200 and r.json()["status"] == "cancelled"
    assert Decimal(r.json()["charged"]) == Decimal("0.1")
    wait_until(
        lambda: node.commands.filter(action="train_cancel", status="succeeded").exists(), timeout=30, process=process
    )
    assert ledger.reconcile() == []


def test_cancel_while_queued_behind_a_busy_node_releases_everything(service, agent, stub_node, tmp_path):
    node, process = _start_training_agent(agent, service, stub_node.base_url, tmp_path, step_s="5")
    owner, key = make_client()
    fund(owner, "20.00")
    first = _upload_and_create(service, key)
    wait_until(lambda: TrainingJob.objects.get(pk=first).status == "running", timeout=30, process=process)
    waiting = _upload_and_create(service, key)  # the only training node is busy: it waits without one
    assert (TrainingJob.objects.get(pk=waiting).status, TrainingJob.objects.get(pk=waiting).node_id) == ("queued", None)

    r = httpx.delete(f"{service.url}/api/v1/training/jobs/{waiting}/", headers=_auth(key), timeout=10)

    assert r.status_code == 200, r.text
    assert (r.json()["status"], Decimal(r.json()["charged"])) == ("cancelled", Decimal("0"))
    assert Hold.objects.get(key=f"training:{waiting}").status == "released"
    assert balance(owner) == Decimal("20.00") - TrainingJob.objects.get(pk=first).held_amount  # only the first holds
    assert not node.commands.filter(params__job_id=waiting).exists()  # the node never heard of it
    assert ledger.reconcile() == []
    httpx.delete(f"{service.url}/api/v1/training/jobs/{first}/", headers=_auth(key), timeout=10)


def test_a_job_on_a_node_whose_agent_dies_is_failed_and_settled(service, agent, stub_node, tmp_path):
    node, process = _start_training_agent(agent, service, stub_node.base_url, tmp_path, step_s="5")
    owner, key = make_client()
    fund(owner, "20.00")
    job_id = _upload_and_create(service, key)
    wait_until(lambda: TrainingJob.objects.get(pk=job_id).status == "running", timeout=30, process=process)
    started_at = TrainingJob.objects.get(pk=job_id).started_at
    wait_until(lambda: Node.objects.get(pk=node.pk).last_heartbeat_at > started_at, timeout=10, process=process)

    process.kill()  # SIGKILL: no deregistration, no last report
    process.wait(10)
    later = timezone.now() + timedelta(minutes=10)
    node_mark_stale_offline(now=later)
    assert training_sweep(now=later)["node_lost"] == 1

    job = TrainingJob.objects.get(pk=job_id)
    last_seen = Node.objects.get(pk=node.pk).last_heartbeat_at
    assert (job.status, job.error_code, job.finished_at) == ("failed", "node_lost", last_seen)
    minutes = math.ceil((last_seen - job.started_at).total_seconds() / 60)  # started minutes, to its last heartbeat
    assert job.charged == Decimal("0.1") * minutes > 0
    assert balance(owner) == Decimal("20.00") - job.charged
    assert balance(node.owner) == job.charged * Decimal("0.7")
    assert Hold.objects.get(key=f"training:{job_id}").status != "held"
    assert node.commands.filter(action="train_cancel", params={"job_id": job_id}, status="pending").exists()
    assert ledger.reconcile() == []
