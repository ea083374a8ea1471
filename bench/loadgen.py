"""The load generator: asyncio + aiohttp with keep-alive connections, on uvloop to spend less of the shared CPU."""

import asyncio
import itertools
import statistics
import time
from collections import Counter
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import aiohttp
import uvloop

HEARTBEAT_PATH = "/api/v1/llm_models/heartbeat/"
ALL_MODELS_PATH = "/api/v1/llm_models/all-models/?page_size=100"


@dataclass
class LoadResult:
    duration_s: float
    completed: int
    per_second: float
    latency_ms: dict[str, float]
    errors: int
    statuses: dict[str, int]
    error_samples: list[str] = field(default_factory=list)
    warmup_requests: int = 0
    distinct_nodes: int = 0


def percentiles_ms(samples_s: Sequence[float]) -> dict[str, float]:
    if not samples_s:
        return {}
    ordered = sorted(samples_s)

    def pick(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000, 3)

    return {
        "p50": pick(0.50),
        "p90": pick(0.90),
        "p99": pick(0.99),
        "max": round(ordered[-1] * 1000, 3),
        "mean": round(statistics.fmean(ordered) * 1000, 3),
    }


def run(coro: Coroutine[Any, Any, Any]) -> Any:
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coro)


class _RawConnection(asyncio.Protocol):
    """A minimal HTTP/1.1 keep-alive client connection: writes prepared request bytes, reads one response at a time
    (Content-Length bodies only; anything else is an error). A tenth of aiohttp's CPU per request, which matters
    when the load generator shares two cores with the server and PostgreSQL."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.waiter: asyncio.Future[tuple[int, bytes, bool]] | None = None
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(ConnectionError(f"connection lost: {exc!r}"))

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if self.waiter is None or self.waiter.done():
            return
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            return
        lines = bytes(self.buffer[:end]).split(b"\r\n")
        status = int(lines[0].split(b" ", 2)[1])
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            headers[name.strip().lower()] = value.strip()
        if b"content-length" not in headers:
            self.waiter.set_exception(ConnectionError("response without Content-Length"))
            return
        total = end + 4 + int(headers[b"content-length"])
        if len(self.buffer) < total:
            return
        body = bytes(self.buffer[end + 4 : total])
        del self.buffer[:total]
        self.waiter.set_result((status, body, headers.get(b"connection", b"").lower() == b"close"))

    async def request(self, raw: bytes) -> tuple[int, bytes, bool]:
        assert self.transport is not None
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(raw)
        return await self.waiter

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


async def _raw_connect(host: str, port: int) -> _RawConnection:
    _, protocol = await asyncio.get_running_loop().create_connection(_RawConnection, host, port)
    return protocol


def prepare_requests(base_url: str, nodes: Sequence[tuple[str, bytes]]) -> list[bytes]:
    """The exact bytes of each node's heartbeat request (HTTP/1.1, keep-alive)."""
    host = base_url.split("://", 1)[1]
    return [
        (
            f"POST {HEARTBEAT_PATH} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode()
        + body
        for token, body in nodes
    ]


async def heartbeat_load(
    *,
    base_url: str,
    nodes: Sequence[tuple[str, bytes]],
    concurrency: int,
    warmup_s: float,
    duration_s: float,
    on_window_start: Callable[[], None] = lambda: None,
    on_window_end: Callable[[], None] = lambda: None,
    client: str = "raw",
) -> LoadResult:
    """`concurrency` connections, each POSTing heartbeats back to back, round-robin over all `nodes`.

    Only requests that start and finish inside the measurement window (after the warm-up) count towards
    throughput and latency; errors are counted over the whole run, warm-up included.
    """
    url = base_url + HEARTBEAT_PATH
    host, port = base_url.split("://", 1)[1].split(":")
    prepared = prepare_requests(base_url, nodes) if client == "raw" else []
    headers = [{"Authorization": f"Bearer {token}", "Content-Type": "application/json"} for token, _ in nodes]
    bodies = [body for _, body in nodes]
    order = itertools.count()
    latencies: list[float] = []
    statuses: Counter[str] = Counter()
    error_samples: list[str] = []
    hit: set[int] = set()
    started = time.perf_counter()
    window_start = started + warmup_s
    window_end = window_start + duration_s
    warmup = 0

    def account(i: int, t0: float, t1: float, status: int, text: bytes) -> None:
        nonlocal warmup
        statuses[str(status)] += 1
        if status != 200 and len(error_samples) < 5:
            error_samples.append(f"{status}: {text[:300]!r}")
        if t0 >= window_start and t1 <= window_end:
            latencies.append(t1 - t0)
            hit.add(i)
        elif t1 < window_start:
            warmup += 1

    async def aiohttp_connection(session: aiohttp.ClientSession) -> None:
        while (t0 := time.perf_counter()) < window_end:
            i = next(order) % len(bodies)
            try:
                async with session.post(url, data=bodies[i], headers=headers[i]) as response:
                    text = await response.read()
                    status = response.status
            except (aiohttp.ClientError, TimeoutError) as exc:
                status, text = 0, repr(exc).encode()
            account(i, t0, time.perf_counter(), status, text)

    async def raw_connection() -> None:
        conn = await _raw_connect(host, int(port))
        while (t0 := time.perf_counter()) < window_end:
            i = next(order) % len(prepared)
            try:
                status, text, close = await asyncio.wait_for(conn.request(prepared[i]), 30)
            except (ConnectionError, TimeoutError) as exc:
                status, text, close = 0, repr(exc).encode(), True
            account(i, t0, time.perf_counter(), status, text)
            if close or conn.closed:
                conn.close()
                conn = await _raw_connect(host, int(port))
        conn.close()

    async def clock() -> None:
        await asyncio.sleep(max(0.0, window_start - time.perf_counter()))
        on_window_start()
        await asyncio.sleep(max(0.0, window_end - time.perf_counter()))
        on_window_end()

    if client == "raw":
        await asyncio.gather(clock(), *(raw_connection() for _ in range(concurrency)))
    else:
        connector = aiohttp.TCPConnector(limit=concurrency, keepalive_timeout=120)
        timeout = aiohttp.ClientTimeout(total=30)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
            await asyncio.gather(clock(), *(aiohttp_connection(session) for _ in range(concurrency)))
    errors = sum(n for status, n in statuses.items() if status != "200")
    return LoadResult(
        duration_s=duration_s,
        completed=len(latencies),
        per_second=round(len(latencies) / duration_s, 1),
        latency_ms=percentiles_ms(latencies),
        errors=errors,
        statuses=dict(statuses),
        error_samples=error_samples,
        warmup_requests=warmup,
        distinct_nodes=len(hit),
    )


async def sequential_gets(*, url: str, warmup: int, requests: int) -> tuple[LoadResult, bytes]:
    """One keep-alive connection, one request at a time: the latency a single caller sees."""
    latencies: list[float] = []
    statuses: Counter[str] = Counter()
    body = b""
    connector = aiohttp.TCPConnector(limit=1)
    async with aiohttp.ClientSession(connector=connector) as session:
        for n in range(warmup + requests):
            t0 = time.perf_counter()
            async with session.get(url) as response:
                body = await response.read()
                status = response.status
            t1 = time.perf_counter()
            statuses[str(status)] += 1
            if n >= warmup:
                latencies.append(t1 - t0)
    errors = sum(n for status, n in statuses.items() if status != "200")
    total = sum(latencies)
    return (
        LoadResult(
            duration_s=round(total, 3),
            completed=len(latencies),
            per_second=round(len(latencies) / total, 1) if total else 0.0,
            latency_ms=percentiles_ms(latencies),
            errors=errors,
            statuses=dict(statuses),
        ),
        body,
    )
