"""`train` and `train_cancel` in the agent (API.md §13): the hook's JSON progress lines stream into heartbeats as
`running` results, the job's cancel stops the hook's whole process group, and training holds up no other command.
The real `gpu-node run` against the real service is at the end."""

import json
import os
import signal
import sys
import time
from pathlib import Path

import pytest
from gpu_node import hooks
from gpu_node.config import Hook, NodeConfig

from clients.choices import ClientRole
from llm_models.choices import NodeStatus
from llm_models.models import Node, NodeCommand
from tests.factories import make_client
from tests.llm_models.conftest import wait_until
from tests.node_agent.test_agent_rentals import finished
from tests.node_agent.test_commands import ScriptedServer, make_agent, python_hook, reply

# --- progress lines --------------------------------------------------------------------------------------------


def test_a_json_progress_line_becomes_progress_metrics_and_a_message():
    line = '{"progress": 0.4, "step": 120, "epoch": 1, "loss": 1.23, "message": "epoch 1", "tag": "x"}\n'

    assert hooks.parse_progress(line) == {
        "progress": 0.4,
        "metrics": {"step": 120, "epoch": 1, "loss": 1.23},
        "output": "epoch 1",
    }


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ('{"progress": 1.7}', {"progress": 1.0}),
        ('{"progress": -2, "metrics": {"loss": 0.5, "note": "n"}}', {"progress": 0.0, "metrics": {"loss": 0.5}}),
        ('{"loss": NaN, "ok": true, "step": 3}', {"metrics": {"step": 3}}),
    ],
)
def test_progress_values_are_clamped_and_only_finite_numbers_are_metrics(line, expected):
    assert hooks.parse_progress(line) == expected


@pytest.mark.parametrize("line", ["loading model...", "[1, 2]", '{"not": "numbers"}', "{broken", ""])
def test_other_lines_are_ordinary_output(line):
    assert hooks.parse_progress(line) is None


def test_a_streaming_hook_hands_over_progress_as_it_comes_and_keeps_the_rest_as_output(tmp_path):
    hook = python_hook(
        tmp_path,
        "import json, os, sys\n"
        "params = json.load(sys.stdin)\n"
        "print('loading', params['base_model'], flush=True)\n"
        "print(json.dumps({'progress': 0.5, 'step': 1, 'loss': 2.0}), flush=True)\n"
        "print('a warning', file=sys.stderr, flush=True)\n"
        "print(json.dumps({'progress': 1.0, 'step': 2, 'loss': 1.5}), flush=True)\n"
        "json.dump({'fine_tuned_model': params['output_model']}, open(os.environ['GPU_NODE_RESULT_FILE'], 'w'))\n",
    )
    reports: list[dict] = []
    command = {"id": 5, "action": "train", "params": {"job_id": 1, "base_model": "org/a", "output_model": "ft:a:x:1"}}

    result = hooks.execute(command, {"train": hook}, on_progress=reports.append)

    started, *progress = reports
    assert started["output"].startswith(f"started {Path(sys.executable).name} (pid ")  # before any line it prints
    assert progress == [
        {"progress": 0.5, "metrics": {"step": 1, "loss": 2.0}},
        {"progress": 1.0, "metrics": {"step": 2, "loss": 1.5}},
    ]
    assert result["status"] == "succeeded"
    assert result["fine_tuned_model"] == "ft:a:x:1"
    assert sorted(result["output"].splitlines()) == ["a warning", "loading org/a"]


def test_a_failed_training_reports_no_model_even_if_its_result_file_names_one(tmp_path):
    hook = python_hook(
        tmp_path,
        "import json, os, sys\n"
        "json.dump({'fine_tuned_model': 'ft:a:x:1'}, open(os.environ['GPU_NODE_RESULT_FILE'], 'w'))\n"
        "print('CUDA out of memory', flush=True)\n"
        "sys.exit(1)\n",
    )

    result = hooks.execute({"id": 5, "action": "train", "params": {}}, {"train": hook}, on_progress=lambda r: None)

    assert result == {"id": 5, "status": "failed", "output": "CUDA out of memory\n\n[exit status 1]"}


def test_a_streaming_hook_past_its_timeout_is_killed(tmp_path):
    hook = python_hook(tmp_path, "import time\nprint('starting', flush=True)\ntime.sleep(30)\n", timeout_s=0.5)

    result = hooks.execute({"id": 1, "action": "train", "params": {}}, {"train": hook}, on_progress=lambda r: None)

    assert result["status"] == "failed"
    assert result["output"] == "starting\n\n[timed out after 0.5 s]"


# --- the agent: streaming, coalescing, cancel ------------------------------------------------------------------


def trainer_hook(tmp_path: Path) -> Hook:
    """A fake trainer: reports progress for every line of `feed`, starts a grandchild that outlives nothing, and
    finishes when `feed` says `done`."""
    feed = tmp_path / "feed"
    feed.write_text("")
    return python_hook(
        tmp_path,
        "import json, os, subprocess, sys, time\n"
        "params = json.load(sys.stdin)\n"
        "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
        f"open({str(tmp_path / 'child.pid')!r}, 'w').write(str(child.pid))\n"
        "seen = 0\n"
        "while True:\n"
        f"    lines = open({str(feed)!r}).read().splitlines()\n"
        "    for line in lines[seen:]:\n"
        "        if line == 'done':\n"
        "            json.dump({'fine_tuned_model': params['output_model']},"
        " open(os.environ['GPU_NODE_RESULT_FILE'], 'w'))\n"
        "            sys.exit(0)\n"
        "        print(json.dumps({'progress': float(line), 'loss': 1 - float(line)}), flush=True)\n"
        "    seen = len(lines)\n"
        "    time.sleep(0.05)\n",
        timeout_s=60,
    )


def folder(tmp_path: Path, name: str) -> Path:
    path = tmp_path / name
    path.mkdir()
    return path


def feed(tmp_path: Path, line: str) -> None:
    with (tmp_path / "feed").open("a") as f:
        f.write(line + "\n")


def wait_for(predicate, timeout: float = 10) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "not done in time"
        time.sleep(0.02)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as f:
        return f.read().split(")")[-1].split()[0] != "Z"  # a zombie waits only to be reaped


TRAIN = {"id": 10, "action": "train", "params": {"job_id": 7, "base_model": "org/a", "output_model": "ft:org/a:x:7"}}


@pytest.fixture
def server() -> ScriptedServer:
    return ScriptedServer()


def test_progress_goes_out_as_running_results_latest_only_then_the_outcome(server, tmp_path):
    agent = make_agent(server, train=trainer_hook(tmp_path))
    server.script = [reply(TRAIN)]
    agent.beat_once()
    feed(tmp_path, "0.1")
    wait_for(lambda: agent.book.outgoing())
    feed(tmp_path, "0.2")
    feed(tmp_path, "0.3")
    wait_for(lambda: agent.book.outgoing()[0].get("progress") == 0.3)

    agent.beat_once()
    agent.beat_once()  # nothing new since
    feed(tmp_path, "done")
    agent._trainer.shutdown(wait=True)
    agent.beat_once()

    sent = [body.get("results") for body in server.bodies[1:]]
    assert sent == [
        [{"progress": 0.3, "metrics": {"loss": 0.7}, "id": 10, "status": "running"}],
        None,
        [{"fine_tuned_model": "ft:org/a:x:7", "id": 10, "status": "succeeded", "output": ""}],
    ]


def test_a_progress_report_wakes_the_loop(server, tmp_path):
    agent = make_agent(server, train=trainer_hook(tmp_path))
    server.script = [reply(TRAIN)]
    agent.beat_once()

    feed(tmp_path, "0.5")

    assert agent._wake.wait(10)
    assert not agent._urgent.is_set()  # progress alone waits for PROGRESS_MIN_GAP_S after the last heartbeat
    feed(tmp_path, "done")
    agent._trainer.shutdown(wait=True)


def test_train_cancel_stops_the_jobs_process_group_and_both_are_reported(server, tmp_path):
    agent = make_agent(server, train=trainer_hook(tmp_path), reset=python_hook(folder(tmp_path, "r"), "print('reset')"))
    server.script = [reply(TRAIN)]
    agent.beat_once()
    feed(tmp_path, "0.25")
    wait_for(lambda: (tmp_path / "child.pid").exists() and agent.book.outgoing())
    child = int((tmp_path / "child.pid").read_text())

    server.script = [reply({"id": 11, "action": "reset", "params": {}})]
    agent.beat_once()
    agent._hooks.shutdown(wait=True)  # another command runs while the training goes on
    assert agent.book.outgoing()[0] == {"id": 11, "status": "succeeded", "output": "reset\n"}

    server.script = [reply({"id": 12, "action": "train_cancel", "params": {"job_id": 7}})]
    agent.beat_once()
    agent._trainer.shutdown(wait=True)
    agent.beat_once()

    results = {r["id"]: r for r in server.bodies[-1]["results"]}
    assert results[12] == {"id": 12, "status": "succeeded", "output": "stopped the training of job 7 (command 10)\n"}
    assert results[10]["status"] == "failed"
    assert results[10]["output"].endswith("[stopped by train_cancel (command 12)]")
    assert "fine_tuned_model" not in results[10]
    wait_for(lambda: not alive(child), timeout=5)


def test_a_cancel_before_its_train_arrives_stops_it_from_starting(server, tmp_path):
    marker = tmp_path / "ran"
    agent = make_agent(server, train=python_hook(tmp_path, f"open({str(marker)!r}, 'w').write('x')\n"))
    server.script = [reply({"id": 3, "action": "train_cancel", "params": {"job_id": 7}}, TRAIN)]

    agent.beat_once()
    agent._trainer.shutdown(wait=True)
    agent.beat_once()

    results = {r["id"]: r for r in server.bodies[-1]["results"]}
    assert results[3] == {"id": 3, "status": "succeeded", "output": "no training of job 7 is running here\n"}
    assert results[10]["status"] == "failed" and "cancelled (train_cancel) before it started" in results[10]["output"]
    assert not marker.exists()


CLEANUP = "import os\nprint('cleaned', os.environ['GPU_NODE_PARAM_JOB_ID'])\n"


def test_an_operators_train_cancel_hook_runs_after_the_stop(server, tmp_path):
    agent = make_agent(
        server,
        train=trainer_hook(tmp_path),
        train_cancel=python_hook(
            folder(tmp_path, "c"), "import os\nprint('cleaned', os.environ['GPU_NODE_PARAM_JOB_ID'])\n"
        ),
    )
    server.script = [reply(TRAIN, {"id": 12, "action": "train_cancel", "params": {"job_id": 7}})]

    agent.beat_once()
    agent._trainer.shutdown(wait=True)
    wait_for(lambda: len(agent.book.outgoing()) == 2)

    results = {r["id"]: r for r in agent.book.outgoing()}
    assert results[12]["status"] == "succeeded"
    assert results[12]["output"].endswith("cleaned 7\n")
    assert results[10]["status"] == "failed"


def test_a_node_with_a_train_hook_declares_training_and_train_cancel(server, tmp_path):
    agent = make_agent(server, train=Hook(argv=["/bin/true"]), start=Hook(argv=["/bin/true"]))

    agent.beat_once()

    assert server.bodies[0]["capabilities"] == ["containers", "inference", "training"]
    assert server.bodies[0]["actions"] == ["start", "train", "train_cancel"]


def test_a_train_hook_given_as_a_bare_argv_may_run_72_hours():
    config = NodeConfig.from_json(
        {"server_url": "http://s", "node_id": 1, "node_token": "t", "backend_url": "http://b", "hooks": {
            "train": ["gpu-node-train"], "reset": ["reset-gpu"]}}
    )  # fmt: skip

    assert config.hooks["train"].timeout_s >= 72 * 3600
    assert config.hooks["reset"].timeout_s == 300


def test_a_silent_trainer_is_reported_running_as_soon_as_it_starts(server, tmp_path):
    agent = make_agent(server, train=trainer_hook(tmp_path))  # prints nothing until fed
    server.script = [reply(TRAIN)]
    agent.beat_once()
    wait_for(lambda: (tmp_path / "child.pid").exists() and agent.book.outgoing())

    agent.beat_once()

    (report,) = server.bodies[-1]["results"]
    assert (report["id"], report["status"]) == (10, "running")
    assert report["output"].startswith("started ")
    feed(tmp_path, "done")
    agent._trainer.shutdown(wait=True)


def test_stopping_the_agent_stops_its_training(server, tmp_path):
    agent = make_agent(server, train=trainer_hook(tmp_path))
    server.script = [reply(TRAIN)]
    agent.beat_once()
    wait_for(lambda: (tmp_path / "child.pid").exists())

    agent._stop_training()
    agent._trainer.shutdown(wait=True)

    assert agent.book.outgoing()[0]["output"].endswith("[the agent stopped]")


# --- the real agent against the real service --------------------------------------------------------------------

FAKE_TRAINER = """\
import json, os, sys, time
params = json.load(sys.stdin)
go = os.environ["FAKE_TRAINER_GO"]
print("loading", params["base_model"], flush=True)
for step in (1, 2, 3):
    print(json.dumps({"progress": step / 4, "step": step, "epoch": 1, "loss": 2.0 / step, "message": f"step {step}"}),
          flush=True)
while not os.path.exists(go):  # the test looks at the server's record of the running reports first
    time.sleep(0.05)
print(json.dumps({"progress": 1.0, "step": 4, "epoch": 1, "loss": 0.4}), flush=True)
json.dump({"fine_tuned_model": params["output_model"]}, open(os.environ["GPU_NODE_RESULT_FILE"], "w"))
"""


def train_params(service, job_id: int) -> dict:  # type: ignore[no-untyped-def]
    """A `train` command's params as the service sends them (API.md §13)."""
    return {
        "job_id": job_id,
        "base_model": "Qwen/Qwen2.5-7B-Instruct",
        "dataset_url": f"{service.url}/api/v1/llm_models/files/1/",
        "hyperparameters": {"n_epochs": 1, "batch_size": 2, "learning_rate_multiplier": 1.0},
        "output_model": f"ft:Qwen/Qwen2.5-7B-Instruct:job:{job_id}",
    }


@pytest.mark.django_db(transaction=True)
@pytest.mark.live_server
def test_the_real_agent_streams_training_progress_to_the_service_then_the_model(service, backend, agent, tmp_path):
    _, provider_key = make_client(role=ClientRole.GPU_PROVIDER, approved=True)
    agent.register(service, backend, provider_key, "--price-per-hour", "2.50")
    trainer = tmp_path / "trainer.py"
    trainer.write_text(FAKE_TRAINER)
    go = tmp_path / "go"
    config = json.loads(agent.config_path.read_text())
    config["hooks"] = {"train": [sys.executable, str(trainer)]}
    agent.config_path.write_text(json.dumps(config))
    agent.env["FAKE_TRAINER_GO"] = str(go)
    process = agent.start("run")
    node = Node.objects.get()
    wait_until(lambda: Node.objects.get(pk=node.pk).status == NodeStatus.ONLINE, timeout=15, process=process)
    wait_until(lambda: "training" in Node.objects.get(pk=node.pk).capabilities, timeout=15, process=process)
    train = NodeCommand.objects.create(node=node, action="train", params=train_params(service, 41))

    def reported(step: int) -> bool:
        train.refresh_from_db()
        return train.outcome.get("metrics", {}).get("step") == step

    wait_until(lambda: reported(3), timeout=20, process=process)
    assert train.status == "running"
    assert train.outcome == {"progress": 0.75, "metrics": {"step": 3, "epoch": 1, "loss": pytest.approx(2 / 3)}}
    assert train.result == "step 3"
    go.write_text("")
    wait_until(lambda: finished(train), timeout=20, process=process)

    assert train.status == "succeeded"
    assert train.outcome["fine_tuned_model"] == "ft:Qwen/Qwen2.5-7B-Instruct:job:41"
    assert train.result.strip() == "loading Qwen/Qwen2.5-7B-Instruct"


@pytest.mark.django_db(transaction=True)
@pytest.mark.live_server
def test_the_real_agent_stops_a_training_on_train_cancel(service, backend, agent, tmp_path):
    _, provider_key = make_client(role=ClientRole.GPU_PROVIDER, approved=True)
    agent.register(service, backend, provider_key, "--price-per-hour", "2.50")
    trainer = tmp_path / "trainer.py"
    trainer.write_text(FAKE_TRAINER)
    config = json.loads(agent.config_path.read_text())
    config["hooks"] = {"train": [sys.executable, str(trainer)]}
    agent.config_path.write_text(json.dumps(config))
    agent.env["FAKE_TRAINER_GO"] = str(tmp_path / "never")
    process = agent.start("run")
    node = Node.objects.get()
    wait_until(lambda: Node.objects.get(pk=node.pk).status == NodeStatus.ONLINE, timeout=15, process=process)
    train = NodeCommand.objects.create(node=node, action="train", params=train_params(service, 42))
    train_progress = lambda: NodeCommand.objects.get(pk=train.pk).outcome.get("progress")  # noqa: E731
    wait_until(lambda: train_progress() == 0.75, timeout=20, process=process)

    cancel = NodeCommand.objects.create(node=node, action="train_cancel", params={"job_id": 42})
    wait_until(lambda: finished(cancel) and finished(train), timeout=20, process=process)

    assert cancel.status == "succeeded"
    assert cancel.result.strip() == f"stopped the training of job 42 (command {train.pk})"
    assert train.status == "failed"
    assert train.result.endswith(f"[stopped by train_cancel (command {cancel.pk})]")
    process.send_signal(signal.SIGTERM)
    assert process.wait(15) == 0
