"""The printed table and the profile summary."""

import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.inference import table as inference_table

HEARTBEAT_TARGET_PER_S = 2000
SWEEP_TARGET_MS = 1000
ALL_MODELS_TARGET_MS = 20


@dataclass(frozen=True)
class Row:
    measure: str
    value: str
    target: str = ""
    ok: bool | None = None  # None: no target; comparison rows (server label ending in *) never fail the run


def _verdict(ok: bool | None) -> str:
    return "" if ok is None else ("yes" if ok else "**NO**")


def _gate(label: str, ok: bool) -> bool | None:
    """A comparison configuration's figure is shown against the target but is not the project's result."""
    return ok if not label.endswith("*") else (ok or None)


def _heartbeat_rows(run: dict[str, Any]) -> list[Row]:
    load, cores, lat = run["load"], run["cores_used"], run["load"]["latency_ms"]
    name = f"heartbeat via {run['server']}"
    return [
        Row(
            f"{name}: heartbeats/s (c={run['concurrency']}, {load['duration_s']:.0f} s)",
            f"{load['per_second']:,.0f}",
            f">= {HEARTBEAT_TARGET_PER_S:,}",
            _gate(run["server"], load["per_second"] >= HEARTBEAT_TARGET_PER_S),
        ),
        Row(
            f"{name}: latency p50 / p99; errors (all statuses: {load['statuses']})",
            f"{lat.get('p50', 0):,.1f} / {lat.get('p99', 0):,.1f} ms; {load['errors']:,}",
            "errors 0",
            _gate(run["server"], load["errors"] == 0),
        ),
        Row(
            f"{name}: cores busy: server / PostgreSQL / load generator / other; new DB sessions/s",
            f"{cores['server']:.2f} / {cores['postgres']:.2f} / {cores['load_generator']:.2f} / {cores['other']:.2f}"
            f"; {run['postgres']['sessions_opened_per_s']:,.0f}",
        ),
    ]


def rows(record: dict[str, Any]) -> list[Row]:
    out: list[Row] = []
    for run in record.get("heartbeat", []):
        out += _heartbeat_rows(run)
    if menu := record.get("all_models"):
        name = f"all-models ({menu['live_nodes']:,} live nodes, {menu['models_listed']} models)"
        out.append(
            Row(
                f"{name}: the uncached query (model_list_available, run at most once per ALL_MODELS_CACHE_S), "
                "median of 50, in-process; counts consistent",
                f"{menu['selector_median_ms']:.1f} ms; {'yes' if menu['consistent'] else 'no'}",
                "consistent",
                None if menu["consistent"] else False,
            )
        )
        for http in menu["http_runs"]:
            lat = http["http"]["latency_ms"]
            out.append(
                Row(
                    f"{name}: GET all-models/ via {http['server']}, p50 / p99 of {http['http']['completed']}",
                    f"{lat['p50']:.1f} / {lat['p99']:.1f} ms",
                    f"< {ALL_MODELS_TARGET_MS} ms",
                    _gate(
                        http["server"],
                        lat["p99"] < ALL_MODELS_TARGET_MS and http["http"]["errors"] == 0 and http["consistent"],
                    ),
                )
            )
    if sweep := record.get("sweep"):
        name = f"sweep ({sweep['nodes']:,} online nodes, {sweep['stale']:,} stale)"
        out.append(
            Row(
                f"{name}: node_mark_stale_offline, first / median of {len(sweep['all_ms'])}",
                f"{sweep['first_ms']:.1f} / {sweep['median_ms']:.1f} ms",
                f"< {SWEEP_TARGET_MS} ms",
                sweep["median_ms"] < SWEEP_TARGET_MS and sweep["first_ms"] < SWEEP_TARGET_MS,
            )
        )
        out.append(
            Row(
                f"{name}: nodes flipped per run; plan uses {sweep['index']}",
                f"{', '.join(f'{n:,}' for n in sweep['flipped'])}; {'yes' if sweep['index_used'] else 'no'}",
                f"{sweep['stale']:,}; yes",
                all(n == sweep["stale"] for n in sweep["flipped"]) and sweep["index_used"],
            )
        )
        out.append(Row("sweep with nothing stale (the usual tick), median of 10", f"{sweep['noop_median_ms']:.2f} ms"))
    return out


def table(record: dict[str, Any]) -> str:
    lines = ["| measure | value | target | met |", "|---|---:|---:|:---:|"]
    lines += [f"| {r.measure} | {r.value} | {r.target} | {_verdict(r.ok)} |" for r in rows(record)]
    return "\n".join(lines)


def failed(record: dict[str, Any]) -> list[str]:
    """Every figure that missed its target, the inference table's included."""
    out = [row.measure for row in rows(record) if row.ok is False]
    if inference := record.get("inference"):
        out += [f"inference: {row.figure}" for row in inference_table.rows(inference) if row.ok is False]
    return out


def render(record: dict[str, Any]) -> str:
    parts = [table(record)] if rows(record) else []
    if inference := record.get("inference"):
        parts.append(inference_table.render(inference))
    if profile := record.get("profile"):
        parts.append(profile_text(profile))
    return "\n\n".join(parts)


# --- py-spy raw (collapsed) stacks ----------------------------------------------------------------

# Inclusive buckets: a sample counts in every bucket whose pattern occurs in its stack, so they nest.
BUCKETS: dict[str, tuple[str, ...]] = {
    "DRF APIView.dispatch (authentication + validation + view)": ("APIView.dispatch",),
    "  NodeTokenAuthentication.authenticate (token lookup, ORM)": ("NodeTokenAuthentication.authenticate",),
    "  HeartbeatIn.is_valid (DRF serializer)": ("BaseSerializer.is_valid",),
    "  node_record_heartbeat (ORM UPDATE in atomic, sample INSERT)": ("node_record_heartbeat",),
    "Django ORM building and compiling SQL": ("sql/compiler.py", "sql/query.py", "sql/where.py", "QuerySet."),
    "psycopg (sending, waiting, adapting)": ("psycopg/",),
    "opening PostgreSQL connections": ("get_new_connection", "_connect_gen"),
}

# Own time (the sample's innermost frame) by component: these do not overlap and add up to 100%.
COMPONENTS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("thread hand-offs: asgiref sync<->async, threading, futures", ("asgiref/", "threading.py", "concurrent/")),
    ("event loop and HTTP: asyncio, uvloop, uvicorn, httptools", ("asyncio/", "uvloop", "uvicorn/", "httptools")),
    ("Django REST framework", ("rest_framework/", "drf_standardized_errors/", "drf_spectacular/")),
    ("Django (handlers, middleware, ORM, signals)", ("django/", "whitenoise/", "allauth/")),
    ("psycopg", ("psycopg/", "psycopg_pool/")),
    ("the project's code", ("llm_models/", "clients/", "core/", "config/", "bench/")),
)

_LINE = re.compile(r"^(?P<stack>.*) (?P<count>\d+)$")
_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^:()]+)(?::\d+)?\)$")


def _frame_key(frame: str) -> str:
    match = _FRAME.match(frame.strip())
    return f"{match['func']} ({match['file']})" if match else frame.strip()


def summarise_profile(path: Path, top: int = 20) -> dict[str, Any]:
    """Shares of py-spy samples (raw/collapsed format): inclusive buckets and the functions with most own time."""
    own: Counter[str] = Counter()
    components: Counter[str] = Counter()
    buckets: Counter[str] = Counter()
    total = 0
    for line in path.read_text().splitlines():
        match = _LINE.match(line)
        if not match:
            continue
        count = int(match["count"])
        stack = match["stack"]
        total += count
        leaf = _frame_key(stack.rsplit(";", 1)[-1])
        own[leaf] += count
        components[next((name for name, patterns in COMPONENTS if any(p in leaf for p in patterns)), "other")] += count
        for bucket, patterns in BUCKETS.items():
            if any(p in stack for p in patterns):
                buckets[bucket] += count
    if not total:
        return {"samples": 0, "raw_file": path.name, "buckets_pct": {}, "components_pct": {}, "top_own_pct": []}
    return {
        "samples": total,
        "raw_file": path.name,
        "buckets_pct": {name: round(100 * buckets[name] / total, 1) for name in BUCKETS},
        "components_pct": {name: round(100 * n / total, 1) for name, n in components.most_common()},
        "top_own_pct": [(name, round(100 * n / total, 1)) for name, n in own.most_common(top)],
    }


def profile_text(profile: dict[str, Any]) -> str:
    lines = [
        f"py-spy, server processes, samples taken while holding the GIL ({profile['samples']:,} samples):",
        "  own time by component:",
    ]
    lines += [f"  {pct:5.1f}%  {name}" for name, pct in profile["components_pct"].items()]
    lines.append("  time inside ... (inclusive; indented rows are part of the row above):")
    lines += [f"  {pct:5.1f}%  {name}" for name, pct in profile["buckets_pct"].items()]
    lines.append("  functions with the most own time:")
    lines += [f"  {pct:5.1f}%  {name}" for name, pct in profile["top_own_pct"][:12]]
    return "\n".join(lines)
