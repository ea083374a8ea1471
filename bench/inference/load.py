"""The three kinds of load: closed-loop chat completions, time to first token, and many concurrent streams."""

import asyncio
import json
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from bench.inference.http_client import Connection, connect
from bench.loadgen import percentiles_ms

REQUEST_TIMEOUT_S = 30.0
ERROR_SAMPLES = 5


@dataclass
class WindowResult:
    """Requests that ended inside the measured window (after the warm-up); errors over the whole run."""

    duration_s: float
    completed: int  # good responses that ended inside the window (throughput, CPU per request)
    per_second: float
    latency_ms: dict[str, float]  # of the same requests (those that ended inside the window)
    errors: int
    responses: int  # every response or failure, warm-up included (the service's whole-run accounting)
    statuses: dict[str, int]
    error_samples: list[str] = field(default_factory=list)


def check_completion(status: int, body: bytes) -> str | None:
    """None when a non-stream answer is a 200 with an assistant message; otherwise what is wrong."""
    if status != 200:
        return f"HTTP {status}: {body[:200]!r}"
    try:
        content = json.loads(body)["choices"][0]["message"]["content"]
    except (ValueError, KeyError, IndexError, TypeError):
        return f"malformed answer: {body[:200]!r}"
    return None if isinstance(content, str) and content else f"empty answer: {body[:200]!r}"


class _Tally:
    def __init__(self, window_start: float, window_end: float) -> None:
        self.window_start = window_start
        self.window_end = window_end
        self.samples: list[float] = []
        self.statuses: Counter[str] = Counter()
        self.errors = 0
        self.responses = 0
        self.error_samples: list[str] = []

    def add(self, t0: float, t1: float, status: int, problem: str | None, sample: float | None = None) -> None:
        self.responses += 1
        self.statuses[str(status)] += 1
        if problem is not None:
            self.errors += 1
            if len(self.error_samples) < ERROR_SAMPLES:
                self.error_samples.append(problem)
            return
        if self.window_start <= t1 <= self.window_end:
            self.samples.append(t1 - t0 if sample is None else sample)

    def result(self, duration_s: float) -> WindowResult:
        return WindowResult(
            duration_s=duration_s,
            completed=len(self.samples),
            per_second=round(len(self.samples) / duration_s, 1),
            latency_ms=percentiles_ms(self.samples),
            errors=self.errors,
            responses=self.responses,
            statuses=dict(self.statuses),
            error_samples=self.error_samples,
        )


async def _clock(start: float, end: float, on_start: Callable[[], None], on_end: Callable[[], None]) -> None:
    await asyncio.sleep(max(0.0, start - time.perf_counter()))
    on_start()
    await asyncio.sleep(max(0.0, end - time.perf_counter()))
    on_end()


async def closed_loop(
    *,
    host: str,
    port: int,
    raw: bytes,
    concurrency: int,
    warmup_s: float,
    duration_s: float,
    on_window_start: Callable[[], None] = lambda: None,
    on_window_end: Callable[[], None] = lambda: None,
) -> WindowResult:
    """`concurrency` keep-alive connections, each sending `raw` back to back until the window ends."""
    started = time.perf_counter()
    tally = _Tally(started + warmup_s, started + warmup_s + duration_s)

    async def worker() -> None:
        conn: Connection | None = None
        while (t0 := time.perf_counter()) < tally.window_end:
            try:
                if conn is None or not conn.reusable:
                    if conn is not None:
                        conn.close()
                    conn = await connect(host, port)
                status, body = await asyncio.wait_for(conn.request(raw), REQUEST_TIMEOUT_S)
                problem = check_completion(status, body)
            except (OSError, TimeoutError) as exc:
                status, problem = 0, f"{type(exc).__name__}: {exc}"
                if conn is not None:
                    conn.close()
                conn = None
            tally.add(t0, time.perf_counter(), status, problem)
        if conn is not None:
            conn.close()

    await asyncio.gather(
        _clock(tally.window_start, tally.window_end, on_window_start, on_window_end),
        *(worker() for _ in range(concurrency)),
    )
    return tally.result(duration_s)


def _has_content(buffer: bytearray) -> bool:
    """Whether the SSE events in `buffer` so far include a chunk with non-empty content."""
    for event in bytes(buffer).split(b"\n\n")[:-1]:
        for line in event.split(b"\n"):
            if not line.startswith(b"data:"):
                continue
            data = line[5:].strip()
            if data == b"[DONE]":
                continue
            try:
                choices = json.loads(data).get("choices") or []
                if choices and (choices[0].get("delta") or {}).get("content"):
                    return True
            except (ValueError, AttributeError, TypeError):
                continue
    return False


async def time_to_first_token(
    *,
    host: str,
    port: int,
    raw: bytes,
    warmup_s: float,
    duration_s: float,
    on_window_start: Callable[[], None] = lambda: None,
    on_window_end: Callable[[], None] = lambda: None,
) -> WindowResult:
    """One stream at a time over one keep-alive connection: send to the first chunk with content (the sample);
    each stream must also end with `data: [DONE]` and carry no `error` event."""
    started = time.perf_counter()
    tally = _Tally(started + warmup_s, started + warmup_s + duration_s)

    async def streams() -> None:
        conn: Connection | None = None
        while (t0 := time.perf_counter()) < tally.window_end:
            buffer = bytearray()
            first: list[float] = []

            def on_piece(piece: bytes, buffer: bytearray = buffer, first: list[float] = first) -> None:
                buffer.extend(piece)
                if not first and _has_content(buffer):
                    first.append(time.perf_counter())

            try:
                if conn is None or not conn.reusable:
                    if conn is not None:
                        conn.close()
                    conn = await connect(host, port)
                status, _ = await asyncio.wait_for(conn.request(raw, on_piece), REQUEST_TIMEOUT_S)
                problem = None
                if status != 200:
                    problem = f"HTTP {status}: {bytes(buffer[:200])!r}"
                elif not first:
                    problem = f"no content chunk: {bytes(buffer[:200])!r}"
                elif b'"error"' in buffer or not buffer.rstrip().endswith(b"data: [DONE]"):
                    problem = f"stream did not end with [DONE]: {bytes(buffer[-200:])!r}"
            except (OSError, TimeoutError) as exc:
                status, problem = 0, f"{type(exc).__name__}: {exc}"
                if conn is not None:
                    conn.close()
                conn = None
            tally.add(t0, time.perf_counter(), status, problem, sample=(first[0] - t0) if first else None)
        if conn is not None:
            conn.close()

    await asyncio.gather(_clock(tally.window_start, tally.window_end, on_window_start, on_window_end), streams())
    return tally.result(duration_s)


@dataclass
class StreamLevel:
    """`count` streams opened together: how many ended well, and why the others did not."""

    count: int
    passed: int
    failures: dict[str, int]
    failure_samples: list[str]
    max_gap_ms: float
    gap_p99_ms: float  # over streams: each stream's longest gap
    first_byte_max_ms: float
    stalls_before_first_byte: int  # of the stalled streams, those whose longest wait was for their first bytes
    open_s: float  # from the first stream sent to the last
    wall_s: float

    @property
    def ok(self) -> bool:
        return self.passed == self.count


async def concurrent_streams(
    *, host: str, port: int, raw: bytes, count: int, stagger_s: float, stall_s: float, expect_s: float
) -> StreamLevel:
    """`count` streams at once, each on its own connection, started `stagger_s` apart. A stream passes if it is a 200,
    ends with `data: [DONE]`, carries no `error` event, and never waits more than `stall_s` for its next bytes
    (the wait for the first bytes included)."""
    failures: Counter[str] = Counter()
    samples: list[str] = []
    longest: list[float] = []
    first_bytes: list[float] = []
    first_byte_stalls = 0
    sent: list[float] = []
    t_start = time.perf_counter()

    def fail(kind: str, detail: str) -> None:
        failures[kind] += 1
        if len(samples) < ERROR_SAMPLES:
            samples.append(f"{kind}: {detail}")

    async def one(i: int) -> None:
        nonlocal first_byte_stalls
        await asyncio.sleep(i * stagger_s)
        state: dict[str, Any] = {"last": 0.0, "gap": 0.0, "first": None, "tail": b"", "error": False}

        def on_piece(piece: bytes) -> None:
            now = time.perf_counter()
            state["gap"] = max(state["gap"], now - state["last"])
            if state["first"] is None:
                state["first"] = now - state["last"]
            state["last"] = now
            if b'"error"' in piece:
                state["error"] = True
            state["tail"] = (state["tail"] + piece)[-64:]

        conn: Connection | None = None
        try:
            conn = await asyncio.wait_for(connect(host, port), expect_s)
            state["last"] = time.perf_counter()
            sent.append(state["last"])
            status, _ = await asyncio.wait_for(conn.request(raw, on_piece), expect_s + REQUEST_TIMEOUT_S)
        except (OSError, TimeoutError) as exc:
            fail(type(exc).__name__, str(exc)[:200])
            return
        finally:
            if conn is not None:
                conn.close()
        longest.append(state["gap"])
        if state["first"] is not None:
            first_bytes.append(state["first"])
        if status != 200:
            fail(f"HTTP {status}", repr(state["tail"]))
        elif state["error"]:
            fail("error event", repr(state["tail"]))
        elif not state["tail"].rstrip().endswith(b"data: [DONE]"):
            fail("no [DONE]", repr(state["tail"]))
        elif state["gap"] > stall_s:
            first_byte_stalls += state["first"] is None or state["first"] >= state["gap"]
            fail(f"stall > {stall_s * 1000:.0f} ms", f"{state['gap'] * 1000:.0f} ms")

    await asyncio.gather(*(one(i) for i in range(count)))
    gaps = percentiles_ms(longest)
    return StreamLevel(
        count=count,
        passed=count - sum(failures.values()),
        failures=dict(failures),
        failure_samples=samples,
        max_gap_ms=gaps.get("max", 0.0),
        gap_p99_ms=gaps.get("p99", 0.0),
        first_byte_max_ms=round(max(first_bytes, default=0.0) * 1000, 1),
        stalls_before_first_byte=first_byte_stalls,
        open_s=round(max(sent, default=t_start) - min(sent, default=t_start), 2),
        wall_s=round(time.perf_counter() - t_start, 2),
    )
