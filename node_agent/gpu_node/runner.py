"""`gpu-node run`: heartbeat with live metrics, keep the model list current, run commands, deregister on stop."""

from __future__ import annotations

import logging
import random
import signal
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import psutil

from gpu_node import backend, hardware, hooks
from gpu_node.config import NodeConfig
from gpu_node.server_api import ServerApi, ServerError, ServerUnreachable

log = logging.getLogger("gpu_node")

EXIT_TOKEN_REFUSED = 3  # systemd: RestartPreventExitStatus=3, restarting will not help
MIN_INTERVAL_S, MAX_INTERVAL_S = 0.2, 3600.0
PROGRESS_MIN_GAP_S = 3.0  # a progress report wakes the loop, but heartbeats for progress come at most this often
TRAIN, TRAIN_CANCEL = "train", "train_cancel"

_REFUSALS = {
    "provider_not_approved": "the provider account behind this node is not approved (revoked by an admin?)",
    "node_deregistered": "this node was deregistered; run `gpu-node register` to add it again",
    "invalid_node_token": "the node token is unknown or revoked; run `gpu-node register` to get a new one",
}


def model_specs(names: list[str], overrides: dict[str, Any]) -> list[dict[str, Any]]:
    """Each model with the operator's prices from the config's `model_overrides` (the server's defaults otherwise)."""
    allowed = ("input_price_per_million", "output_price_per_million", "context_window")
    specs = []
    for name in names:
        override = overrides.get(name)
        extra = {k: v for k, v in override.items() if k in allowed} if isinstance(override, dict) else {}
        specs.append({"name": name, **extra})
    return specs


class TokenRefused(Exception):
    """401 on a heartbeat: retrying cannot help."""


class Backoff:
    """Exponential delays between failed heartbeats: first, 2 x first, ... capped; jittered so nodes spread out."""

    def __init__(self, *, first: float, cap: float, rng: Callable[[], float] = random.random) -> None:
        self.first, self.cap, self._rng = first, max(cap, first), rng
        self.failures = 0

    def next(self) -> float:
        delay = min(self.cap, self.first * 2**self.failures)
        self.failures += 1
        return delay * (0.8 + 0.2 * self._rng())

    def reset(self) -> None:
        self.failures = 0

    @property
    def failing(self) -> bool:
        """The last heartbeat failed: the server is down (or erring) until one succeeds."""
        return self.failures > 0


class Agent:
    def __init__(
        self,
        config: NodeConfig,
        *,
        api: ServerApi | None = None,
        query_gpus: Callable[[], list[hardware.GpuInfo]] = hardware.query_gpus,
        list_models: Callable[[str, str], list[str]] = backend.list_models,
    ) -> None:
        self.config = config
        self.api = api or ServerApi(config.server_url)
        self.query_gpus = query_gpus
        self.list_models = list_models
        self.book = hooks.CommandBook()
        self.interval = self._clamp(config.heartbeat_interval_s)
        self.backoff = Backoff(first=min(1.0, self.interval), cap=config.max_backoff_s)
        self.models_acked: list[str] | None = None  # what the server last accepted; None: send on first beat
        # The actions this agent has hooks for go out until a heartbeat carrying them is answered: the server then
        # accepts again an action it remembered as `unsupported` (a hook added since), without a new registration.
        self.actions_acked = False
        self.capabilities_acked = False  # declared once per start, then left out so the server's fast path answers
        self.backend_error: str | None = None
        self._stop = threading.Event()
        self._wake = threading.Event()  # something to report: the loop looks at it
        self._urgent = threading.Event()  # ... and it is an outcome, not only progress: report it now
        self._hooks = ThreadPoolExecutor(max_workers=1, thread_name_prefix="gpu-node-hook")  # in order, one at a time
        # `train` runs apart from the other hooks (hours long, it must not hold up rentals' commands or its own
        # cancel), one job at a time; `train_cancel` is answered at once from the dispatching thread.
        self._trainer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="gpu-node-train")
        self._training_lock = threading.Lock()
        self._training: dict[str, tuple[Any, hooks.HookHandle]] = {}  # job id -> (train command id, its handle)
        self._cancelled_jobs: OrderedDict[str, None] = OrderedDict()  # cancelled before their `train` arrived

    @staticmethod
    def _clamp(seconds: Any) -> float:
        try:
            return min(MAX_INTERVAL_S, max(MIN_INTERVAL_S, float(seconds)))
        except (TypeError, ValueError):
            return 30.0

    def request_stop(self, *_: object) -> None:
        self._stop.set()
        self._wake.set()

    def actions(self) -> list[str]:
        """The actions this agent runs: its hooks', and `train_cancel` wherever it can train (built in)."""
        names = set(self.config.hooks) | ({TRAIN_CANCEL} if TRAIN in self.config.hooks else set())
        return sorted(name for name in names if len(name) <= 64)[:64]  # the server's caps

    # --- one heartbeat ---------------------------------------------------------------------------

    def _current_models(self) -> list[str]:
        try:
            names = self.list_models(self.config.backend_url, self.config.backend_key)
        except backend.BackendError as exc:
            if self.backend_error != str(exc):
                log.warning("backend: %s; reporting no models until it answers", exc)
            self.backend_error = str(exc)
            return []  # a backend that does not answer serves nothing: take the node off the menu
        if self.backend_error is not None:
            log.info("backend answers again: %d model(s)", len(names))
            self.backend_error = None
        return names

    def heartbeat_body(self) -> tuple[dict[str, Any], list[str] | None, list[dict[str, Any]]]:
        body: dict[str, Any] = {"metrics": hardware.metrics(self.query_gpus())}
        if not self.actions_acked:
            body["actions"] = self.actions()
        names = self._current_models()
        sending_models = names if names != self.models_acked else None
        if sending_models is not None:
            body["models"] = model_specs(sending_models, self.config.model_overrides)
        if not self.capabilities_acked:
            body["capabilities"] = self.config.declared_capabilities()
        results = self.book.outgoing()
        if results:
            body["results"] = results
        return body, sending_models, results

    def beat_once(self) -> float:
        """Send one heartbeat; the seconds to wait before the next. Raises TokenRefused on 401."""
        body, models, results = self.heartbeat_body()
        try:
            reply = self.api.heartbeat(token=self.config.node_token, body=body)
        except ServerUnreachable as exc:
            return self._failed(str(exc))
        except ServerError as exc:
            if exc.status == 401:
                raise TokenRefused(f"{_REFUSALS.get(exc.code, 'the server refused the node token')} ({exc})")
            if exc.transient:
                return self._failed(f"server error: {exc}")
            # Any other 4xx is a definite "no" to this body; resending it would only be refused again.
            log.error("the server rejected a heartbeat: %s", exc)
            if results:
                log.error("dropping %d command result(s) the server would not accept", len(results))
                self.book.acknowledge(results)
            self.models_acked = None
            if "actions" in body:
                self.actions_acked = True  # a server that refuses the field: do not send it again
            self.capabilities_acked = True  # refused with the rest: resending them would be refused again
            return self.interval
        if self.backoff.failing:
            log.info("server reachable again")
        self.backoff.reset()
        self.book.acknowledge(results)
        if "actions" in body:
            self.actions_acked = True
            log.info("hooks reported: %s", ", ".join(body["actions"]) or "(none)")
        if "capabilities" in body:
            self.capabilities_acked = True
        if models is not None:
            self.models_acked = models
            log.info("models sent: %s", ", ".join(models) or "(none)")
        self.interval = self._clamp(reply.get("heartbeat_interval_s", self.interval))
        self.dispatch(reply.get("commands") or [])
        return self.interval

    def _failed(self, reason: str) -> float:
        delay = self.backoff.next()
        log.warning("%s; retrying in %.1f s", reason, delay)
        return delay

    # --- commands ----------------------------------------------------------------------------------

    def dispatch(self, commands: list[Any]) -> None:
        for command in commands:
            if not isinstance(command, dict) or "id" not in command:
                log.warning("ignoring a malformed command: %r", command)
                continue
            if self.book.claim(command["id"]):
                log.info("command %s: %s", command["id"], command.get("action"))
                action = command.get("action")
                if action == TRAIN and TRAIN in self.config.hooks:
                    self._start_training(command)
                elif action == TRAIN_CANCEL and (TRAIN in self.config.hooks or TRAIN_CANCEL in self.config.hooks):
                    self._cancel_training(command)
                else:
                    self._hooks.submit(self._execute, command)

    def _execute(self, command: dict[str, Any], **streaming: Any) -> None:
        try:
            result = hooks.execute(command, self.config.hooks, **streaming)
        except Exception as exc:  # noqa: BLE001 - a broken hook must not lose the command's outcome
            result = {"id": command["id"], "status": hooks.FAILED, "output": hooks.clean_output(repr(exc))}
        self._finish(result)

    def _finish(self, result: dict[str, Any]) -> None:
        log.info("command %s %s", result["id"], result["status"])
        self.book.finish(result)
        self._urgent.set()
        self._wake.set()  # report it now rather than a whole interval later

    # --- training (API.md §13) ---------------------------------------------------------------------

    @staticmethod
    def _job_key(command: dict[str, Any]) -> str | None:
        params = command.get("params")
        job_id = params.get("job_id") if isinstance(params, dict) else None
        return str(job_id) if isinstance(job_id, int | str) and not isinstance(job_id, bool) else None

    def _start_training(self, command: dict[str, Any]) -> None:
        """Run the `train` hook on the training thread, streaming its progress lines into heartbeats; the job's
        `train_cancel` stops it through its handle (a cancel that came first stops it before it starts)."""
        handle = hooks.HookHandle()
        key = self._job_key(command) or f"command:{command['id']}"
        with self._training_lock:
            self._training[key] = (command["id"], handle)
            if key in self._cancelled_jobs:
                handle.stop(f"job {key} was cancelled (train_cancel) before it started")

        def on_progress(report: dict[str, Any]) -> None:
            self.book.report(command["id"], report)
            self._wake.set()

        def train() -> None:
            try:
                self._execute(command, on_progress=on_progress, handle=handle)
            finally:
                with self._training_lock:
                    if self._training.get(key, (None, None))[1] is handle:
                        del self._training[key]

        self._trainer.submit(train)

    def _cancel_training(self, command: dict[str, Any]) -> None:
        """`train_cancel {job_id}`: stop that job's `train` hook (its whole process group) now, then run the
        operator's `train_cancel` hook if there is one (to clean up what the trainer left elsewhere)."""
        key = self._job_key(command)
        if key is None:
            self._finish({"id": command["id"], "status": hooks.FAILED, "output": "train_cancel needs a job_id"})
            return
        with self._training_lock:
            running = self._training.get(key)
            self._cancelled_jobs[key] = None
            while len(self._cancelled_jobs) > hooks.REMEMBERED_RESULTS:
                self._cancelled_jobs.popitem(last=False)
        if running is not None and running[1].stop(f"stopped by train_cancel (command {command['id']})"):
            said = f"stopped the training of job {key} (command {running[0]})"
        elif running is not None:
            said = f"job {key}'s training (command {running[0]}) was already ending"
        else:
            said = f"no training of job {key} is running here"
        log.info("command %s: %s", command["id"], said)
        if TRAIN_CANCEL not in self.config.hooks:
            self._finish({"id": command["id"], "status": hooks.SUCCEEDED, "output": said + "\n"})
            return

        def cleanup() -> None:
            try:
                result = hooks.execute(command, self.config.hooks)
            except Exception as exc:  # noqa: BLE001 - a broken hook must not lose the command's outcome
                result = {"id": command["id"], "status": hooks.FAILED, "output": repr(exc)}
            self._finish({**result, "output": hooks.clean_output(f"{said}\n{result.get('output', '')}")})

        threading.Thread(target=cleanup, name="gpu-node-train-cancel", daemon=True).start()

    def _stop_training(self) -> None:
        with self._training_lock:
            running = list(self._training.values())
        for _, handle in running:
            handle.stop("the agent stopped")

    # --- the loop ----------------------------------------------------------------------------------

    def loop(self) -> None:
        psutil.cpu_percent(interval=None)  # the first reading is meaningless; start the measuring window
        while not self._stop.is_set():
            self._urgent.clear()
            delay = self.beat_once()
            self._wait(delay)

    def _wait(self, delay: float) -> None:
        """Until the next heartbeat: `delay`, or at once when a command finished, or PROGRESS_MIN_GAP_S after the
        last heartbeat when only progress came (progress never hastens heartbeats while the server is failing)."""
        last = time.monotonic()
        due = last + delay
        while not self._stop.is_set():
            remaining = due - time.monotonic()
            if remaining <= 0 or not self._wake.wait(remaining):
                return
            self._wake.clear()
            if self._urgent.is_set() or self._stop.is_set():
                return
            if not self.backoff.failing:
                due = min(due, last + PROGRESS_MIN_GAP_S)

    def deregister(self) -> bool:
        for attempt in range(3):
            try:
                self.api.deregister(token=self.config.node_token)
                log.info("deregistered node %s", self.config.node_id)
                return True
            except ServerError as exc:
                if exc.status == 401:
                    log.info("node %s was already deregistered or revoked", self.config.node_id)
                    return True
                reason = str(exc)
            except ServerUnreachable as exc:
                reason = str(exc)
            log.warning("deregistration failed (%s)%s", reason, "; retrying" if attempt < 2 else "")
            if attempt < 2:
                threading.Event().wait(1.0)
        return False

    def run(self) -> int:
        previous = {sig: signal.signal(sig, self.request_stop) for sig in (signal.SIGTERM, signal.SIGINT)}
        cfg = self.config
        log.info("node %s heartbeating to %s; backend %s", cfg.node_id, cfg.server_url, cfg.backend_url)
        try:
            self.loop()
        except TokenRefused as exc:
            log.error("stopping: %s", exc)
            return EXIT_TOKEN_REFUSED
        finally:
            self._stop_training()
            self._trainer.shutdown(wait=False, cancel_futures=True)
            self._hooks.shutdown(wait=False, cancel_futures=True)
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        if self.deregister():
            return 0
        log.error("could not deregister; the server will mark the node offline after its heartbeat timeout")
        return 1
