"""node_agent/README.md's config and hook example work as written: copied from the README, run by the real agent
against the real service, for every action the server sends (API.md §3, §6). And a provider who adds a missing
hook gets the action back by restarting the agent, without registering again."""

import json
import re
from pathlib import Path

import pytest
from rest_framework.test import APIClient

from clients.choices import ClientRole
from llm_models.choices import NodeStatus
from llm_models.models import Node, NodeCommand
from rentals import services
from tests.conftest import bearer
from tests.factories import make_client
from tests.llm_models.conftest import wait_until
from tests.node_agent.test_agent_rentals import finished
from tests.rentals.conftest import SSH_KEY, fund

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.live_server]

README = Path(__file__).resolve().parents[2] / "node_agent" / "README.md"
HOOK_PATH = "/usr/local/lib/gpu-node/rental-hook"
OTHER_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBm0b1rJ0uCv0m0Y9b6cC8m3ex0Zr2W1zNwq8m8s0jXq someone@else"


def readme_blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", README.read_text(), flags=re.DOTALL)


def readme_config_hooks() -> dict:
    # The agent's config (a whole JSON object); the Docker hooks section shows a `"hooks": {...}` fragment.
    (config,) = [
        json.loads(block) for block in readme_blocks("json") if block.lstrip().startswith("{") and '"hooks"' in block
    ]
    return config["hooks"]


def install_readme_hook(folder: Path) -> dict:
    """The README's hook script as a file, and the README's `hooks` config pointing at it."""
    (script,) = readme_blocks("sh")
    path = folder / "rental-hook"
    path.write_text(script)
    path.chmod(0o755)
    return json.loads(json.dumps(readme_config_hooks()).replace(HOOK_PATH, str(path)))


def test_the_readmes_config_names_a_hook_for_every_action_the_server_sends():
    from llm_models.choices import NodeCommandAction

    # Training's `train` and (built-in) `train_cancel` have their own README section, "Serving training jobs".
    training = {NodeCommandAction.TRAIN.value, NodeCommandAction.TRAIN_CANCEL.value}
    assert set(readme_config_hooks()) == set(NodeCommandAction.values) - training


def start_agent_with_readme_hooks(service, backend, agent, tmp_path, *, unsupported: list[str]):  # type: ignore[no-untyped-def]
    _, provider_key = make_client(role=ClientRole.GPU_PROVIDER, approved=True)
    agent.register(service, backend, provider_key, "--price-per-hour", "2.50")
    node = Node.objects.get()
    # The operator set the node's SSH login (admin); an earlier agent without some hooks left them `unsupported`.
    Node.objects.filter(pk=node.pk).update(ssh_user="renter", unsupported_actions=unsupported)
    config = json.loads(agent.config_path.read_text())
    config["hooks"] = install_readme_hook(tmp_path)
    agent.config_path.write_text(json.dumps(config))
    home_root = tmp_path / "home"
    agent.env.update(GPU_NODE_STATE_DIR=str(tmp_path / "state"), GPU_NODE_HOME_ROOT=str(home_root))
    process = agent.start("run")
    wait_until(lambda: Node.objects.get(pk=node.pk).status == NodeStatus.ONLINE, timeout=15, process=process)
    return node, process, home_root / "renter" / ".ssh" / "authorized_keys"


def test_the_readmes_hook_runs_every_rental_action_as_written(service, backend, agent, tmp_path):
    node, process, keys = start_agent_with_readme_hooks(service, backend, agent, tmp_path, unsupported=[])
    keys.parent.mkdir(parents=True)
    keys.write_text(OTHER_KEY + "\n")  # a key that was there before the rental stays
    renter, raw = make_client()
    fund(renter)

    rental = services.rental_start(client=renter, node_id=node.pk, hours=2, ssh_public_key=SSH_KEY)
    jobs = [NodeCommand.objects.get(rental=rental, action="start")]  # every rental's first command
    jobs += [services.rental_command(rental=rental, action=action) for action in ("stop", "start", "reset")]
    for job in jobs:
        wait_until(lambda job=job: finished(job), timeout=15, process=process)

    assert [(job.action, job.status) for job in jobs] == [
        ("start", "succeeded"),
        ("stop", "succeeded"),
        ("start", "succeeded"),
        ("reset", "succeeded"),
    ], [job.result for job in jobs]
    assert jobs[0].result.strip().splitlines() == [
        f"rental {rental.pk}: key added for renter",
        f"rental {rental.pk}: started",
    ]
    assert keys.read_text().splitlines() == [OTHER_KEY, SSH_KEY]  # once, though started twice
    shown = APIClient().get(f"/api/v1/rentals/{rental.pk}/", **bearer(raw)).json()
    assert shown["access"]["ssh_user"] == "renter" and shown["access"]["ssh_port"] == 22

    r = APIClient().delete(f"/api/v1/rentals/{rental.pk}/", **bearer(raw))
    assert r.json()["status"] == "cancelled"
    end = NodeCommand.objects.get(rental=rental, action="end")
    wait_until(lambda: finished(end), timeout=15, process=process)
    assert (end.status, end.result.strip()) == ("succeeded", f"rental {rental.pk}: ended, access removed")
    assert keys.read_text().splitlines() == [OTHER_KEY]


def test_an_agent_restarted_with_the_missing_hook_clears_the_remembered_unsupported(service, backend, agent, tmp_path):
    node, process, _ = start_agent_with_readme_hooks(service, backend, agent, tmp_path, unsupported=["reset", "stop"])
    wait_until(lambda: Node.objects.get(pk=node.pk).unsupported_actions == [], timeout=15, process=process)
    renter, raw = make_client()
    fund(renter)
    rental = services.rental_start(client=renter, node_id=node.pk, hours=1)

    r = APIClient().post(f"/api/v1/rentals/{rental.pk}/reset/", **bearer(raw))

    assert r.status_code == 202, r.json()
    job = NodeCommand.objects.get(rental=rental, action="reset")
    wait_until(lambda: finished(job), timeout=15, process=process)
    assert job.status == "succeeded"
