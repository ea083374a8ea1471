"""The real `gpu-node run` against the real service: a rental's commands reach it in heartbeat replies, its hooks
run, and the jobs end with the hooks' outcome and output (API.md §3, §6)."""

import json
from pathlib import Path

import pytest
from rest_framework.test import APIClient

from clients.choices import ClientRole
from llm_models.choices import NodeStatus
from llm_models.models import Node, NodeCommand
from rentals import services
from rentals.commands import rental_command
from tests.conftest import bearer
from tests.factories import make_client
from tests.llm_models.conftest import wait_until
from tests.rentals.conftest import SSH_KEY, fund

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.live_server]


def write_hook(folder: Path, name: str, exit_status: int = 0) -> str:
    """A small shell script that appends what it was asked to a log file, prints a line and exits."""
    script = folder / name
    log = folder / "hooks.log"
    script.write_text(
        "#!/bin/sh\n"
        f'echo "$GPU_NODE_ACTION rental=$GPU_NODE_PARAM_RENTAL_ID key=$GPU_NODE_PARAM_SSH_PUBLIC_KEY" >> {log}\n'
        'echo "hook $GPU_NODE_ACTION ran"\n'
        f"exit {exit_status}\n"
    )
    script.chmod(0o755)
    return str(script)


def finished(job: NodeCommand) -> bool:
    job.refresh_from_db()
    return job.status in ("succeeded", "failed")


def test_the_agent_runs_a_rentals_commands_through_its_hooks(service, backend, agent, tmp_path):
    _, provider_key = make_client(role=ClientRole.GPU_PROVIDER, approved=True)
    agent.register(service, backend, provider_key, "--price-per-hour", "2.50")
    hooks = tmp_path / "hooks"
    hooks.mkdir()
    config = json.loads(agent.config_path.read_text())
    config["hooks"] = {
        "start": [write_hook(hooks, "start")],
        "stop": [write_hook(hooks, "stop", exit_status=3)],
        "end": [write_hook(hooks, "end")],
    }  # no hook for reset
    agent.config_path.write_text(json.dumps(config))
    process = agent.start("run")
    node = Node.objects.get()
    wait_until(lambda: Node.objects.get(pk=node.pk).status == NodeStatus.ONLINE, timeout=15, process=process)
    renter, raw = make_client()
    fund(renter)

    rental = services.rental_start(client=renter, node_id=node.pk, hours=2, ssh_public_key=SSH_KEY)
    key = NodeCommand.objects.get(rental=rental, action="start")  # the first command: start, with the key
    start = rental_command(rental=rental, action="start")
    stop = rental_command(rental=rental, action="stop")
    reset = rental_command(rental=rental, action="reset")
    for job in (key, start, stop, reset):
        wait_until(lambda job=job: finished(job), timeout=15, process=process)

    assert (key.status, key.result.strip()) == ("succeeded", "hook start ran")
    assert (start.status, start.result.strip()) == ("succeeded", "hook start ran")
    assert stop.status == "failed"
    assert stop.result.startswith("hook stop ran") and "exit status 3" in stop.result
    assert reset.status == "failed"
    log = (hooks / "hooks.log").read_text().splitlines()
    assert log[:3] == [
        f"start rental={rental.pk} key={SSH_KEY}",
        f"start rental={rental.pk} key={SSH_KEY}",
        f"stop rental={rental.pk} key=",
    ]
    api = APIClient()
    r = api.post(f"/api/v1/rentals/{rental.pk}/reset/", **bearer(raw))
    assert (r.status_code, r.json()["errors"][0]["code"]) == (501, "action_not_supported")

    cancelled = api.delete(f"/api/v1/rentals/{rental.pk}/", **bearer(raw))
    assert cancelled.json()["status"] == "cancelled"
    end = NodeCommand.objects.get(rental=rental, action="end")
    wait_until(lambda: finished(end), timeout=15, process=process)
    assert end.status == "succeeded"
