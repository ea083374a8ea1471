"""The heartbeat's common case, answered beside Django with one SQL statement.

Every node heartbeats every `NODE_HEARTBEAT_INTERVAL_S`, so with thousands of nodes the heartbeat is the busiest
endpoint there is. Django's request cycle (middleware, DRF, serializers, three queries) costs about a millisecond
of CPU per heartbeat; this path costs a fraction of that, which is what lets one small machine ingest thousands
per second (bench/README.md).

It serves a `POST /api/v1/llm_models/heartbeat/` only when the answer is certain to be a 200:
  - PostgreSQL is the database, the Host is allowed, the body is JSON under the size limit;
  - the token comes in `Authorization: Bearer` and names a registered node of an active, approved provider;
  - the body holds only `metrics`, `active_requests` and `models`, the values valid by HeartbeatIn's own bounds
    (read off the serializer at import, so the two cannot drift apart; a hypothesis test checks parity), and
    `models`, if sent, is byte for byte the list the node last sent (its digest matches `Node.models_digest`:
    a list that passed validation once passes again, and there is nothing to sync).
Anything else (an unknown or revoked token, a bad value, a changed model list, `results` to process, commands
waiting for the node (pending, or sent and not yet reported), the seed's body `node_token`) goes to the Django
view unchanged, which validates it and answers in the API's error shape.

The statement does what `services.node_record_heartbeat` does for the same input: mark the node online, store
the latest metrics and active requests, and write a history sample when one is due.
"""

import asyncio
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.utils import timezone
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool
from rest_framework import serializers

from clients.models import Client
from core import metrics
from core.asgi import (
    LeanPath,
    Receive,
    Scope,
    Send,
    bearer,
    header,
    send_json,
)
from core.parsers import json_loads
from core.tokens import hash_secret
from llm_models.choices import OPEN_COMMAND_STATUSES, NodeStatus
from llm_models.models import Node, NodeCommand, NodeMetricSample
from llm_models.selectors import metrics_slot_start
from llm_models.serializers import HeartbeatGpuIn, HeartbeatIn, HeartbeatMetricsIn
from llm_models.services import models_digest

HEARTBEAT_PATH = "/api/v1/llm_models/heartbeat/"


# --- Validation: HeartbeatIn's rules for `metrics` and `active_requests`, read off the serializer -------------


@dataclass(frozen=True)
class _Number:
    low: float
    high: float
    integer: bool
    nullable: bool


@dataclass(frozen=True)
class _Text:
    max_length: int


def _no_rule(field: serializers.Field) -> TypeError:
    return TypeError(f"heartbeat fast path: no rule for {field!r}; teach it or drop the field from the fast path")


def _number_rule(field: serializers.Field) -> _Number:
    if (
        isinstance(field, serializers.IntegerField | serializers.FloatField)
        and field.min_value is not None
        and field.max_value is not None
    ):
        return _Number(
            low=field.min_value,
            high=field.max_value,
            integer=isinstance(field, serializers.IntegerField),
            nullable=field.allow_null,
        )
    raise _no_rule(field)


def _rule(field: serializers.Field) -> _Number | _Text:
    if isinstance(field, serializers.IntegerField | serializers.FloatField):
        return _number_rule(field)
    if (
        isinstance(field, serializers.CharField)
        and not field.allow_blank
        and field.trim_whitespace
        and field.max_length is not None
    ):
        return _Text(max_length=field.max_length)
    raise _no_rule(field)


def _list_max(field: serializers.Field) -> int:
    limit = getattr(field, "max_length", None)  # DRF's ListSerializer has it; its stubs do not
    if isinstance(field, serializers.ListSerializer) and isinstance(limit, int):
        return limit
    raise _no_rule(field)


_METRICS = {name: _rule(f) for name, f in HeartbeatMetricsIn().fields.items() if name != "gpus"}
_GPU = {name: _rule(f) for name, f in HeartbeatGpuIn().fields.items()}
_GPUS_MAX = _list_max(HeartbeatMetricsIn().fields["gpus"])
_ACTIVE = _number_rule(HeartbeatIn().fields["active_requests"])


class _NotCommon(Exception):
    """Django must see this body."""


def _number(value: Any, rule: _Number) -> int | float | None:
    if value is None and rule.nullable:
        return None
    # bool is an int to Python, not to JSON; a float for an integer field is refused as DRF's strict types do.
    if isinstance(value, bool) or not isinstance(value, int if rule.integer else int | float):
        raise _NotCommon
    if not rule.low <= value <= rule.high:
        raise _NotCommon
    return value if rule.integer else float(value)


def _text(value: Any, rule: _Text) -> str:
    if not isinstance(value, str) or not value or len(value) > rule.max_length:
        raise _NotCommon
    if value != value.strip() or "\x00" in value:
        raise _NotCommon  # DRF would trim or refuse it: let it
    return value


def _check(value: Any, rule: _Number | _Text) -> Any:
    return _number(value, rule) if isinstance(rule, _Number) else _text(value, rule)


def _gpu(item: Any) -> dict[str, Any]:
    if not isinstance(item, dict):
        raise _NotCommon
    return {name: _check(item[name], rule) for name, rule in _GPU.items() if name in item}


def _metrics(raw: Any) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise _NotCommon
    clean = {name: _check(raw[name], rule) for name, rule in _METRICS.items() if name in raw}
    if "gpus" in raw:
        gpus = raw["gpus"]
        if not isinstance(gpus, list) or len(gpus) > _GPUS_MAX:
            raise _NotCommon
        clean["gpus"] = [_gpu(item) for item in gpus]
    return clean  # unknown keys dropped, as HeartbeatMetricsIn does


@dataclass(frozen=True)
class Heartbeat:
    metrics: dict[str, Any]
    active_requests: int | None
    models_digest: str | None  # of `models` as sent; None when not sent


def parse_heartbeat(body: bytes) -> Heartbeat | None:
    """The heartbeat as HeartbeatIn would validate it, or None where Django must decide (errors, models, results)."""
    try:
        data = json_loads(body)
        if not isinstance(data, dict) or not data.keys() <= {"metrics", "active_requests", "models"}:
            return None
        metrics = _metrics(data["metrics"]) if "metrics" in data else {}
        active = _number(data["active_requests"], _ACTIVE) if "active_requests" in data else None
        if "active_requests" in data and active is None:
            return None
    except (_NotCommon, ValueError):  # MalformedJson is a ValueError: Django answers it 400
        return None
    digest = models_digest(data["models"]) if "models" in data else None
    # _ACTIVE is an integer rule: `active` is an int here.
    return Heartbeat(metrics=metrics, active_requests=None if active is None else int(active), models_digest=digest)


# --- Storage: one statement --------------------------------------------------------------------------------------

_SQL = """
WITH beat AS (
    UPDATE {node} AS n
       SET status = %(online)s, last_heartbeat_at = %(now)s, latest_metrics = %(metrics)s,
           active_requests = COALESCE(%(active)s, n.active_requests),
           last_metrics_sample_at = CASE
               WHEN n.last_metrics_sample_at IS NULL OR n.last_metrics_sample_at < %(slot_start)s
               THEN %(now)s ELSE n.last_metrics_sample_at END
      FROM {client} AS c JOIN {user} AS u ON u.id = c.user_id
     WHERE n.token_digest = %(digest)s AND n.status <> %(deregistered)s AND c.id = n.owner_id
       AND u.is_active AND (c.is_gpu_provider_approved OR u.is_staff)
       AND (%(models_digest)s::text IS NULL OR n.models_digest = %(models_digest)s::text)
       -- A node with commands to deliver gets its answer from the Django view, which sends them.
       AND NOT EXISTS (SELECT 1 FROM {command} AS cmd
                        WHERE cmd.node_id = n.id AND cmd.status IN ({open_statuses}))
 RETURNING n.id, n.last_metrics_sample_at = %(now)s AS sampled
), sample AS (
    INSERT INTO {sample} (node_id, recorded_at, metrics, active_requests)
    SELECT id, %(now)s, %(metrics)s, COALESCE(%(active)s, 0) FROM beat WHERE sampled
)
SELECT id FROM beat
"""


def heartbeat_sql() -> str:
    """The statement, with this project's table names."""
    return _SQL.format(
        node=Node._meta.db_table,
        client=Client._meta.db_table,
        user=get_user_model()._meta.db_table,
        sample=NodeMetricSample._meta.db_table,
        command=NodeCommand._meta.db_table,
        # Literals, not parameters: a prepared statement's generic plan can then use the partial index of open
        # commands. They are our own constants, never input.
        open_statuses=", ".join(f"'{status}'" for status in OPEN_COMMAND_STATUSES),
    )


_pools: dict[asyncio.AbstractEventLoop, AsyncConnectionPool] = {}


def _connection_kwargs() -> dict[str, Any]:
    db = settings.DATABASES["default"]
    kwargs = {
        "dbname": db["NAME"],
        "user": db.get("USER") or None,
        "password": db.get("PASSWORD") or None,
        "host": db.get("HOST") or None,
        "port": db.get("PORT") or None,
        "autocommit": True,  # one statement: its own transaction, no COMMIT round trip
    }
    options = {k: v for k, v in db.get("OPTIONS", {}).items() if k not in {"pool", "server_side_binding"}}
    return {k: v for k, v in (kwargs | options).items() if v is not None}


async def _pool() -> AsyncConnectionPool:
    """This event loop's pool (one per process in production; tests run several loops)."""
    loop = asyncio.get_running_loop()
    pool = _pools.get(loop)
    if pool is None:
        pool = AsyncConnectionPool(
            kwargs=_connection_kwargs(),
            min_size=1,
            max_size=settings.HEARTBEAT_FAST_PATH_POOL_SIZE,
            open=False,
            name="heartbeat-fast-path",
        )
        _pools[loop] = pool
        await pool.open()
    return pool


async def close_pools() -> None:
    """Close this event loop's pool (tests and shutdown)."""
    pool = _pools.pop(asyncio.get_running_loop(), None)
    if pool is not None:
        await pool.close()


async def record_heartbeat(*, token: str, heartbeat: Heartbeat) -> bool:
    """Store the heartbeat of the node holding `token`; False (nothing stored) if no node of an approved provider
    holds it, or if its model list changed."""
    now = timezone.now()
    params = {
        "online": NodeStatus.ONLINE.value,
        "deregistered": NodeStatus.DEREGISTERED.value,
        "now": now,
        "slot_start": metrics_slot_start(now),
        "metrics": Jsonb(heartbeat.metrics),
        "active": heartbeat.active_requests,
        "digest": hash_secret(token),
        "models_digest": heartbeat.models_digest,
    }
    async with (await _pool()).connection() as conn:
        cursor = await conn.execute(_STATEMENT, params)
        return await cursor.fetchone() is not None


_STATEMENT = heartbeat_sql()


# --- The ASGI wrapper ---------------------------------------------------------------------------------------------


def _enabled() -> bool:
    return settings.HEARTBEAT_FAST_PATH and settings.DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql"


def _is_json(scope: Scope) -> bool:
    content_type = header(scope, b"content-type") or b""
    return content_type.split(b";")[0].strip().lower() == b"application/json"


class HeartbeatFastPath(LeanPath):
    """ASGI middleware: the heartbeat's common case here, everything else to `app` (Django)."""

    path = HEARTBEAT_PATH

    def wants(self, scope: Scope) -> bool:
        return _enabled() and _is_json(scope)

    async def serve(self, scope: Scope, body: bytes, receive: Receive, send: Send) -> bool:
        token = bearer(scope)
        heartbeat = parse_heartbeat(body) if token else None
        if token is None or heartbeat is None or not await record_heartbeat(token=token, heartbeat=heartbeat):
            return False
        metrics.HEARTBEATS.inc()
        await send_json(
            send,
            200,
            {
                "status": NodeStatus.ONLINE.value,
                "heartbeat_interval_s": settings.NODE_HEARTBEAT_INTERVAL_S,
                "commands": [],
            },
        )
        return True
