"""The agent's reference Docker hooks (API.md §14), against a fake `docker` on PATH that records its arguments;
and through the real agent and service: rent an image with Jupyter, see the access, snapshot, end."""

import itertools
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from gpu_node import hooks
from gpu_node.config import Hook
from rest_framework.test import APIClient

from clients.choices import ClientRole
from llm_models.choices import NodeStatus
from llm_models.models import Node, NodeCommand
from rentals.models import Rental, Snapshot
from tests.conftest import bearer
from tests.factories import make_client
from tests.llm_models.conftest import wait_until
from tests.node_agent import fake_docker
from tests.rentals.conftest import SSH_KEY, fund

HOST = "203.0.113.7"
PARAMS = {
    "rental_id": 7,
    "image": "pytorch/pytorch:2.4.0-cuda12.1-cudnn9-runtime",
    "env": {"HF_TOKEN": "hf_abc", "MODE": "train run"},
    "ports": [6006],
    "volumes": [{"path": "/workspace", "size_gb": 100}, {"path": "/data", "size_gb": 5}],
    "jupyter": True,
    "snapshot_id": None,
    "ssh_public_key": SSH_KEY,
    "ssh_user": None,
}


@pytest.fixture
def docker_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fake docker first on PATH; returns its call log."""
    folder = tmp_path / "docker-bin"
    folder.mkdir()
    fake_docker.install(folder)
    log = tmp_path / "docker.log"
    monkeypatch.setenv("PATH", f"{folder}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_DOCKER_LOG", str(log))
    monkeypatch.setenv("FAKE_DOCKER_STATE", str(tmp_path / "docker-state"))
    monkeypatch.setenv("GPU_NODE_PUBLIC_HOST", HOST)
    return log


def hook(action: str) -> Hook:
    return Hook(argv=[sys.executable, "-m", "gpu_node.docker_hooks", action], timeout_s=60)


def run(action: str, params: dict) -> dict:
    """The result the agent would send for this command."""
    return hooks.execute({"id": 1, "action": action, "params": params}, {action: hook(action)})


def test_start_runs_the_image_with_gpus_env_ports_volumes_and_reports_access(docker_env):
    result = run("start", PARAMS)

    assert result["status"] == "succeeded", result["output"]
    calls = fake_docker.calls(docker_env)
    (run_call,) = [c for c in calls if c[0] == "run"]
    assert run_call[:9] == ["run", "-d", "--name", "gpu-rental-7", "--gpus", "all", "--restart", "unless-stopped",
                            "--label"]  # fmt: skip
    pairs = list(itertools.pairwise(run_call))
    assert ("-e", "HF_TOKEN=hf_abc") in pairs and ("-e", "MODE=train run") in pairs
    assert ("-e", f"PUBLIC_KEY={SSH_KEY}") in pairs
    assert [b for a, b in pairs if a == "-p"] == ["22", "6006", "8888"]
    assert [b for a, b in pairs if a == "-v"] == ["gpu-rental-7-vol0:/workspace", "gpu-rental-7-vol1:/data"]
    assert run_call[-1] == PARAMS["image"]
    assert ["volume", "create", "--label", "gpu-node.rental=7", "--label", "gpu-node.size_gb=100",
            "gpu-rental-7-vol0"] in calls  # fmt: skip
    assert fake_docker.stdin_of(docker_env, "exec", "-i", "gpu-rental-7") == [SSH_KEY + "\n"]
    jupyter = next(c for c in calls if c[:5] == ["exec", "-d", "gpu-rental-7", "jupyter", "lab"])
    token = next(a for a in jupyter if a.startswith("--ServerApp.token=")).split("=", 1)[1]
    assert result["access"] == {
        "ssh_host": HOST,
        "ssh_port": 40022,
        "ssh_user": "root",
        "jupyter_url": f"http://{HOST}:48888/lab?token={token}",
        "ports": {"6006": f"{HOST}:46006", "8888": f"{HOST}:48888"},
    }
    assert ("-e", f"JUPYTER_TOKEN={token}") in pairs


def test_start_of_an_existing_container_starts_it_again(docker_env):
    run("start", PARAMS)

    again = run("start", {**PARAMS, "jupyter": False, "ports": []})

    assert again["status"] == "succeeded"
    assert [c[0] for c in fake_docker.calls(docker_env)].count("run") == 1
    assert ["start", "gpu-rental-7"] in fake_docker.calls(docker_env)
    assert again["access"] == {"ssh_host": HOST, "ssh_port": 40022, "ssh_user": "root"}


def test_start_without_an_image_keeps_the_default_image_alive(docker_env):
    result = run("start", {"rental_id": 3, "ssh_public_key": ""})

    assert result["status"] == "succeeded"
    (run_call,) = [c for c in fake_docker.calls(docker_env) if c[0] == "run"]
    assert run_call[-3:] == ["ubuntu:24.04", "sleep", "infinity"]


@pytest.mark.parametrize(
    "params",
    [
        {**PARAMS, "env": {"BAD-NAME": "x"}},
        {**PARAMS, "image": "ubuntu; rm -rf /"},
        {**PARAMS, "volumes": [{"path": "/a/../etc", "size_gb": 1}]},
        {**PARAMS, "rental_id": "7; reboot"},
    ],
)
def test_start_refuses_params_it_would_not_hand_to_docker(docker_env, params):
    result = run("start", params)

    assert result["status"] == "failed" and "error:" in result["output"]
    assert not [c for c in fake_docker.calls(docker_env) if c[0] == "run"]
    assert "access" not in result


def test_stop_with_snapshot_commits_and_reports_the_ref(docker_env, monkeypatch):
    run("start", PARAMS)
    monkeypatch.setenv("GPU_NODE_DOCKER_SNAPSHOT_REPO", "registry.example.com/snaps")
    monkeypatch.setenv("GPU_NODE_DOCKER_PUSH", "1")

    result = run("stop", {"rental_id": 7, "snapshot": True})

    assert result["status"] == "succeeded", result["output"]
    ref = result["snapshot_ref"]
    assert ref.startswith("registry.example.com/snaps:rental-7-")
    calls = fake_docker.calls(docker_env)
    assert calls[-3:] == [["commit", "gpu-rental-7", ref], ["push", ref], ["stop", "gpu-rental-7"]]


def test_stop_without_snapshot_only_stops(docker_env):
    result = run("stop", {"rental_id": 7})

    assert (result["status"], "snapshot_ref" in result) == ("succeeded", False)
    assert fake_docker.calls(docker_env) == [["stop", "gpu-rental-7"]]


def test_end_removes_the_container_and_its_volumes(docker_env):
    run("start", PARAMS)

    result = run("end", {"rental_id": 7})

    assert result["status"] == "succeeded"
    calls = fake_docker.calls(docker_env)
    assert ["rm", "-f", "gpu-rental-7"] in calls
    assert ["volume", "rm", "-f", "gpu-rental-7-vol0"] in calls and ["volume", "rm", "-f", "gpu-rental-7-vol1"] in calls


def test_a_failing_docker_fails_the_command_with_its_message(docker_env, monkeypatch):
    monkeypatch.setenv("FAKE_DOCKER_FAIL", "run")

    result = run("start", PARAMS)

    assert result["status"] == "failed"
    assert "docker run failed" in result["output"] and "refused" in result["output"]


def test_a_hook_result_file_that_is_not_json_fails_the_command(tmp_path):
    script = tmp_path / "hook"
    script.write_text('#!/bin/sh\necho done\necho "not json" > "$GPU_NODE_RESULT_FILE"\n')
    script.chmod(0o755)

    result = hooks.execute({"id": 5, "action": "start", "params": {}}, {"start": Hook(argv=[str(script)])})

    assert result["status"] == "failed" and "not JSON" in result["output"]


def test_a_structured_field_of_the_wrong_type_fails_the_command_in_the_agent(tmp_path):
    script = tmp_path / "hook"
    script.write_text("""#!/bin/sh\necho '{"access": "ssh root@host"}' > "$GPU_NODE_RESULT_FILE"\n""")
    script.chmod(0o755)

    result = hooks.execute({"id": 5, "action": "start", "params": {}}, {"start": Hook(argv=[str(script)])})

    assert result["status"] == "failed" and "must be a JSON object" in result["output"]
    assert "access" not in result


def test_only_known_structured_fields_leave_the_agent(tmp_path):
    script = tmp_path / "hook"
    script.write_text(
        "#!/bin/sh\n"
        """echo '{"snapshot_ref": "img:1", "id": 99, "status": "failed", "other": 1}' > "$GPU_NODE_RESULT_FILE"\n"""
    )
    script.chmod(0o755)

    result = hooks.execute({"id": 5, "action": "stop", "params": {}}, {"stop": Hook(argv=[str(script)])})

    assert result == {"id": 5, "status": "succeeded", "output": "", "snapshot_ref": "img:1"}


@pytest.mark.django_db(transaction=True)
@pytest.mark.live_server
def test_the_agent_runs_an_instance_through_the_docker_hooks(service, backend, agent, tmp_path):
    _, provider_key = make_client(role=ClientRole.GPU_PROVIDER, approved=True)
    agent.register(service, backend, provider_key, "--price-per-hour", "2.50")
    fake_docker.install(Path(agent.env["PATH"].split(os.pathsep)[0]))
    log = tmp_path / "docker.log"
    agent.env.update(
        FAKE_DOCKER_LOG=str(log), FAKE_DOCKER_STATE=str(tmp_path / "docker-state"), GPU_NODE_PUBLIC_HOST=HOST
    )
    config = json.loads(agent.config_path.read_text())
    config["hooks"] = {action: hook(action).to_json() for action in ("start", "stop", "reset", "end")}
    agent.config_path.write_text(json.dumps(config))
    process = agent.start("run")
    node = Node.objects.get()
    wait_until(lambda: Node.objects.get(pk=node.pk).status == NodeStatus.ONLINE, timeout=15, process=process)
    wait_until(lambda: "containers" in Node.objects.get(pk=node.pk).capabilities, timeout=15, process=process)
    renter, raw = make_client()
    fund(renter)
    api = APIClient()

    r = api.post(
        "/api/v1/rentals/",
        {"node_id": node.pk, "hours": 1, "image": "jupyter/base-notebook:latest", "jupyter": True,
         "ssh_public_key": SSH_KEY},
        format="json", **bearer(raw),
    )  # fmt: skip

    assert r.status_code == 201, r.json()
    rental_id = r.json()["id"]
    wait_until(lambda: Rental.objects.get(pk=rental_id).access is not None, timeout=20, process=process)
    access = api.get(f"/api/v1/rentals/{rental_id}/", **bearer(raw)).json()["access"]
    assert (access["ssh_host"], access["ssh_port"], access["ssh_user"]) == (HOST, 40022, "root")
    assert access["jupyter_url"].startswith(f"http://{HOST}:48888/lab?token=")
    run_call = next(c for c in fake_docker.calls(log) if c[0] == "run")
    assert run_call[-1] == "jupyter/base-notebook:latest" and f"gpu-rental-{rental_id}" in run_call

    stop = api.post(f"/api/v1/rentals/{rental_id}/stop/", {"snapshot": True}, format="json", **bearer(raw))
    assert stop.status_code == 202
    wait_until(lambda: Snapshot.objects.filter(rental_id=rental_id).exists(), timeout=20, process=process)
    snapshot = api.get("/api/v1/snapshots/", **bearer(raw)).json()["results"][0]
    assert snapshot["image_ref"].startswith(f"gpu-node-snapshots:rental-{rental_id}-")
    assert ["commit", f"gpu-rental-{rental_id}", snapshot["image_ref"]] in fake_docker.calls(log)

    api.delete(f"/api/v1/rentals/{rental_id}/", **bearer(raw))
    end = NodeCommand.objects.get(rental_id=rental_id, action="end")
    wait_until(lambda: NodeCommand.objects.get(pk=end.pk).status == "succeeded", timeout=20, process=process)
    assert ["rm", "-f", f"gpu-rental-{rental_id}"] in fake_docker.calls(log)


def test_the_module_runs_as_a_command(docker_env):
    done = subprocess.run(
        [sys.executable, "-m", "gpu_node.docker_hooks", "bogus"], capture_output=True, text=True, check=False
    )

    assert done.returncode == 2 and "usage" in done.stderr
