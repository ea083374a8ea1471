"""The inference table: one row a figure, one column a target, then the target and whether ours meets it."""

from dataclasses import dataclass
from typing import Any

# Issue 12's raised targets (the floor a lean relay can reach: one worker, its own CPU only).
ADDED_P50_MS = 0.5
ADDED_P99_MS = 2.0
THROUGHPUT_VS_LITELLM = 25.0
ADDED_TTFT_P50_MS = 3.0
STREAMS_HELD = 1500
CPU_MS_PER_REQUEST = 0.3
NAMES = ("direct", "ours", "litellm")


@dataclass(frozen=True)
class Row:
    figure: str
    cells: tuple[str, str, str]  # direct, ours, LiteLLM
    target: str = ""
    ok: bool | None = None  # ours against the target; None: no target


def _ms(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def _pair(a: float | None, b: float | None) -> str:
    return f"{_ms(a)} / {_ms(b)}"


def _all_met(*checks: bool | None) -> bool | None:
    return None if any(c is None for c in checks) else all(checks)


def _at_most(value: float | None, limit: float) -> bool | None:
    return None if value is None else value <= limit


def rows(inference: dict[str, Any]) -> list[Row]:
    """Every row of the table; a run that failed gives one row saying why."""
    if "error" in inference:
        return [Row("inference scenario", ("", f"failed: {inference['error']}", ""), "runs", False)]
    s = inference["summary"]
    workers = {name: inference["targets"][name]["workers"] for name in NAMES}
    concurrencies = inference["plan"]["concurrencies"]
    out: list[Row] = []

    def each(render: Any) -> tuple[str, str, str]:
        return tuple(render(name) for name in NAMES)  # type: ignore[return-value]

    c1 = "chat_c1"
    out.append(Row("c=1 latency p50 / p99 (ms)", each(lambda n: _pair(s[n][c1]["p50_ms"], s[n][c1]["p99_ms"]))))
    added = s["ours"]["added_ms"]
    out.append(
        Row(
            "c=1 added latency p50 / p99 vs direct, same round (ms)",
            each(
                lambda n: (
                    "" if n == "direct" else _pair(s[n]["added_ms"]["chat_c1_p50"], s[n]["added_ms"]["chat_c1_p99"])
                )
            ),
            f"<= {ADDED_P50_MS:g} / <= {ADDED_P99_MS:g}",
            _all_met(_at_most(added["chat_c1_p50"], ADDED_P50_MS), _at_most(added["chat_c1_p99"], ADDED_P99_MS)),
        )
    )
    for c in concurrencies:
        key = f"chat_c{c}"
        out.append(
            Row(
                f"c={c} requests/s per worker; p50 / p99 (ms)",
                each(
                    lambda n, key=key: (
                        f"{s[n][key]['per_second'] / workers[n]:,.0f}; "
                        + _pair(s[n][key]["p50_ms"], s[n][key]["p99_ms"])
                    )
                ),
            )
        )
    ratios = s["ours"].get("per_second_vs_litellm", {})
    for c in (c for c in concurrencies if c > 1):
        ratio = ratios.get(f"c{c}")
        out.append(
            Row(
                f"c={c} requests/s per worker, ours / LiteLLM (same round)",
                ("", "-" if ratio is None else f"{ratio:.2f}x", "1x"),
                f">= {THROUGHPUT_VS_LITELLM:g}x",
                None if ratio is None else ratio >= THROUGHPUT_VS_LITELLM,
            )
        )
    out.append(
        Row(
            "streaming time to first token, c=1, p50 / p99 (ms)",
            each(lambda n: _pair(s[n]["ttft_c1"]["p50_ms"], s[n]["ttft_c1"]["p99_ms"])),
        )
    )
    out.append(
        Row(
            "added time to first token p50 / p99 vs direct (ms)",
            each(lambda n: "" if n == "direct" else _pair(s[n]["added_ms"]["ttft_p50"], s[n]["added_ms"]["ttft_p99"])),
            f"p50 <= {ADDED_TTFT_P50_MS:g}",
            _at_most(added["ttft_p50"], ADDED_TTFT_P50_MS),
        )
    )
    busy = [c for c in concurrencies if c > 1]
    cpu = {n: [s[n][f"chat_c{c}"]["cpu_ms_per_request"].get("server") for c in busy] for n in NAMES}
    out.append(
        Row(
            "server CPU ms per request (its own processes), " + " / ".join(f"c={c}" for c in busy),
            each(lambda n: " / ".join(_ms(v) for v in cpu[n])),
            f"<= {CPU_MS_PER_REQUEST:g}",
            _all_met(*(_at_most(v, CPU_MS_PER_REQUEST) for v in cpu["ours"])),
        )
    )
    whole = inference.get("ours_whole_run", {}).get("cpu_ms_per_response", {})
    until_idle = [s["ours"][f"chat_c{c}"]["cpu_ms_per_response_until_idle"] for c in busy]

    def _sum(figures: dict, *groups: str) -> float | None:
        values = [figures.get(g) for g in groups]
        return None if any(v is None for v in values) else sum(values)  # type: ignore[arg-type]

    for groups, label in (
        (("celery_worker",), "Celery worker (the usage drain)"),
        (("postgres", "postgres_exited"), "PostgreSQL (exited backends of any database included)"),
    ):
        out.append(
            Row(
                f"ours: {label} CPU ms per request, " + " / ".join(f"c={c}" for c in busy) + " until idle; whole run",
                ("", " / ".join(_ms(_sum(f, *groups)) for f in until_idle) + f"; {_ms(_sum(whole, *groups))}", ""),
            )
        )
    activity = [s["ours"][f"chat_c{c}"].get("postgres_activity", {}) for c in busy]
    out.append(
        Row(
            "ours: PostgreSQL sessions opened / commits per request, " + " / ".join(f"c={c}" for c in busy),
            (
                "",
                " / ".join(
                    f"{_ms(a.get('sessions_per_request'), 3)}, {_ms(a.get('commits_per_request'), 3)}" for a in activity
                ),
                "",
            ),
        )
    )
    errors = {n: sum(f["errors"] for f in s[n].values() if isinstance(f, dict) and "errors" in f) for n in NAMES}
    responses = {
        n: sum(f["responses"] for f in s[n].values() if isinstance(f, dict) and "responses" in f) for n in NAMES
    }
    out.append(
        Row(
            "errors, every window with its warm-up (non-stream and TTFT streams)",
            each(lambda n: f"{errors[n]:,} of {responses[n]:,}"),
            "0",
            errors["ours"] == 0,
        )
    )
    streams = inference["streams"]
    plan = inference["plan"]
    stall_ms = plan["stall_factor"] * plan["pacing_ms"]
    seconds = plan["stream_chunks"] * plan["pacing_ms"] / 1000

    def held(n: str) -> str:
        first = streams[n]["first_failure"]
        text = f"{streams[n]['held']:,}"
        if first is not None:
            text += f" ({first['count']:,}: {first['count'] - first['passed']:,} failed)"
        return text

    out.append(
        Row(
            f"concurrent {seconds:.0f}-s streams held, no error and no gap > {stall_ms:.0f} ms (first failing level)",
            each(held),
            f">= {STREAMS_HELD:,}",
            streams["ours"]["held"] >= STREAMS_HELD,
        )
    )
    return out


def _verdict(ok: bool | None) -> str:
    return "" if ok is None else ("yes" if ok else "**NO**")


def render(inference: dict[str, Any]) -> str:
    """The heading, the table, and what went wrong where anything did."""
    if "error" in inference:
        return f"Inference: the scenario failed: {inference['error']}"
    plan = inference["plan"]
    labels = [inference["targets"][n]["label"] for n in NAMES]
    lines = [
        f"Inference: direct vs ours vs {labels[2]}, {plan['workers']} worker each, median of {plan['rounds']} "
        f"alternating rounds of {plan['window_s']:g}-s windows; wall {inference['wall_s'] / 60:.1f} min "
        f"(start-up {inference['startup_s']:.0f} s, rounds {inference['rounds_s']:.0f} s, streams "
        f"{inference['streams_s']:.0f} s)",
        "",
        "| figure | direct | ours | LiteLLM | target | met |",
        "|---|---:|---:|---:|---:|:---:|",
    ]
    lines += [f"| {r.figure} | {' | '.join(r.cells)} | {r.target} | {_verdict(r.ok)} |" for r in rows(inference)]
    problems = []
    for window in inference["windows"]:
        if window["error_samples"]:
            problems.append(
                f"  {window['target']} round {window['round']} {window['kind']} c={window['concurrency']}: "
                f"{window['errors']} errors, e.g. {window['error_samples'][0]}"
            )
    for name, result in inference["streams"].items():
        if result["first_failure"]:
            first = result["first_failure"]
            problems.append(
                f"  {name} streams at {first['count']}: {first['failures']} "
                f"({first['stalls_before_first_byte']} of the stalls waiting for the first bytes); "
                f"longest gap {first['max_gap_ms']:.0f} ms; server "
                f"{first['cores']['server']:.2f} cores; e.g. {first['failure_samples'][:2]}"
            )
    if inference.get("heartbeats", {}).get("failures"):
        problems.append(f"  node heartbeats failed: {inference['heartbeats']['failures'][:3]}")
    if problems:
        lines += ["", "Errors and failures:", *problems]
    return "\n".join(lines)
