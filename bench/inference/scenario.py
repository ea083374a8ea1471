"""Direct-to-node vs the service vs LiteLLM, in one run with the targets alternating: latency and requests/s at
several concurrencies, time to first token, server CPU per request, and how many 5-second streams each holds."""

import resource
import statistics
import time
from collections.abc import Callable
from contextlib import ExitStack, closing
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bench import cpu, loadgen
from bench.inference import litellm_proxy, load, seeding, targets
from bench.inference.http_client import prepare
from bench.inference.targets import CHAT_PATH, Target
from bench.scenarios import PgCounters

FAST_MODEL = "bench-model"  # streams all its chunks at once (time to first token)
PACED_MODEL = "bench-paced"  # streams its chunks `pacing_ms` apart (the streams test)
MODELS = [FAST_MODEL, PACED_MODEL]
MESSAGES = [{"role": "user", "content": "Say hello in five words."}]
QUIET_CORES = 0.3
QUIET_MAX_WAIT_S = 60.0
SETTLE_S = 1.5
IDLE_STEP_S = 0.25
IDLE_CPU_S = 0.02  # CPU seconds per IDLE_STEP_S under which a target counts as idle (2 clock ticks)
IDLE_MAX_S = 15.0


@dataclass(frozen=True)
class Plan:
    """How long and how hard: the command line's --inference-* flags."""

    rounds: int = 3
    window_s: float = 5.0
    warmup_s: float = 1.0
    concurrencies: tuple[int, ...] = (1, 16, 64)
    stream_levels: tuple[int, ...] = (25, 100, 250, 500, 1000, 1500)
    stream_chunks: int = 50
    pacing_ms: float = 100.0
    stall_factor: float = 10.0
    stream_stagger_ms: float = 0.5
    max_tokens: int = 16
    workers: int = 1  # the service's web workers, and LiteLLM's --num_workers

    @property
    def stall_s(self) -> float:
        return self.stall_factor * self.pacing_ms / 1000


def _bodies(plan: Plan) -> dict[str, dict]:
    return {
        "chat": {"model": FAST_MODEL, "messages": MESSAGES, "max_tokens": plan.max_tokens},
        "ttft": {
            "model": FAST_MODEL,
            "messages": MESSAGES,
            "max_tokens": plan.max_tokens,
            "stream": True,
            "stream_options": {"include_usage": True},
        },
        "stream": {
            "model": PACED_MODEL,
            "messages": MESSAGES,
            "max_tokens": plan.stream_chunks,
            "stream": True,
            "stream_options": {"include_usage": True},
        },
    }


def _raw(target: Target, body: dict, *, close: bool = False) -> bytes:
    return prepare(host=target.host, port=target.port, path=CHAT_PATH, body=body, headers=target.headers, close=close)


class Accounts:
    """CPU seconds of each process group that matters in a window (the target's own first), and for the service
    the bench database's sessions opened and transactions committed."""

    NOT_OWN = ("stub", "postgres_exited")  # read for the record, not the target's own (nor its idleness)

    def __init__(
        self,
        target: Target,
        groups: dict[str, Callable[[], float]],
        counters: Callable[[], dict[str, int]] | None = None,
    ) -> None:
        self.groups = {"server": lambda: cpu.processes_cpu_s(target.pids()), **groups}
        self.counters = counters

    def read(self) -> dict[str, float]:
        counts = {f"pg_{k}": float(v) for k, v in self.counters().items()} if self.counters else {}
        return (
            {name: read() for name, read in self.groups.items()}
            | counts
            | {
                "load_generator": cpu.self_cpu_s(),
                "machine": cpu.machine_busy_s(),
            }
        )

    def own_cpu_s(self) -> float:
        """The target's processes together (the stub's left out unless it is the target)."""
        return sum(read() for name, read in self.groups.items() if name not in self.NOT_OWN)

    def wait_idle(self) -> float:
        """Wait (at most IDLE_MAX_S) until the target's processes are done with what the load left them (a drain,
        a flush); returns the seconds waited. The next window then starts on a quiet machine."""
        t0 = time.perf_counter()
        last = self.own_cpu_s()
        while time.perf_counter() - t0 < IDLE_MAX_S:
            time.sleep(IDLE_STEP_S)
            now = self.own_cpu_s()
            if now - last <= IDLE_CPU_S:
                break
            last = now
        return round(time.perf_counter() - t0, 2)


def _window(
    *, plan: Plan, target: Target, kind: str, concurrency: int, raw: bytes, accounts: Accounts, round_no: int
) -> dict[str, Any]:
    marks: dict[str, Any] = {}

    def start() -> None:
        marks["t0"], marks["cpu0"] = time.perf_counter(), accounts.read()

    def end() -> None:
        marks["t1"], marks["cpu1"] = time.perf_counter(), accounts.read()

    common = {
        "host": target.host,
        "port": target.port,
        "raw": raw,
        "warmup_s": plan.warmup_s,
        "duration_s": plan.window_s,
        "on_window_start": start,
        "on_window_end": end,
    }
    before = accounts.read()
    if kind == "chat":
        result = loadgen.run(load.closed_loop(concurrency=concurrency, **common))
    else:
        result = loadgen.run(load.time_to_first_token(**common))
    idle_wait = accounts.wait_idle()
    after = accounts.read()
    wall = marks["t1"] - marks["t0"]
    delta = {name: round(marks["cpu1"][name] - marks["cpu0"][name], 4) for name in marks["cpu0"]}
    used = {name: v for name, v in delta.items() if not name.startswith("pg_")}
    per_request = {
        name: round(1000 * seconds / result.completed, 3) if result.completed else None
        for name, seconds in used.items()
        if name not in ("machine", "load_generator")
    }
    postgres = {
        name.removeprefix("pg_") + "_per_request": round(n / result.completed, 3) if result.completed else None
        for name, n in delta.items()
        if name in ("pg_sessions", "pg_commits")
    }
    return {
        "round": round_no,
        "target": target.name,
        "kind": kind,
        "concurrency": concurrency,
        **asdict(result),
        "cpu_s": used,
        "cpu_ms_per_request": per_request,
        "cores": {name: round(seconds / wall, 2) for name, seconds in used.items()},
        "postgres_activity": postgres,  # the bench database's sessions opened and commits, per request
        # From the warm-up's start until the target went idle again, per response (warm-up included): what a
        # request costs including work done after the window (the service's usage drain).
        "idle_wait_s": idle_wait,
        "cpu_ms_per_response_until_idle": {
            name: round(1000 * (after[name] - before[name]) / result.responses, 3) if result.responses else None
            for name in accounts.groups
            if name != "stub"
        },
    }


def _median(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return round(statistics.median(present), 3) if present else None


def summarise(windows: list[dict], names: list[str], plan: Plan) -> dict[str, Any]:
    """Medians across rounds, and the same-round comparisons (added latency, throughput ratio)."""

    def pick(target: str, kind: str, c: int) -> list[dict]:
        return sorted(
            (w for w in windows if w["target"] == target and w["kind"] == kind and w["concurrency"] == c),
            key=lambda w: w["round"],
        )

    out: dict[str, Any] = {}
    for name in names:
        figures: dict[str, Any] = {}
        for kind, c in [("chat", c) for c in plan.concurrencies] + [("ttft", 1)]:
            runs = pick(name, kind, c)
            figures[f"{kind}_c{c}"] = {
                "p50_ms": _median([w["latency_ms"].get("p50") for w in runs]),
                "p99_ms": _median([w["latency_ms"].get("p99") for w in runs]),
                "per_second": _median([w["per_second"] for w in runs]),
                "cpu_ms_per_request": {
                    group: _median([w["cpu_ms_per_request"].get(group) for w in runs])
                    for group in runs[0]["cpu_ms_per_request"]
                }
                if runs
                else {},
                "cpu_ms_per_response_until_idle": {
                    group: _median([w["cpu_ms_per_response_until_idle"].get(group) for w in runs])
                    for group in runs[0]["cpu_ms_per_response_until_idle"]
                }
                if runs
                else {},
                "postgres_activity": {
                    key: _median([w["postgres_activity"].get(key) for w in runs])
                    for key in runs[0]["postgres_activity"]
                }
                if runs
                else {},
                "errors": sum(w["errors"] for w in runs),
                "responses": sum(w["responses"] for w in runs),
                "rounds": len(runs),
            }
        out[name] = figures

    def added(name: str, kind: str, c: int, key: str) -> float | None:
        diffs = [
            t["latency_ms"][key] - d["latency_ms"][key]
            for t, d in zip(pick(name, kind, c), pick("direct", kind, c), strict=False)
            if key in t["latency_ms"] and key in d["latency_ms"]
        ]
        return _median(diffs)

    def ratio(c: int) -> float | None:
        pairs = zip(pick("ours", "chat", c), pick("litellm", "chat", c), strict=False)
        return _median([o["per_second"] / max(lite["per_second"], 1e-9) for o, lite in pairs])

    for name in names:
        if name == "direct":
            continue
        out[name]["added_ms"] = {
            "chat_c1_p50": added(name, "chat", 1, "p50"),
            "chat_c1_p99": added(name, "chat", 1, "p99"),
            "ttft_p50": added(name, "ttft", 1, "p50"),
            "ttft_p99": added(name, "ttft", 1, "p99"),
        }
    if "ours" in names and "litellm" in names:
        out["ours"]["per_second_vs_litellm"] = {f"c{c}": ratio(c) for c in plan.concurrencies if c > 1}
    return out


def _streams(plan: Plan, target: Target, body: dict, accounts: Accounts) -> dict[str, Any]:
    raw = _raw(target, body, close=True)
    expect_s = plan.stream_chunks * plan.pacing_ms / 1000 + 10
    levels = []
    for count in plan.stream_levels:
        print(f"       {target.name}: {count} concurrent streams ...", flush=True)
        t0, cpu0 = time.perf_counter(), accounts.read()
        level = loadgen.run(
            load.concurrent_streams(
                host=target.host,
                port=target.port,
                raw=raw,
                count=count,
                stagger_s=plan.stream_stagger_ms / 1000,
                stall_s=plan.stall_s,
                expect_s=expect_s,
            )
        )
        wall, cpu1 = time.perf_counter() - t0, accounts.read()
        cores = {name: round((cpu1[name] - cpu0[name]) / wall, 2) for name in cpu0}
        levels.append(asdict(level) | {"ok": level.ok, "cores": cores})
        print(
            f"         {level.passed}/{count} passed; longest gap {level.max_gap_ms:.0f} ms; {level.failures}",
            flush=True,
        )
        accounts.wait_idle()
        time.sleep(SETTLE_S)
        if not level.ok:
            break
    passed = [lvl["count"] for lvl in levels if lvl["ok"]]
    failed = next((lvl for lvl in levels if not lvl["ok"]), None)
    return {"held": max(passed, default=0), "first_failure": failed, "levels": levels}


def _check(target: Target, result: load.WindowResult, what: str) -> None:
    if result.completed == 0:
        raise RuntimeError(f"{target.label} answered no {what} correctly: {result.error_samples}")


def _warm_up(all_targets: list[Target], bodies: dict[str, dict]) -> dict[str, Any]:
    """A little of each load on each target, unmeasured; a target that answers nothing well stops the scenario."""
    warmup: dict[str, Any] = {}
    for target in all_targets:
        chat = loadgen.run(
            load.closed_loop(
                host=target.host,
                port=target.port,
                raw=_raw(target, bodies["chat"]),
                concurrency=16,
                warmup_s=0,
                duration_s=2,
            )
        )
        _check(target, chat, "chat completion")
        ttft = loadgen.run(
            load.time_to_first_token(
                host=target.host, port=target.port, raw=_raw(target, bodies["ttft"]), warmup_s=0, duration_s=1
            )
        )
        _check(target, ttft, "stream")
        warmup[target.name] = {"chat": asdict(chat), "ttft": asdict(ttft)}
    return warmup


def _rounds(
    plan: Plan, all_targets: list[Target], accounts: dict[str, Accounts], bodies: dict[str, dict]
) -> list[dict]:
    """Every measurement, round after round; within a round each measurement on each target in turn."""
    windows: list[dict] = []
    for round_no in range(1, plan.rounds + 1):
        for kind, c in [("chat", c) for c in plan.concurrencies] + [("ttft", 1)]:
            line = []
            for target in all_targets:
                window = _window(
                    plan=plan,
                    target=target,
                    kind=kind,
                    concurrency=c,
                    raw=_raw(target, bodies[kind]),
                    accounts=accounts[target.name],
                    round_no=round_no,
                )
                windows.append(window)
                lat = window["latency_ms"]
                line.append(
                    f"{target.name} {window['per_second']:,.0f}/s p50 {lat.get('p50', 0):.1f} ms"
                    + (f" errors {window['errors']}" if window["errors"] else "")
                )
            print(f"bench: inference round {round_no}/{plan.rounds} {kind} c={c}: " + "; ".join(line), flush=True)
    return windows


def _whole_run(before: dict[str, float], after: dict[str, float], responses: int) -> dict[str, Any]:
    """The service's processes over all the rounds, per response it gave."""
    per = max(responses, 1)
    return {
        "responses": responses,
        "delta": {name: round(after[name] - before[name], 3) for name in before},
        "cpu_ms_per_response": {
            name: round(1000 * (after[name] - before[name]) / per, 3)
            for name in ("server", "celery_worker", "postgres", "postgres_exited")
        },
        "postgres_sessions_per_response": round((after["pg_sessions"] - before["pg_sessions"]) / per, 4),
        "postgres_commits_per_response": round((after["pg_commits"] - before["pg_commits"]) / per, 4),
        "note": "every response ours gave from the first measured window to the last (plus a settle), with the "
        "other targets' windows in between: the worker's and PostgreSQL's idle work is included; "
        "postgres_exited is every PostgreSQL backend that exited meanwhile, whatever its database",
    }


def run(*, plan: Plan, env: dict[str, str], database: str, redis_url: str, logs: Path) -> dict[str, Any]:
    """Start the stub, the service (web, worker, beat) and LiteLLM, seed through the API, measure, stop them."""
    t_begin = time.perf_counter()
    logs.mkdir(parents=True, exist_ok=True)
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # the children inherit it
    litellm_proxy.ensure_venv()
    broker = targets.claim_redis_db(redis_url)
    service_env = env | {"CELERY_BROKER_URL": broker, "ALLOW_PRIVATE_NODE_ENDPOINTS": "true"}
    bodies = _bodies(plan)
    record: dict[str, Any] = {
        "plan": asdict(plan),
        "broker": broker,
        "nofile_limit": hard,
        "logs": str(logs),
        "models": MODELS,
    }
    with ExitStack() as stack:
        print("bench: inference: starting the stub node, the service (web, worker, beat) and LiteLLM ...", flush=True)
        direct = stack.enter_context(
            targets.stub_node(env=env, log=logs / "stub.log", chunks=plan.stream_chunks, pacing_ms=plan.pacing_ms)
        )
        lite = stack.enter_context(
            targets.litellm(stub_port=direct.port, models=MODELS, workers=plan.workers, logs=logs)
        )
        ours_service = stack.enter_context(targets.service(env=service_env, logs=logs))
        base_url = ours_service.web.base_url
        seeded = seeding.seed(base_url=base_url, stub_url=f"http://127.0.0.1:{direct.port}", models=MODELS)
        heartbeats = seeding.Heartbeats(base_url=base_url, seeded=seeded)
        heartbeats.start()
        stack.callback(heartbeats.stop)
        stack.callback(seeding.deregister, base_url=base_url, seeded=seeded)
        ours = Target(
            name="ours",
            label=f"ours ({ours_service.web.config.label})",
            port=int(base_url.rsplit(":", 1)[1]),
            pids=ours_service.web_pids,
            workers=plan.workers,
            headers={"Authorization": f"Bearer {seeded.api_key}"},
        )
        litellm = lite.ready()
        all_targets = [direct, ours, litellm]
        record["targets"] = {t.name: {"label": t.label, "port": t.port, "workers": t.workers} for t in all_targets}
        record["litellm_version"] = litellm_proxy.version()
        record["seeded"] = {"client_id": seeded.client_id, "node_id": seeded.node_id}
        record["startup_s"] = round(time.perf_counter() - t_begin, 1)

        record["warmup"] = _warm_up(all_targets, bodies)
        record["background_cores"] = cpu.wait_until_quiet(threshold_cores=QUIET_CORES, max_wait_s=QUIET_MAX_WAIT_S)
        groups: dict[str, dict[str, Callable[[], float]]] = {
            "direct": {},
            "ours": {
                "celery_worker": lambda: cpu.processes_cpu_s(ours_service.worker_pids()),
                "postgres": lambda: cpu.postgres_cpu_s(database),
                "postgres_exited": cpu.postgres_exited_cpu_s,
            },
            "litellm": {},
        }
        for name in ("ours", "litellm"):
            groups[name]["stub"] = lambda: cpu.processes_cpu_s(direct.pids())
        pg = stack.enter_context(closing(PgCounters(env["DATABASE_URL"])))
        accounts = {t.name: Accounts(t, groups[t.name], pg.read if t.name == "ours" else None) for t in all_targets}

        t_rounds = time.perf_counter()
        whole0 = accounts["ours"].read()
        windows = _rounds(plan, all_targets, accounts, bodies)
        time.sleep(SETTLE_S)  # let the service's worker drain what the last window left
        whole1 = accounts["ours"].read()
        record["rounds_s"] = round(time.perf_counter() - t_rounds, 1)
        ours_responses = sum(w["responses"] for w in windows if w["target"] == "ours")
        record["ours_whole_run"] = _whole_run(whole0, whole1, ours_responses)
        record["windows"] = windows
        record["summary"] = summarise(windows, [t.name for t in all_targets], plan)

        t_streams = time.perf_counter()
        print(
            f"bench: inference: concurrent {plan.stream_chunks * plan.pacing_ms / 1000:.0f}-second streams "
            f"(levels {', '.join(map(str, plan.stream_levels))}; a stall is a gap > {plan.stall_s * 1000:.0f} ms) ...",
            flush=True,
        )
        record["streams"] = {t.name: _streams(plan, t, bodies["stream"], accounts[t.name]) for t in all_targets}
        record["streams_s"] = round(time.perf_counter() - t_streams, 1)
        record["heartbeats"] = {"sent": heartbeats.sent, "failures": heartbeats.failures}
    record["wall_s"] = round(time.perf_counter() - t_begin, 1)
    return record
