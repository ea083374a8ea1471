"""Commands from the server (`commands: [{id, action, params}]`), run through the operator's hook commands.

A hook is an argv from the config, never a shell line built from server data. It gets the params twice: as
environment variables `GPU_NODE_PARAM_<NAME>` and as a JSON object on stdin. Its combined output is captured and
truncated; an action with no hook is `unsupported`. A hook may also write a JSON object to the file named by
`GPU_NODE_RESULT_FILE`: its structured fields (`access`, `snapshot_ref`, ...) go to the server beside `output`
(API.md "structured outcomes"). Outcomes are kept until a heartbeat carrying them is accepted (API.md §3: "a
command is re-sent until its outcome arrives"), and a command is never run twice.

A hook run with `on_progress` (the `train` hook, API.md §13) streams: each line of its stdout that is a JSON object
is a progress report (`{"progress": 0.4, "step": 120, "loss": 1.23, "message": "..."}`), handed over as it comes as
a `running` result `{progress, metrics, output}`; other lines are ordinary output. Its start is reported the same
way (`{output: "started ..."}`), so a trainer that prints nothing for a while is still known to be running. Such a
run can be stopped from another thread through its `HookHandle` (`train_cancel`).
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
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import IO, Any

from gpu_node.config import Hook

MAX_OUTPUT_CHARS = 4000  # the server accepts 8192; leave room
MAX_RESULT_BYTES = 16384  # a hook's structured result file
# Structured fields a hook may return beside `output`; the server validates their values.
RESULT_FIELDS = ("access", "snapshot_ref", "progress", "metrics", "fine_tuned_model")
# The JSON types the server takes (a wrong type would get the whole heartbeat refused): checked here first.
RESULT_TYPES: dict[str, type | tuple[type, ...]] = {
    "access": dict,
    "snapshot_ref": str,
    "fine_tuned_model": str,
    "progress": (int, float),
    "metrics": dict,
}
RESULTS_PER_HEARTBEAT = 100  # the server's cap per heartbeat
REMEMBERED_RESULTS = 512  # acknowledged outcomes kept to answer a re-sent command without re-running it

SUCCEEDED, FAILED, UNSUPPORTED, RUNNING = "succeeded", "failed", "unsupported", "running"
MAX_METRICS = 32  # numeric fields of one progress report kept as its metrics
MAX_METRIC_NAME = 64
STOP_GRACE_S = 10.0  # a stopped hook gets SIGTERM, then SIGKILL this much later


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
        if name in data and (not isinstance(data[name], kind) or isinstance(data[name], bool)):
            names = (kind,) if isinstance(kind, type) else kind
            wanted = "number" if float in names else names[0].__name__.replace("dict", "object")
            return {}, f"the hook's result {name!r} must be a JSON {wanted}"
    return {k: data[k] for k in RESULT_FIELDS if k in data}, ""


def _number(value: Any) -> float | int | None:
    """A finite JSON number (not a boolean), else None."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if isinstance(value, float) and (value != value or value in (float("inf"), float("-inf"))):
        return None
    return value


def parse_progress(line: str) -> dict[str, Any] | None:
    """A progress line -> the fields of a `running` result ({progress?, metrics?, output?}); None: not one.

    A progress line is a JSON object. `progress` (0..1, clamped) and `message` (text, sent as the report's `output`)
    are taken as such; every other top-level number (step, epoch, loss, learning_rate, ...) and the numbers of an
    optional `metrics` object become `metrics`. Anything else in it is ignored."""
    text = line.strip()
    if not text.startswith("{"):
        return None
    try:
        data = json.loads(text)
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    report: dict[str, Any] = {}
    progress = _number(data.get("progress"))
    if progress is not None:
        report["progress"] = min(1.0, max(0.0, float(progress)))
    metrics: dict[str, float | int] = {}
    nested = data.get("metrics")
    items = [(k, v) for k, v in data.items() if k not in ("progress", "metrics", "message")]
    for key, value in [*items, *(nested.items() if isinstance(nested, dict) else [])]:
        number = _number(value)
        named = isinstance(key, str) and 0 < len(key) <= MAX_METRIC_NAME
        if number is not None and named and len(metrics) < MAX_METRICS:
            metrics[key] = number
    if metrics:
        report["metrics"] = metrics
    if isinstance(data.get("message"), str):
        report["output"] = clean_output(data["message"], limit=1000)
    return report or None


class HookHandle:
    """A streaming hook's process, stoppable from another thread (train_cancel): its whole process group gets
    SIGTERM, then SIGKILL after STOP_GRACE_S. Stopping before the process starts makes it never start."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._process: subprocess.Popen[bytes] | None = None
        self.stopped: str | None = None  # why it was stopped

    def attach(self, process: subprocess.Popen[bytes]) -> bool:
        """Record the started process; False (and it is killed) when the handle was already stopped."""
        with self._lock:
            self._process = process
            if self.stopped is None:
                return True
        _kill_group(process, signal.SIGKILL)
        return False

    def stop(self, reason: str) -> bool:
        """Stop the hook; True when a running process was signalled."""
        with self._lock:
            if self.stopped is not None:
                return False
            self.stopped = reason
            process = self._process
        if process is None or process.poll() is not None:
            return False
        _kill_group(process, signal.SIGTERM)
        timer = threading.Timer(STOP_GRACE_S, _kill_group, args=(process, signal.SIGKILL))
        timer.daemon = True
        timer.start()
        return True


def _kill_group(process: subprocess.Popen[bytes], sig: int) -> None:
    if process.poll() is None or sig == signal.SIGKILL:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, sig)


ProgressCallback = Callable[[dict[str, Any]], None]


def run_hook(
    hook: Hook,
    *,
    command_id: Any,
    action: str,
    params: Mapping[str, Any],
    on_progress: ProgressCallback | None = None,
    handle: HookHandle | None = None,
) -> tuple[str, str, dict[str, Any]]:
    """Run one hook to completion or timeout; (status, output, structured fields from its result file).

    With `on_progress` (or `handle`), its stdout is read as it comes and each progress line handed to `on_progress`."""
    with tempfile.TemporaryDirectory(prefix="gpu-node-hook-") as folder:
        result_file = os.path.join(folder, "result.json")
        if on_progress is None and handle is None:
            status, output = _run(hook, command_id=command_id, action=action, params=params, result_file=result_file)
        else:
            status, output = _run_streaming(
                hook,
                command_id=command_id,
                action=action,
                params=params,
                result_file=result_file,
                on_progress=on_progress or (lambda report: None),
                handle=handle or HookHandle(),
            )
        if status != SUCCEEDED and (on_progress is not None or handle is not None):
            return status, output, {}  # a failed or stopped training's result file is not its outcome
        fields, problem = read_result_file(result_file)
    if problem:
        return FAILED, clean_output(f"{output}\n[{problem}]"), {}
    return status, output, fields


def _hook_env(*, command_id: Any, action: str, params: Mapping[str, Any], result_file: str) -> dict[str, str]:
    return {
        **os.environ,
        "GPU_NODE_ACTION": action,
        "GPU_NODE_COMMAND_ID": str(command_id),
        "GPU_NODE_RESULT_FILE": result_file,
        **_param_env(params),
    }


def _run(hook: Hook, *, command_id: Any, action: str, params: Mapping[str, Any], result_file: str) -> tuple[str, str]:
    env = _hook_env(command_id=command_id, action=action, params=params, result_file=result_file)
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


class _Tail:
    """The last characters of a hook's output, kept bounded however much it prints (thread-safe)."""

    def __init__(self, limit: int = MAX_OUTPUT_CHARS * 4) -> None:
        self._lock = threading.Lock()
        self._parts: list[str] = []
        self._size = 0
        self._limit = limit

    def add(self, text: str) -> None:
        with self._lock:
            self._parts.append(text)
            self._size += len(text)
            if self._size > self._limit * 2:
                joined = "".join(self._parts)
                self._parts, self._size = [joined[-self._limit :]], self._limit

    def text(self) -> str:
        with self._lock:
            joined = "".join(self._parts)
        return clean_output(joined)


def _pump(stream: IO[bytes], tail: _Tail, on_line: Callable[[str], bool] | None) -> None:
    """Read a stream line by line to its end; `on_line` answers True for a line it consumed (a progress line)."""
    for raw in iter(stream.readline, b""):
        line = raw.decode("utf-8", errors="replace")
        if on_line is not None and on_line(line):
            continue
        tail.add(line)
    stream.close()


def _run_streaming(
    hook: Hook,
    *,
    command_id: Any,
    action: str,
    params: Mapping[str, Any],
    result_file: str,
    on_progress: ProgressCallback,
    handle: HookHandle,
) -> tuple[str, str]:
    env = _hook_env(command_id=command_id, action=action, params=params, result_file=result_file)
    if handle.stopped is not None:
        return FAILED, clean_output(f"[{handle.stopped}]")
    try:
        process = subprocess.Popen(  # noqa: S603 - the operator's own argv from the config, no shell
            hook.argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            start_new_session=True,  # its own process group: a timeout or a cancel stops what it started too
        )
    except OSError as exc:
        return FAILED, clean_output(f"hook {hook.argv[0]!r} could not start: {exc.strerror or exc}")
    if not handle.attach(process):
        process.wait()
        return FAILED, clean_output(f"[{handle.stopped}]")
    with contextlib.suppress(Exception):  # the first `running` report: the job runs (and is billed) from now on
        on_progress({"output": f"started {os.path.basename(hook.argv[0])} (pid {process.pid})"})
    tail = _Tail()

    def progress_line(line: str) -> bool:
        report = parse_progress(line)
        if report is None:
            return False
        with contextlib.suppress(Exception):  # a failing listener must not stop the hook's output being read
            on_progress(report)
        return True

    assert process.stdout is not None and process.stderr is not None and process.stdin is not None
    readers = [
        threading.Thread(target=_pump, args=(process.stdout, tail, progress_line), daemon=True),
        threading.Thread(target=_pump, args=(process.stderr, tail, None), daemon=True),
    ]
    for reader in readers:
        reader.start()
    with contextlib.suppress(OSError):  # a hook that does not read its stdin
        process.stdin.write(json.dumps(dict(params)).encode())
    with contextlib.suppress(OSError):
        process.stdin.close()
    timed_out = False
    try:
        process.wait(timeout=hook.timeout_s)
    except subprocess.TimeoutExpired:
        timed_out = True
        _kill_group(process, signal.SIGKILL)
        process.wait()
    deadline = time.monotonic() + 5  # what it printed last; a child still holding the pipes does not block us
    for reader in readers:
        reader.join(max(0.0, deadline - time.monotonic()))
    output = tail.text()
    if handle.stopped is not None:
        return FAILED, clean_output(f"{output}\n[{handle.stopped}]".lstrip("\n"))
    if timed_out:
        return FAILED, clean_output(f"{output}\n[timed out after {hook.timeout_s:g} s]")
    if process.returncode == 0:
        return SUCCEEDED, output
    return FAILED, clean_output(f"{output}\n[exit status {process.returncode}]")


def execute(
    command: Mapping[str, Any],
    hooks: Mapping[str, Hook],
    *,
    on_progress: ProgressCallback | None = None,
    handle: HookHandle | None = None,
) -> dict[str, Any]:
    """One command → its result `{id, status, output}` (plus its structured fields). With `on_progress`, the
    hook's progress lines are handed over as they come (see run_hook)."""
    action = str(command.get("action", ""))
    params = command.get("params") or {}
    if not isinstance(params, Mapping):
        return {"id": command["id"], "status": FAILED, "output": "params must be a JSON object"}
    hook = hooks.get(action)
    if hook is None:
        return {"id": command["id"], "status": UNSUPPORTED, "output": f"no hook configured for action {action!r}"}
    status, output, fields = run_hook(
        hook, command_id=command["id"], action=action, params=params, on_progress=on_progress, handle=handle
    )
    return {**fields, "id": command["id"], "status": status, "output": output}


class CommandBook:
    """Which commands ran, and which outcomes the server has yet to accept. Thread-safe: hooks run off the loop.

    A running command's progress reports are coalesced: only its latest unsent one goes out."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._running: set[Any] = set()
        self._pending: OrderedDict[Any, dict[str, Any]] = OrderedDict()
        self._progress: OrderedDict[Any, dict[str, Any]] = OrderedDict()  # the latest unsent `running` report
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

    def report(self, command_id: Any, fields: dict[str, Any]) -> None:
        """A running command's progress: `{id, status: running, **fields}` replaces any unsent earlier report."""
        with self._lock:
            if command_id in self._running:
                self._progress.pop(command_id, None)
                self._progress[command_id] = {**fields, "id": command_id, "status": RUNNING}

    def finish(self, result: dict[str, Any]) -> None:
        with self._lock:
            self._running.discard(result["id"])
            self._progress.pop(result["id"], None)  # the outcome supersedes any unsent progress
            self._pending[result["id"]] = result

    def outgoing(self) -> list[dict[str, Any]]:
        """The outcomes to send with the next heartbeat (oldest first), then the latest progress of running
        commands; at most RESULTS_PER_HEARTBEAT."""
        with self._lock:
            return [*self._pending.values(), *self._progress.values()][:RESULTS_PER_HEARTBEAT]

    def acknowledge(self, results: list[dict[str, Any]]) -> None:
        """The server accepted a heartbeat carrying these outcomes."""
        with self._lock:
            for result in results:
                if result.get("status") == RUNNING:
                    if self._progress.get(result["id"]) is result:  # not replaced by a newer report meanwhile
                        del self._progress[result["id"]]
                    continue
                if self._pending.pop(result["id"], None) is not None:
                    self._acknowledged[result["id"]] = result
            while len(self._acknowledged) > REMEMBERED_RESULTS:
                self._acknowledged.popitem(last=False)
