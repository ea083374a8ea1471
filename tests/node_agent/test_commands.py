"""Commands from heartbeats: the hook runner, and results reported until a heartbeat carrying them is accepted."""

import contextlib
import json
import sys
import threading
from pathlib import Path

import pytest
from gpu_node import hooks
from gpu_node.config import Hook, NodeConfig
from gpu_node.runner import Agent, Backoff, TokenRefused
from gpu_node.server_api import ServerError, ServerUnreachable


def python_hook(tmp_path: Path, body: str, timeout_s: float = 10) -> Hook:
    script = tmp_path / "hook.py"
    script.write_text(body)
    return Hook(argv=[sys.executable, str(script)], timeout_s=timeout_s)


def test_a_hook_gets_params_as_env_vars_and_json_on_stdin(tmp_path):
    hook = python_hook(
        tmp_path,
        "import json, os, sys\n"
        "params = json.load(sys.stdin)\n"
        "print(os.environ['GPU_NODE_ACTION'], os.environ['GPU_NODE_COMMAND_ID'], "
        "os.environ['GPU_NODE_PARAM_SSH_KEY'], os.environ['GPU_NODE_PARAM_HOURS'], params['hours'])\n",
    )
    command = {"id": 7, "action": "rental_start", "params": {"ssh-key": "ssh-ed25519 AAAA", "hours": 2}}

    result = hooks.execute(command, {"rental_start": hook})

    assert result == {"id": 7, "status": "succeeded", "output": "rental_start 7 ssh-ed25519 AAAA 2 2\n"}


def test_a_failing_hook_reports_its_output_and_exit_status(tmp_path):
    hook = python_hook(tmp_path, "import sys\nprint('disk full', file=sys.stderr)\nsys.exit(4)\n")

    result = hooks.execute({"id": 1, "action": "reset", "params": {}}, {"reset": hook})

    assert result["status"] == "failed"
    assert result["output"] == "disk full\n\n[exit status 4]"


def test_a_hook_past_its_timeout_is_killed_and_fails(tmp_path):
    hook = python_hook(tmp_path, "import time\nprint('starting', flush=True)\ntime.sleep(30)\n", timeout_s=0.5)

    result = hooks.execute({"id": 1, "action": "reset", "params": {}}, {"reset": hook})

    assert result["status"] == "failed"
    assert result["output"].startswith("starting\n")
    assert result["output"].endswith("[timed out after 0.5 s]")


def test_an_action_without_a_hook_is_unsupported():
    result = hooks.execute({"id": 3, "action": "rental_ssh_key", "params": {}}, {})

    assert result == {"id": 3, "status": "unsupported", "output": "no hook configured for action 'rental_ssh_key'"}


def test_a_hook_that_cannot_start_fails_with_the_reason(tmp_path):
    hook = Hook(argv=[str(tmp_path / "missing")])

    result = hooks.execute({"id": 1, "action": "reset", "params": {}}, {"reset": hook})

    assert result["status"] == "failed"
    assert "could not start" in result["output"]


def test_long_output_keeps_its_end_within_the_limit_and_loses_nul_characters():
    output = hooks.clean_output(b"\x00" + b"a" * 10_000 + b"the error")

    assert len(output) <= hooks.MAX_OUTPUT_CHARS
    assert output.startswith("[... ") and output.endswith("the error")
    assert "\x00" not in output


# --- The agent's heartbeat loop with a scripted server --------------------------------------------------


class ScriptedServer:
    """Stands in for ServerApi: records heartbeat bodies and answers from a script (a reply dict or an exception)."""

    def __init__(self) -> None:
        self.bodies: list[dict] = []
        self.script: list[object] = []

    def heartbeat(self, *, token: str, body: dict) -> dict:
        self.bodies.append(json.loads(json.dumps(body)))
        answer = self.script.pop(0) if self.script else {"status": "online", "heartbeat_interval_s": 5, "commands": []}
        if isinstance(answer, Exception):
            raise answer
        return answer  # type: ignore[return-value]


@pytest.fixture
def server() -> ScriptedServer:
    return ScriptedServer()


def make_agent(server: ScriptedServer, models: list[str] | None = None, **hooks_: Hook) -> Agent:
    config = NodeConfig(
        server_url="http://server", node_id=1, node_token="gmn_x", backend_url="http://backend/v1", hooks=hooks_
    )
    served = models if models is not None else ["org/a"]
    return Agent(config, api=server, query_gpus=lambda: [], list_models=lambda url, key: list(served))  # type: ignore[arg-type]


def reply(*commands: dict) -> dict:
    return {"status": "online", "heartbeat_interval_s": 5, "commands": list(commands)}


def run_commands_to_completion(agent: Agent) -> None:
    agent._hooks.shutdown(wait=True)


def test_results_are_resent_until_a_heartbeat_carrying_them_is_accepted(server, tmp_path):
    agent = make_agent(server, reset=python_hook(tmp_path, "print('ok')"))
    server.script = [
        reply({"id": 9, "action": "reset", "params": {}}),
        ServerUnreachable("down"),
        ServerError(503, "x", "y"),
    ]
    agent.beat_once()
    run_commands_to_completion(agent)

    agent.beat_once()  # unreachable
    agent.beat_once()  # 503
    agent.beat_once()  # accepted
    agent.beat_once()

    sent = [body.get("results") for body in server.bodies]
    expected = [{"id": 9, "status": "succeeded", "output": "ok\n"}]
    assert sent == [None, expected, expected, expected, None]


def test_a_command_sent_again_is_not_run_again(server, tmp_path):
    counter = tmp_path / "runs"
    hook = python_hook(tmp_path, f"open({str(counter)!r}, 'a').write('x')\n")
    agent = make_agent(server, reset=hook)
    command = {"id": 4, "action": "reset", "params": {}}
    server.script = [reply(command), reply(command)]
    agent.beat_once()
    agent.beat_once()  # re-sent while it may still be running
    run_commands_to_completion(agent)

    agent.beat_once()  # its outcome is accepted here
    server.script = [reply(command)]  # and the server asks again anyway
    agent.beat_once()
    agent.beat_once()

    assert counter.read_text() == "x"
    assert server.bodies[-1]["results"] == [{"id": 4, "status": "succeeded", "output": ""}]


def test_an_unsupported_action_is_reported(server):
    agent = make_agent(server)
    server.script = [reply({"id": 2, "action": "rental_start", "params": {"hours": 1}})]
    agent.beat_once()
    run_commands_to_completion(agent)

    agent.beat_once()

    assert server.bodies[-1]["results"] == [
        {"id": 2, "status": "unsupported", "output": "no hook configured for action 'rental_start'"}
    ]


def test_a_finished_command_wakes_the_loop_to_report_it(server, tmp_path):
    agent = make_agent(server, reset=python_hook(tmp_path, "print('ok')"))
    server.script = [reply({"id": 1, "action": "reset", "params": {}})]
    agent.beat_once()

    assert agent._wake.wait(10)


def test_results_the_server_rejects_are_dropped_rather_than_blocking_heartbeats(server):
    agent = make_agent(server)
    server.script = [reply({"id": 2, "action": "x", "params": {}})]
    agent.beat_once()
    run_commands_to_completion(agent)
    server.script = [ServerError(400, "invalid", "results: bad")]

    agent.beat_once()
    agent.beat_once()

    assert "results" in server.bodies[1] and "results" not in server.bodies[2]


def test_models_are_sent_first_and_then_only_when_they_change(server):
    served = ["org/a"]
    agent = make_agent(server, models=served)
    agent.config.model_overrides = {"org/b": {"input_price_per_million": "0.10", "unknown": 1}}

    agent.beat_once()
    agent.beat_once()
    served.append("org/b")
    agent.beat_once()
    agent.beat_once()

    assert [body.get("models") for body in server.bodies] == [
        [{"name": "org/a"}],
        None,
        [{"name": "org/a"}, {"name": "org/b", "input_price_per_million": "0.10"}],
        None,
    ]


def test_models_are_sent_again_after_a_failed_heartbeat(server):
    agent = make_agent(server)
    server.script = [ServerUnreachable("down")]

    agent.beat_once()
    agent.beat_once()

    assert [body.get("models") for body in server.bodies] == [[{"name": "org/a"}], [{"name": "org/a"}]]


def test_the_servers_interval_is_used_and_failures_back_off_up_to_the_cap(server):
    agent = make_agent(server)
    agent.backoff = Backoff(first=1, cap=8, rng=lambda: 1.0)
    server.script = [ServerUnreachable("down")] * 6 + [reply()]

    delays = [agent.beat_once() for _ in range(7)]

    assert delays == [1, 2, 4, 8, 8, 8, 5]


def test_a_refused_token_stops_the_loop(server):
    agent = make_agent(server)
    server.script = [ServerError(401, "provider_not_approved", "This node's provider is not approved.")]

    with pytest.raises(TokenRefused, match="not approved"):
        agent.beat_once()


def test_the_command_book_is_safe_across_threads():
    """Ten threads claim each id at once. The book's membership check answers, then waits at a barrier until every
    thread has checked, so without the lock all of them would find the id free and run it; with it, the first thread
    holds the lock at the barrier until it times out, and the rest find the id taken."""
    book = hooks.CommandBook()
    threads_count = 100
    barrier = threading.Barrier(threads_count, timeout=1)

    class AllThreadsCheckAtOnce(set):
        def __contains__(self, item: object) -> bool:
            found = super().__contains__(item)
            with contextlib.suppress(threading.BrokenBarrierError):
                barrier.wait()  # the answer is given; let every other thread check before anyone acts on it
            return found

    book._running = AllThreadsCheckAtOnce()
    claimed = []

    def claim(i: int) -> None:
        if book.claim(i % 10):
            claimed.append(i % 10)

    threads = [threading.Thread(target=claim, args=(i,)) for i in range(threads_count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert sorted(claimed) == list(range(10))
