"""The three measurements. Each returns plain data for the table and the JSON record."""

import json
import random
import statistics
import subprocess
import time
from dataclasses import asdict
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg

from bench import cpu, loadgen, seed
from bench.server import BIN, ServerConfig, serve

# Before each measured phase, wait (at most this long) for other sessions' work on the shared machine to drop.
QUIET_CORES = 0.3
QUIET_MAX_WAIT_S = 180.0


def _sql(statement: str, params: list | dict | None = None) -> list[tuple]:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(statement, params or [])
        return cursor.fetchall() if cursor.description else []


class PgCounters:
    """Sessions opened and transactions committed in the bench database, read over a connection of its own
    (the load generator's callbacks run inside its event loop, where Django's ORM refuses to run)."""

    def __init__(self, url: str) -> None:
        self.conn = psycopg.connect(url, autocommit=True)

    def read(self) -> dict[str, int]:
        # pg_stat_* are snapshotted per transaction; in autocommit each query sees current figures.
        row = self.conn.execute(
            "SELECT d.sessions, d.xact_commit, d.xact_rollback,"
            " (SELECT count(*) FROM pg_stat_activity a WHERE a.datid = d.datid)"
            " FROM pg_stat_database d WHERE d.datname = current_database()"
        ).fetchone()
        assert row is not None
        return {"sessions": row[0], "commits": row[1], "rollbacks": row[2], "backends_now": row[3]}

    def close(self) -> None:
        self.conn.close()


def vacuum_analyze() -> None:
    from llm_models.models import Node, NodeMetricSample, NodeModel

    for model in (Node, NodeModel, NodeMetricSample):
        _sql(f"VACUUM ANALYZE {model._meta.db_table}")


def reset_steady_state() -> None:
    """Every node heard from within one interval and sampled within one sample period, spread evenly: the
    state a fleet heartbeating on schedule is in, so each run writes samples at the steady-state rate."""
    from django.conf import settings

    from llm_models.models import Node

    _sql(
        f"UPDATE {Node._meta.db_table} SET status = 'online',"
        " last_heartbeat_at = now() - random() * %(interval)s * interval '1 s',"
        " last_metrics_sample_at = now() - random() * %(every)s * interval '1 s'"
        " WHERE status <> 'deregistered'",  # the inference scenario's stub node stays gone
        {"interval": settings.NODE_HEARTBEAT_INTERVAL_S, "every": settings.NODE_METRICS_SAMPLE_EVERY_S},
    )
    vacuum_analyze()


def _last_id(model: Any) -> int | None:
    row = model.objects.order_by("-id").values_list("id", flat=True)[:1]
    return row[0] if row else None


# --- 1. heartbeat ingestion over HTTP -------------------------------------------------------------


def heartbeat(
    *,
    config: ServerConfig,
    env: dict[str, str],
    nodes: list[seed.SeededNode],
    concurrency: int,
    warmup_s: float,
    duration_s: float,
    client: str = "raw",
    profile_to: Path | None = None,
) -> dict[str, Any]:
    """Serve with `config`, drive heartbeats for warm-up + duration, and account for every core meanwhile."""
    from django.utils import timezone

    from llm_models.models import Node, NodeMetricSample, NodeModel

    order = list(nodes)
    random.Random(7).shuffle(order)
    pairs = [(n.raw_token, n.heartbeat_body) for n in order]
    database = env["DATABASE_URL"].rsplit("/", 1)[1]
    counters = PgCounters(env["DATABASE_URL"])
    marks: dict[str, Any] = {}
    profiler: list[subprocess.Popen] = []
    try:
        with serve(config, env) as server:
            background = cpu.wait_until_quiet(threshold_cores=QUIET_CORES, max_wait_s=QUIET_MAX_WAIT_S)
            reset_steady_state()
            samples_before = NodeMetricSample.objects.count()
            node_models_before = (NodeModel.objects.count(), _last_id(NodeModel))

            def window_start() -> None:
                marks["at"] = timezone.now()
                marks["t0"] = time.perf_counter()
                marks["cpu0"] = cpu.snapshot(server.pids, database)
                marks["pg0"] = counters.read()
                if profile_to is not None:
                    profiler.append(_start_py_spy(server.process.pid, profile_to, duration_s))

            def window_end() -> None:
                marks["cpu1"] = cpu.snapshot(server.pids, database)
                marks["t1"] = time.perf_counter()
                marks["pg1"] = counters.read()

            result = loadgen.run(
                loadgen.heartbeat_load(
                    base_url=server.base_url,
                    nodes=pairs,
                    concurrency=concurrency,
                    warmup_s=warmup_s,
                    duration_s=duration_s,
                    on_window_start=window_start,
                    on_window_end=window_end,
                    client=client,
                )
            )
            for proc in profiler:
                proc.wait(timeout=60)
    finally:
        counters.close()
    wall = marks["t1"] - marks["t0"]
    pg0, pg1 = marks["pg0"], marks["pg1"]
    return {
        "server": config.label,
        "settings": config.settings_module,
        "command": " ".join(config.argv),
        "concurrency": concurrency,
        "client": client,
        "background_cores_before": background,
        "load": asdict(result),
        "cores_used": cpu.cores_used(marks["cpu0"], marks["cpu1"], wall),
        "postgres": {
            "sessions_opened_per_s": round((pg1["sessions"] - pg0["sessions"]) / wall, 1),
            "commits_per_s": round((pg1["commits"] - pg0["commits"]) / wall, 1),
            "rollbacks": pg1["rollbacks"] - pg0["rollbacks"],
            "backends_at_end": pg1["backends_now"],
        },
        "nodes_heartbeated_in_window": Node.objects.filter(last_heartbeat_at__gte=marks["at"]).count(),
        "metric_samples_written": NodeMetricSample.objects.count() - samples_before,
        "node_models_unchanged": (NodeModel.objects.count(), _last_id(NodeModel)) == node_models_before,
    }


def _start_py_spy(pid: int, output: Path, duration_s: float) -> subprocess.Popen:
    """Sample the server (and its worker processes) while it holds the GIL: where its CPU goes."""
    return subprocess.Popen(
        [
            str(BIN / "py-spy"),
            "record",
            f"--pid={pid}",
            "--subprocesses",
            "--gil",
            "--rate=250",
            "--format=raw",
            f"--duration={max(1, int(duration_s) - 1)}",
            f"--output={output}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


# --- 2. the stale-node sweep -----------------------------------------------------------------------


def sweep(*, owner_id: int, count: int, stale_every: int, runs: int, now: datetime) -> dict[str, Any]:
    """`count` online nodes, one in `stale_every` silent past the timeout; time the sweep that flips them."""
    from django.db import connection, transaction
    from django.test.utils import CaptureQueriesContext

    from llm_models.choices import NodeStatus
    from llm_models.models import Node
    from llm_models.services import node_mark_stale_offline

    t0 = time.perf_counter()
    stale_pks = seed.seed_sweep_nodes(
        owner_id=owner_id, count=count, now=now, rng=random.Random(2), stale=lambda i: i % stale_every == 0
    )
    seed_s = time.perf_counter() - t0

    def reset() -> None:
        """All online and just heard from, but the stale ones: re-armed from the clock now, since seeding and
        waiting for a quiet machine can take longer than the timeout."""
        from django.conf import settings
        from django.utils import timezone

        fresh = timezone.now()
        Node.objects.update(status=NodeStatus.ONLINE, last_heartbeat_at=fresh)
        silent = fresh - timedelta(seconds=settings.NODE_HEARTBEAT_TIMEOUT_S + 60)
        Node.objects.filter(pk__in=stale_pks).update(last_heartbeat_at=silent)
        vacuum_analyze()

    background = cpu.wait_until_quiet(threshold_cores=QUIET_CORES, max_wait_s=QUIET_MAX_WAIT_S)
    timings: list[float] = []
    flipped: list[int] = []
    statement = ""
    for _ in range(runs):
        reset()
        with CaptureQueriesContext(connection) as queries:
            t0 = time.perf_counter()
            flipped.append(node_mark_stale_offline())
            timings.append(time.perf_counter() - t0)
        statement = queries.captured_queries[-1]["sql"]
    noop: list[float] = []
    for _ in range(10):
        t0 = time.perf_counter()
        node_mark_stale_offline()
        noop.append(time.perf_counter() - t0)
    reset()
    with transaction.atomic():
        plan = [row[0] for row in _sql("EXPLAIN (ANALYZE, BUFFERS) " + statement)]
        transaction.set_rollback(True)
    index = Node._meta.indexes[0].name
    return {
        "nodes": count,
        "stale": len(stale_pks),
        "seed_s": round(seed_s, 2),
        "background_cores_before": background,
        "flipped": flipped,
        "first_ms": round(timings[0] * 1000, 2),
        "median_ms": round(statistics.median(timings) * 1000, 2),
        "all_ms": [round(t * 1000, 2) for t in timings],
        "noop_median_ms": round(statistics.median(noop) * 1000, 3),
        "statement": statement,
        "explain_analyze": plan,
        "index": index,
        "index_used": any(index in line for line in plan),
    }


# --- 3. the all-models menu ------------------------------------------------------------------------


def all_models_selector(*, runs: int) -> dict[str, Any]:
    """model_list_available in this process: median of `runs`, plus the SQL's own plan and execution time."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from llm_models.models import NodeModel
    from llm_models.selectors import model_list_available, node_list_live

    background = cpu.wait_until_quiet(threshold_cores=QUIET_CORES, max_wait_s=QUIET_MAX_WAIT_S)
    reset_steady_state()  # after the wait, which can outlast the heartbeat timeout
    for _ in range(5):
        model_list_available()
    timings: list[float] = []
    models: list[dict] = []
    for _ in range(runs):
        t0 = time.perf_counter()
        models = model_list_available()
        timings.append(time.perf_counter() - t0)
    with CaptureQueriesContext(connection) as queries:
        model_list_available()
    aggregate = queries.captured_queries[0]["sql"]  # the first of its two queries; the second names <= 1 row a model
    plan = [row[0] for row in _sql("EXPLAIN (ANALYZE, BUFFERS) " + aggregate)]
    expected_pairs = NodeModel.objects.filter(node__in=node_list_live()).count()
    return {
        "live_nodes": node_list_live().count(),
        "models_listed": len(models),
        "consistent": sum(m["live_nodes"] for m in models) == expected_pairs,
        "background_cores_before": background,
        "selector_median_ms": round(statistics.median(timings) * 1000, 3),
        "selector_p90_ms": round(sorted(timings)[int(0.9 * len(timings))] * 1000, 3),
        "sql_execution": plan[-1],
        "explain_analyze": plan,
    }


def all_models_http(*, config: ServerConfig, env: dict[str, str], requests: int, expected: int) -> dict[str, Any]:
    """GET all-models one request at a time over one keep-alive connection: what a single caller waits."""
    with serve(config, env) as server:
        background = cpu.wait_until_quiet(threshold_cores=QUIET_CORES, max_wait_s=QUIET_MAX_WAIT_S)
        reset_steady_state()
        result, body = loadgen.run(
            loadgen.sequential_gets(url=server.base_url + loadgen.ALL_MODELS_PATH, warmup=20, requests=requests)
        )
    return {
        "server": config.label,
        "settings": config.settings_module,
        "background_cores_before": background,
        "http": asdict(result),
        "models_in_response": json.loads(body)["count"],
        "consistent": json.loads(body)["count"] == expected,
        "response_bytes": len(body),
    }
