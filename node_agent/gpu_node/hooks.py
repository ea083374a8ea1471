"""Commands from the server (`commands: [{id, action, params}]`), run through the operator's hook commands.

A hook is an argv from the config, never a shell line built from server data. It gets the params twice: as
environment variables `GPU_NODE_PARAM_<NAME>` and as a JSON object on stdin. Its combined output is captured and
truncated; an action with no hook is `unsupported`. A hook may also write a JSON object to the file named by
`GPU_NODE_RESULT_FILE`: its structured fields (`access`, `snapshot_ref`, ...) go to the server beside `output`
(API.md "structured outcomes"). Outcomes are kept until a heartbeat carrying them is accepted (API.md §3: "a
command is re-sent until its outcome arrives"), and a command is never run twice.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import tempfile
import threading
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

from gpu_node.config import Hook

MAX_OUTPUT_CHARS = 4000  # the server accepts 8192; leave room
MAX_RESULT_BYTES = 16384  # a hook's structured result file
# Structured fields a hook may return beside `output`; the server validates their values.
RESULT_FIELDS = ("access", "snapshot_ref", "progress", "metrics", "fine_tuned_model")
# The JSON types the server takes (a wrong type would get the whole heartbeat refused): checked here first.
RESULT_TYPES: dict[str, type] = {"access": dict, "snapshot_ref": str}
RESULTS_PER_HEARTBEAT = 100  # the server's cap per heartbeat
REMEMBERED_RESULTS = 512  # acknowledged outcomes kept to answer a re-sent command without re-running it

SUCCEEDED, FAILED, UNSUPPORTED = "succeeded", "failed", "unsupported"


def env_name(param: str) -> str:
    """GPU_NODE_PARAM_<NAME>: upper case, anything but letters, digits and _ turned into _."""
    return "GPU_NODE_PARAM_" + re.sub(r"[^A-Z0-9_]", "_", param.upper())


def clean_output(raw: bytes | str | None, limit: int = MAX_OUTPUT_CHARS) -> str:
    """Text the server accepts: decoded, no NUL characters, the last `limit` characters (errors come last)."""
    if raw is None:
        return ""
    text = raw.decode("utf-8", errors="replace") if isinstance(raw, bytes) else raw
    text = text.replace("\x00", "")
    if len(text) > limit:
        keep = limit - 64  # the marker is shorter than 64 characters
        text = f"[... {len(text) - keep} characters cut ...]\n" + text[-keep:]
    return text


def _param_env(params: Mapping[str, Any]) -> dict[str, str]:
    env = {}
    for key, value in params.items():
        text = value if isinstance(value, str) else json.dumps(value)
        env[env_name(str(key))] = text.replace("\x00", "")
    return env


def read_result_file(path: str) -> tuple[dict[str, Any], str]:
    """The structured fields a hook wrote to its result file, and a complaint when the file is not usable."""
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_RESULT_BYTES + 1)
    except OSError:
        return {}, ""
    if not raw.strip():
        return {}, ""
    if len(raw) > MAX_RESULT_BYTES:
        return {}, f"the hook's result file is larger than {MAX_RESULT_BYTES} bytes"
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return {}, "the hook's result file is not JSON"
    if not isinstance(data, dict):
        return {}, "the hook's result file must hold a JSON object"
    for name, kind in RESULT_TYPES.items():
        if name in data and not isinstance(data[name], kind):
            return {}, f"the hook's result {name!r} must be a JSON {kind.__name__.replace('dict', 'object')}"
    return {k: data[k] for k in RESULT_FIELDS if k in data}, ""


def run_hook(hook: Hook, *, command_id: Any, action: str, params: Mapping[str, Any]) -> tuple[str, str, dict[str, Any]]:
    """Run one hook to completion or timeout; (status, output, structured fields from its result file)."""
    with tempfile.TemporaryDirectory(prefix="gpu-node-hook-") as folder:
        result_file = os.path.join(folder, "result.json")
        status, output = _run(hook, command_id=command_id, action=action, params=params, result_file=result_file)
        fields, problem = read_result_file(result_file)
    if problem:
        return FAILED, clean_output(f"{output}\n[{problem}]"), {}
    return status, output, fields


def _run(hook: Hook, *, command_id: Any, action: str, params: Mapping[str, Any], result_file: str) -> tuple[str, str]:
    env = {
        **os.environ,
        "GPU_NODE_ACTION": action,
        "GPU_NODE_COMMAND_ID": str(command_id),
        "GPU_NODE_RESULT_FILE": result_file,
        **_param_env(params),
    }
    try:
        process = subprocess.Popen(  # noqa: S603 - the operator's own argv from the config, no shell
            hook.argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,  # its own process group, so a timeout kills what it started too
        )
    except OSError as exc:
        return FAILED, clean_output(f"hook {hook.argv[0]!r} could not start: {exc.strerror or exc}")
    try:
        out, _ = process.communicate(json.dumps(dict(params)).encode(), timeout=hook.timeout_s)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        out, _ = process.communicate()
        return FAILED, clean_output((out or b"") + f"\n[timed out after {hook.timeout_s:g} s]".encode())
    if process.returncode == 0:
        return SUCCEEDED, clean_output(out)
    return FAILED, clean_output((out or b"") + f"\n[exit status {process.returncode}]".encode())


def execute(command: Mapping[str, Any], hooks: Mapping[str, Hook]) -> dict[str, Any]:
    """One command → its result `{id, status, output}`."""
    action = str(command.get("action", ""))
    params = command.get("params") or {}
    if not isinstance(params, Mapping):
        return {"id": command["id"], "status": FAILED, "output": "params must be a JSON object"}
    hook = hooks.get(action)
    if hook is None:
        return {"id": command["id"], "status": UNSUPPORTED, "output": f"no hook configured for action {action!r}"}
    status, output, fields = run_hook(hook, command_id=command["id"], action=action, params=params)
    return {**fields, "id": command["id"], "status": status, "output": output}


class CommandBook:
    """Which commands ran, and which outcomes the server has yet to accept. Thread-safe: hooks run off the loop."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._running: set[Any] = set()
        self._pending: OrderedDict[Any, dict[str, Any]] = OrderedDict()
        self._acknowledged: OrderedDict[Any, dict[str, Any]] = OrderedDict()

    def claim(self, command_id: Any) -> bool:
        """True if this command is new and is now ours to run. A re-sent command whose outcome was already
        accepted is not run again: its outcome is queued to be reported once more."""
        with self._lock:
            if command_id in self._running or command_id in self._pending:
                return False
            if command_id in self._acknowledged:
                self._pending[command_id] = self._acknowledged.pop(command_id)
                return False
            self._running.add(command_id)
            return True

    def finish(self, result: dict[str, Any]) -> None:
        with self._lock:
            self._running.discard(result["id"])
            self._pending[result["id"]] = result

    def outgoing(self) -> list[dict[str, Any]]:
        """The outcomes to send with the next heartbeat (oldest first, at most RESULTS_PER_HEARTBEAT)."""
        with self._lock:
            return list(self._pending.values())[:RESULTS_PER_HEARTBEAT]

    def acknowledge(self, results: list[dict[str, Any]]) -> None:
        """The server accepted a heartbeat carrying these outcomes."""
        with self._lock:
            for result in results:
                if self._pending.pop(result["id"], None) is not None:
                    self._acknowledged[result["id"]] = result
            while len(self._acknowledged) > REMEMBERED_RESULTS:
                self._acknowledged.popitem(last=False)
