"""node_agent/README.md's config and hook example work as written: copied from the README, run by the real agent
against the real service, for every action the server sends (API.md §3, §6). And a provider who adds a missing
hook gets the action back by restarting the agent, without registering again."""

import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from gpu_node import docker_hooks
from gpu_node.config import NodeConfig
from rest_framework.test import APIClient

from clients.choices import ClientRole
from llm_models.choices import NodeCommandAction, NodeStatus
from llm_models.models import Node, NodeCommand
from rentals import services
from rentals.commands import rental_command
from tests.conftest import bearer
from tests.factories import make_client
from tests.llm_models.conftest import wait_until
from tests.node_agent import fake_docker
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
    # Training's `train` and (built-in) `train_cancel` have their own README section, "Serving training jobs".
    training = {NodeCommandAction.TRAIN.value, NodeCommandAction.TRAIN_CANCEL.value}
    assert set(readme_config_hooks()) == set(NodeCommandAction.values) - training


def readme_docker_hooks() -> dict:
    """The Docker hooks section's `"hooks": {...}` fragment, as an agent config would hold it."""
    (fragment,) = [block for block in readme_blocks("json") if block.lstrip().startswith('"hooks"')]
    return json.loads("{" + fragment + "}")["hooks"]


def test_the_readmes_docker_hooks_config_parses_and_names_an_installed_command_for_every_action(tmp_path):
    """Copied into an agent's config, the Docker hooks block loads (gpu_node.config), has a hook for every action
    the server sends a rental, and each runs a command the agent installs (`gpu-node-docker`, a console script of
    node_agent/pyproject.toml, beside this Python) with an action that command knows: run as written (with a fake
    `docker` on PATH), each answers its action, not a usage error."""
    raw = readme_docker_hooks()
    config = NodeConfig.from_json(
        {
            "server_url": "https://market.example.com",
            "node_id": 1,
            "node_token": "gmn_x",
            "backend_url": "http://127.0.0.1:8001/v1",
            "hooks": raw,
        }
    )
    rental_actions = {NodeCommandAction.START, NodeCommandAction.STOP, NodeCommandAction.RESET, NodeCommandAction.END}
    assert set(config.hooks) == {a.value for a in rental_actions} == set(docker_hooks.ACTIONS)
    scripts = tomllib.loads((README.parent / "pyproject.toml").read_text())["project"]["scripts"]
    bin_dir = Path(sys.executable).parent
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    fake_docker.install(fake_bin)
    env = {
        **os.environ,
        "PATH": f"{fake_bin}:{bin_dir}:/usr/bin:/bin",
        "FAKE_DOCKER_LOG": str(tmp_path / "docker.log"),
        "FAKE_DOCKER_STATE": str(tmp_path / "docker-state"),
        "GPU_NODE_PUBLIC_HOST": "203.0.113.7",
    }
    params = {
        "rental_id": 7,
        "image": "",
        "env": {},
        "ports": [],
        "volumes": [],
        "jupyter": False,
        "snapshot_id": None,
        "ssh_public_key": SSH_KEY,
        "ssh_user": None,
    }
    for action in ("start", "stop", "reset", "end"):  # a rental's life, in order
        hook = config.hooks[action]
        command, *args = hook.argv
        assert command in scripts, f"{action}: {command!r} is not a command the agent installs"
        assert shutil.which(command, path=env["PATH"]), f"{action}: {command!r} not found beside the agent"
        assert args == [action] and args[0] in docker_hooks.ACTIONS, hook.argv
        done = subprocess.run(
            hook.argv, input=json.dumps(params), env=env, capture_output=True, text=True, timeout=60, check=False
        )
        assert done.returncode == 0, (action, done.stdout, done.stderr)
        assert "usage:" not in done.stderr
    assert config.hooks["start"].timeout_s == config.hooks["stop"].timeout_s == 1800
    calls = (tmp_path / "docker.log").read_text()
    assert "run" in calls and "rm" in calls, calls


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
    jobs += [rental_command(rental=rental, action=action) for action in ("stop", "start", "reset")]
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
