"""The usage journal: a Redis stream between the lean /v1 door and PostgreSQL.

The lean door's record step (inference/v1/record.py) appends one entry per request (and one when a lease closes)
before the client receives the end of its answer (`append_or_apply`); `drain` (a Celery beat task, every
USAGE_DRAIN_INTERVAL_S) applies them to PostgreSQL with inference/journal/entries.py and only then acknowledges
them. A drainer that dies between the two leaves its entries pending; the next drain claims them after
USAGE_DRAIN_CLAIM_IDLE_S and applies them again, which changes nothing the first time did (entries.apply is
idempotent). So each entry takes effect exactly once, whichever process
dies when.

Durability is Redis's: in production give it an append-only file (`appendonly yes`, `appendfsync everysec` or
`always`), or entries written in the last second before a Redis crash are lost.
"""

import logging
import os
import socket
from typing import Any

import redis
from django.conf import settings

from core import json_codec
from core.asgi import database_call
from core.redis_mux import redis_mux
from inference.journal import entries

log = logging.getLogger(__name__)

STREAM = "gm:inference:usage"
DEAD = "gm:inference:usage:dead"  # entries that could not be applied even alone: kept for an operator
GROUP = "usage-drain"


def enabled() -> bool:
    return bool(settings.USAGE_JOURNAL_URL)


def _encode(entry: dict[str, Any]) -> bytes:
    return json_codec.dumps(entry, default=str)


async def append(entry: dict[str, Any]) -> None:
    """Add one entry (entries.use_entry / entries.close_entry) and wait until Redis has it; raises redis.RedisError
    when Redis cannot take it. The loop's appends share one pipelined connection (core/redis_mux.py): those made
    while one is on the wire go out together, so a thousand streams ending at once cost a few round trips."""
    await redis_mux(settings.USAGE_JOURNAL_URL, timeout_s=2).execute("XADD", STREAM, "*", "e", _encode(entry))


_apply_now_async = database_call(entries.apply)


async def append_or_apply(entry: dict[str, Any]) -> None:
    """Journal an entry; if Redis cannot take it, apply it to PostgreSQL now (slower, never lost)."""
    try:
        await append(entry)
    except Exception:  # whatever kept Redis from taking it, the entry must not be lost
        log.warning("usage journal unavailable: applying a %s entry to PostgreSQL directly", entry["t"], exc_info=True)
        await _apply_now_async([entry])


def _sync_client() -> redis.Redis:
    return redis.Redis.from_url(settings.USAGE_JOURNAL_URL, socket_timeout=10, socket_connect_timeout=5)


def _ensure_group(client: redis.Redis) -> None:
    try:
        client.xgroup_create(STREAM, GROUP, id="0", mkstream=True)
    except redis.ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise


def _apply(client: redis.Redis, messages: list[tuple[bytes, dict[Any, Any]]]) -> int:
    """Apply these messages and acknowledge them; one that fails even alone goes to the dead stream."""
    if not messages:
        return 0
    ids = [message_id for message_id, _ in messages]
    batch = [json_codec.loads(fields[b"e"]) for _, fields in messages]
    try:
        entries.apply(batch)
    except Exception:
        log.exception("usage drain: a batch of %d failed; applying its entries one by one", len(batch))
        for (message_id, fields), entry in zip(messages, batch, strict=True):
            try:
                entries.apply([entry])
            except Exception:
                log.exception("usage drain: entry %s could not be applied; moved to %s", message_id, DEAD)
                client.xadd(DEAD, fields)
    pipe = client.pipeline()
    pipe.xack(STREAM, GROUP, *ids)
    pipe.xdel(STREAM, *ids)
    pipe.execute()
    return len(ids)


def drain(*, batch_size: int = 500, max_batches: int = 200) -> int:
    """Apply what the journal holds (and what a dead drainer left pending), in batches of `batch_size` until one
    comes back short: everything appended before the run began is applied; returns the entries applied."""
    if not enabled():
        return 0
    client = _sync_client()
    try:
        _ensure_group(client)
        consumer = f"{socket.gethostname()}-{os.getpid()}"
        idle_ms = int(settings.USAGE_DRAIN_CLAIM_IDLE_S * 1000)
        applied = 0
        start = "0-0"
        while True:  # first, entries another drainer read and never acknowledged
            start, messages, *_ = client.xautoclaim(STREAM, GROUP, consumer, idle_ms, start, count=batch_size)
            applied += _apply(client, [m for m in messages if m[1]])
            if start in (b"0-0", "0-0"):
                break
        for _ in range(max_batches):
            # A RESP2 reply, [[stream, [(id, fields), ...]]] (redis-py types RESP3's dict reply alike).
            read: Any = client.xreadgroup(GROUP, consumer, {STREAM: ">"}, count=batch_size)
            messages = read[0][1] if read else []
            if not messages:
                break
            applied += _apply(client, messages)
            if len(messages) < batch_size:
                # The journal's tail: what arrives meanwhile waits for the next drain. Chasing it applied a few
                # dozen entries a batch, each batch paying the ledger's dozen statements (0.6 ms of CPU a request).
                break
        return applied
    finally:
        client.close()


def pending() -> int:
    """Entries appended and not yet applied (for health checks and tests)."""
    if not enabled():
        return 0
    client = _sync_client()
    try:
        return int(client.xlen(STREAM))
    finally:
        client.close()


def lag_seconds(*, now_ms: int | None = None) -> float:
    """How long the oldest entry not yet applied has waited (0 when none): entries are deleted once applied, so the
    stream's first entry is the oldest pending one, and its id is the millisecond it was appended at."""
    if not enabled():
        return 0.0
    client = _sync_client()
    try:
        first = client.xrange(STREAM, count=1)
        if not first:
            return 0.0
        entry_id = first[0][0]
        text = entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)
        appended_ms = int(text.split("-")[0])
        now_ms = now_ms if now_ms is not None else int(client.time()[0]) * 1000
        return max(0.0, (now_ms - appended_ms) / 1000)
    finally:
        client.close()
