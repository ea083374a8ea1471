"""`make bench`: inference against a stub node (direct vs ours vs LiteLLM), heartbeat ingestion over HTTP, the
stale-node sweep and the all-models menu, on PostgreSQL (and Redis, the inference scenario's broker).

Drops and recreates its own database each run, prints one table and writes the raw figures to
bench/results/<timestamp>.json. bench/README.md says what each figure means.
"""

import argparse
import json
import os
import platform
import random
import subprocess
import sys
import time
import traceback
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench import database, report, scenarios, seed, server  # noqa: E402
from bench.inference import scenario as inference  # noqa: E402

RESULTS = REPO / "bench" / "results"
SCENARIOS = ["inference", "heartbeat", "sweep", "all-models"]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--db-host", default=os.environ.get("BENCH_DB_HOST", "127.0.0.1"))
    parser.add_argument("--db-port", type=int, default=int(os.environ.get("BENCH_DB_PORT", "5432")))
    parser.add_argument("--db-user", default=os.environ.get("BENCH_DB_USER", "postgres"))
    parser.add_argument("--db-name", default=os.environ.get("BENCH_DB_NAME", "gpu_marketplace_bench"))
    parser.add_argument("--nodes", type=int, default=10_000, help="nodes heartbeating over HTTP (and live)")
    parser.add_argument("--sweep-nodes", type=int, default=100_000, help="nodes in the sweep table")
    parser.add_argument("--stale-every", type=int, default=10, help="one sweep node in N is stale")
    parser.add_argument("--concurrency", type=int, default=48, help="keep-alive connections of the load generator")
    parser.add_argument(
        "--client",
        choices=["raw", "aiohttp"],
        default="raw",
        help="load generator: a minimal keep-alive HTTP/1.1 client (cheapest on the shared cores) or aiohttp",
    )
    parser.add_argument("--warmup", type=float, default=5.0, help="seconds of load before measuring")
    parser.add_argument("--duration", type=float, default=15.0, help="seconds measured")
    parser.add_argument("--workers", default="1,2", help="uvicorn --workers values to try, comma-separated")
    parser.add_argument(
        "--compare",
        action="store_true",
        help="also run the heartbeat through the Django view alone (HEARTBEAT_FAST_PATH=false; marked *)",
    )
    parser.add_argument("--profile", action="store_true", help="one more heartbeat run under py-spy (best server)")
    parser.add_argument("--only", choices=SCENARIOS, action="append", help="run only this scenario (repeatable)")
    inference = parser.add_argument_group("inference (direct vs ours vs LiteLLM)")
    inference.add_argument("--redis-url", default=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379"))
    inference.add_argument("--inference-rounds", type=int, default=3, help="alternating rounds")
    inference.add_argument("--inference-window", type=float, default=5.0, help="seconds measured per window")
    inference.add_argument("--inference-warmup", type=float, default=1.0, help="seconds of load before each window")
    inference.add_argument(
        "--inference-streams",
        default="25,100,250,500,1000,1500",
        help="concurrent stream levels, tried in turn until one fails",
    )
    inference.add_argument(
        "--inference-workers", type=int, default=1, help="ours' uvicorn --workers and LiteLLM's --num_workers"
    )
    return parser.parse_args()


def machine() -> dict[str, Any]:
    cpuinfo = Path("/proc/cpuinfo").read_text().splitlines()
    model = next((line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")), "")
    meminfo = Path("/proc/meminfo").read_text().splitlines()
    mem_kb = next(int(line.split()[1]) for line in meminfo if line.startswith("MemTotal"))
    return {
        "nproc": os.cpu_count(),
        "cpu_model": model,
        "ram_gib": round(mem_kb / 1024 / 1024, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
    }


def git_state() -> dict[str, Any]:
    """Which code was measured: the commit, and how many files differed from it."""

    def git(*argv: str) -> str:
        result = subprocess.run(["git", *argv], cwd=REPO, capture_output=True, text=True, check=False)
        return result.stdout.strip()

    return {"head": git("rev-parse", "HEAD"), "changed_files": len(git("status", "--porcelain").splitlines())}


def production_configs(args: argparse.Namespace) -> list[server.ServerConfig]:
    """Procfile's web line as production runs it (production settings), at each --workers value."""
    return [server.uvicorn(int(w)) for w in args.workers.split(",") if w.strip()]


def comparison_configs(workers: int) -> list[server.ServerConfig]:
    """Not how the project serves: sizes what the heartbeat's lean path buys (marked * in the table)."""
    return [
        server.uvicorn(
            workers,
            label=f"uvicorn --workers {workers}, Django view only*",
            environment=(("HEARTBEAT_FAST_PATH", "false"),),
        )
    ]


def run_heartbeats(args: argparse.Namespace, record: dict, env: dict, nodes: list) -> server.ServerConfig:
    """Every server configuration in turn; returns the best production one."""
    configs = production_configs(args)
    if args.compare:
        configs += comparison_configs(max(int(w) for w in args.workers.split(",")))
    runs = []
    for config in configs:
        print(f"bench: heartbeats via {config.label} ({config.settings_module}) ...", flush=True)
        run = scenarios.heartbeat(
            config=config,
            env=env,
            nodes=nodes,
            concurrency=args.concurrency,
            warmup_s=args.warmup,
            duration_s=args.duration,
            client=args.client,
        )
        load = run["load"]
        print(f"       {load['per_second']:,.0f}/s, {load['latency_ms']}, errors {load['errors']}", flush=True)
        runs.append(run)
    record["heartbeat"] = runs
    production = {c.label: c for c in production_configs(args)}
    best_run = max((r for r in runs if r["server"] in production), key=lambda r: r["load"]["per_second"])
    best = production[best_run["server"]]
    record["heartbeat_best_server"] = best.label
    if args.profile:
        raw = RESULTS / f"{record['stamp']}-heartbeat.pyspy.txt"
        print(f"bench: profiling heartbeats via {best.label} with py-spy ...", flush=True)
        record["heartbeat_profiled"] = scenarios.heartbeat(
            config=best,
            env=env,
            nodes=nodes,
            concurrency=args.concurrency,
            warmup_s=args.warmup,
            duration_s=args.duration,
            client=args.client,
            profile_to=raw,
        )
        record["profile"] = report.summarise_profile(raw)
    return best


def run_all_models(args: argparse.Namespace, record: dict, env: dict, best: server.ServerConfig) -> None:
    print("bench: all-models ...", flush=True)
    menu = scenarios.all_models_selector(runs=50)
    configs = [best]
    if args.compare:
        configs += comparison_configs(max(int(w) for w in args.workers.split(",")))
    menu["http_runs"] = [
        scenarios.all_models_http(config=config, env=env, requests=300, expected=menu["models_listed"])
        for config in configs
    ]
    record["all_models"] = menu


def run_inference(args: argparse.Namespace, record: dict, env: dict) -> None:
    """Direct vs ours vs LiteLLM; a failure is recorded (and fails the run) without stopping the other scenarios."""
    plan = inference.Plan(
        rounds=args.inference_rounds,
        window_s=args.inference_window,
        warmup_s=args.inference_warmup,
        stream_levels=tuple(int(n) for n in args.inference_streams.split(",") if n.strip()),
        workers=args.inference_workers,
    )
    try:
        record["inference"] = inference.run(
            plan=plan,
            env=env,
            database=args.db_name,
            redis_url=args.redis_url,
            logs=RESULTS / f"{record['stamp']}-inference",
        )
    except Exception as exc:  # any failure is reported in the table and fails the run
        traceback.print_exc()
        record["inference"] = {"error": f"{type(exc).__name__}: {exc}"}


def main() -> None:
    args = parse_args()
    only = set(args.only or SCENARIOS)
    started = datetime.now(UTC)
    RESULTS.mkdir(parents=True, exist_ok=True)
    url = database.database_url(host=args.db_host, port=args.db_port, user=args.db_user, name=args.db_name)
    print(f"bench: recreating database {args.db_name} and migrating ...", flush=True)
    database.recreate_database(host=args.db_host, port=args.db_port, user=args.db_user, name=args.db_name)
    database.setup_django(url)
    env = database.server_environment(url)

    from django.conf import settings
    from django.utils import timezone

    record: dict[str, Any] = {
        "stamp": f"{started:%Y%m%dT%H%M%SZ}",
        "started_at": started.isoformat(),
        "machine": machine(),
        "git": git_state(),
        "postgres": database.postgres_settings(),
        "args": vars(args),
        "note": "the load generator, the server and PostgreSQL share the machine's cores",
        "app_settings": {
            name: getattr(settings, name)
            for name in ("NODE_HEARTBEAT_INTERVAL_S", "NODE_HEARTBEAT_TIMEOUT_S", "NODE_METRICS_SAMPLE_EVERY_S")
        }
        | {
            "CONN_MAX_AGE": settings.DATABASES["default"].get("CONN_MAX_AGE"),
            "CONN_HEALTH_CHECKS": settings.DATABASES["default"].get("CONN_HEALTH_CHECKS"),
        },
    }
    if "inference" in only:
        run_inference(args, record, env)

    owner_id = seed.create_provider("bench-provider")

    if only & {"heartbeat", "all-models"}:
        t0 = time.perf_counter()
        print(f"bench: seeding {args.nodes:,} nodes serving 1-3 of {len(seed.MODEL_NAMES)} models ...", flush=True)
        nodes = seed.seed_heartbeat_nodes(owner_id=owner_id, count=args.nodes, now=timezone.now(), rng=random.Random(1))
        scenarios.vacuum_analyze()
        record["seed_heartbeat_nodes_s"] = round(time.perf_counter() - t0, 2)
        best = production_configs(args)[-1]
        if "heartbeat" in only:
            best = run_heartbeats(args, record, env, nodes)
        if "all-models" in only:
            run_all_models(args, record, env, best)

    if "sweep" in only:
        seed.clear_nodes()
        print(f"bench: seeding {args.sweep_nodes:,} nodes for the sweep ...", flush=True)
        record["sweep"] = scenarios.sweep(
            owner_id=owner_id, count=args.sweep_nodes, stale_every=args.stale_every, runs=5, now=timezone.now()
        )

    record["finished_at"] = datetime.now(UTC).isoformat()
    out = RESULTS / f"{record['stamp']}.json"
    out.write_text(json.dumps(record, indent=2, default=str))
    print()
    print(report.render(record))
    print(f"\nraw figures: {out.relative_to(REPO)}")
    failed = report.failed(record)
    if failed:
        print("\nbench: targets missed:\n  " + "\n  ".join(failed), file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
