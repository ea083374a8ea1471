"""The billing journal's entries, and applying them to PostgreSQL (rows and charges) exactly once.

The lean /v1 door writes nothing to the database per request. It reserves the request's most possible cost from
a lease (a ledger hold of many requests' worth, inference/v1/leases.py), relays, and its record step
(inference/v1/record.py) journals one *use* entry (inference/journal/stream.py); a lease that is done with journals
a *close* entry. `apply` turns entries into what the web door writes at once: one `InferenceRequest` row per
request (channel `web`, built from the model's own fields as the ORM would) and its charge,
taken from the lease hold and split 70/25/5 (one ledger transaction per lease and operator per batch, with one
line per request on the client's account, ref `inference:<id>`), then the release of closed leases.

Exactly once: a use entry's row has a unique `request_key` (its id is `chatcmpl-<key>`), inserted with ON
CONFLICT DO NOTHING in the same transaction as the charges, and only rows inserted now are charged. An entry
applied twice (a drainer killed before acknowledging it) finds its row and moves no money. Closes release a hold
once (ledger.hold_release).
"""

import functools
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import psycopg
from django.conf import settings
from django.db import connection, transaction
from django.db.models import Field
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from clients import ledger
from clients.choices import HoldStatus, LedgerEntryKind
from clients.key_limits import KeyLimits, key_record_spend
from clients.models import Hold
from inference import routing_lessons, services
from inference.choices import InferenceChannel, InferenceStatus
from inference.models import InferenceRequest

USE, CLOSE = "use", "close"
_AS_TEXT = (Decimal, datetime)  # a row's values journaled as text (a tuple: `A | B` would be built per value)


def use_entry(
    *,
    key: str,
    lease_key: str,
    client_id: int,
    owner_id: int | None,
    model: str,
    question_text: str,
    max_tokens: int,
    held: Decimal,
    fields: dict[str, Any],
    created_at: datetime,
    teach_ms: int | None,
    api_key_id: int | None = None,
) -> dict[str, Any]:
    """One request's journal entry: the row's fields (services.outcome), what to charge whom, and the first-byte
    latency routing learns from it (routing_lessons: None when it teaches none)."""
    return {
        "t": USE,
        "key": key,
        "lease": lease_key,
        "client": client_id,
        "api_key": api_key_id,
        "owner": owner_id,
        "model": model,
        "question": question_text,
        "max_tokens": max_tokens,
        "held": str(held),
        "created": created_at.isoformat(),
        "teach_ms": teach_ms,
        "row": {name: (str(v) if isinstance(v, _AS_TEXT) else v) for name, v in fields.items()},
    }


def close_entry(lease_key: str) -> dict[str, Any]:
    """A lease its process is done with: release what is left of it once the uses before it are applied."""
    return {"t": CLOSE, "lease": lease_key}


def _decimal(value: Any) -> Decimal | None:
    return None if value is None else Decimal(value)


def _when(text: str) -> datetime:
    when = parse_datetime(text)
    if when is None:
        raise ValueError(f"Not a date and time: {text!r}.")
    return when


def row_fields(entry: dict[str, Any]) -> dict[str, Any]:
    """The row a use entry stands for, by field attname: what the web door's row of the same request holds (a field
    not named here takes its model default, as `InferenceRequest(**row_fields(entry))` would)."""
    row = entry["row"]
    created = _when(entry["created"])
    finished = _when(row["finished_at"])
    return dict(
        client_id=entry["client"],
        api_key_id=entry.get("api_key"),  # entries journaled before keys were recorded have none
        question_text=entry["question"],
        desired_model=entry["model"],
        answer_text=row.get("answer_text", ""),
        status=row["status"],
        channel=InferenceChannel.WEB,
        node_id=row.get("node_id"),
        max_tokens=entry["max_tokens"],
        prompt_tokens=row.get("prompt_tokens", 0),
        completion_tokens=row.get("completion_tokens", 0),
        usage_estimated=row.get("usage_estimated", False),
        input_price_per_million=_decimal(row.get("input_price_per_million")),
        output_price_per_million=_decimal(row.get("output_price_per_million")),
        held_amount=Decimal(entry["held"]),
        cost=Decimal(row["cost"]),
        request_key=entry["key"].removeprefix("v1:"),  # entries journaled before 0005 have the old prefix
        latency_ms=row.get("latency_ms"),
        error_code=row.get("error_code", ""),
        error_detail=row.get("error_detail", ""),
        attempts=1,
        deadline_at=created + timedelta(seconds=settings.INFERENCE_DEADLINE_S),
        claimed_at=created,
        finished_at=finished,
        created_at=created,
        updated_at=finished,
    )


def field_value(named: dict[str, Any], field: Field) -> Any:
    """A field's value in the row of `named` (row_fields): the one named, else the model's default."""
    return named[field.attname] if field.attname in named else field.get_default()


# Field types whose values psycopg takes as the ORM leaves them (int, bool, str, Decimal, an aware datetime): on
# PostgreSQL Django's get_db_prep_save returns these unchanged (or an int as an int subclass), so it is skipped
# for them; any other field is prepared by the ORM (tests/inference/test_journal_rows.py holds the two equal).
_AS_IS = frozenset(
    {
        "ForeignKey",
        "BooleanField",
        "CharField",
        "TextField",
        "IntegerField",
        "PositiveIntegerField",
        "PositiveSmallIntegerField",
        "BigIntegerField",
        "DecimalField",
        "DateTimeField",
    }
)


@functools.cache
def _insert_plan() -> tuple[str, tuple[Field, ...], tuple[bool, ...]]:
    """The INSERT of a batch of rows (one array per column, unnested: a short statement whatever the batch's size,
    which psycopg parses once) and the columns' fields, with whether each value goes as it is."""
    fields = tuple(f for f in InferenceRequest._meta.concrete_fields if not f.primary_key)
    columns = ", ".join(connection.ops.quote_name(str(f.column)) for f in fields)
    arrays = ", ".join(f"%b::{f.cast_db_type(connection)}[]" for f in fields)
    sql = (
        f"INSERT INTO {InferenceRequest._meta.db_table} ({columns}) "  # noqa: S608 - the model's own names
        f"SELECT * FROM unnest({arrays}) ON CONFLICT (request_key) DO NOTHING RETURNING request_key, id"
    )
    return sql, fields, tuple(f.get_internal_type() in _AS_IS for f in fields)


def _insert_rows(uses: list[dict[str, Any]]) -> dict[str, int]:
    """Insert the rows not inserted before; the ids of those inserted now, by entry key. The columns are the
    model's own (every concrete field but the id), so a new field reaches these rows as it reaches the ORM's."""
    if not uses:
        return {}
    sql, fields, as_is = _insert_plan()
    columns: list[list[Any]] = [[] for _ in fields]
    keys: dict[str, str] = {}  # request_key -> entry key
    for entry in uses:
        named = row_fields(entry)  # not a model instance: building one cost a quarter of the drain's CPU per entry
        keys[named["request_key"]] = entry["key"]
        for column, field, plain in zip(columns, fields, as_is, strict=True):
            value = field_value(named, field)
            column.append(value if plain else field.get_db_prep_save(value, connection))
    connection.ensure_connection()
    # Bound on the server, in binary: Django's cursor binds on the client, quoting every element of every array
    # into the statement as text (a regex or two per value: a third of the drain's CPU per entry).
    with connection.wrap_database_errors, psycopg.Cursor(connection.connection) as cursor:
        cursor.execute(sql, columns)
        return {keys[request_key]: row_id for request_key, row_id in cursor.fetchall()}


def _charge(uses: list[dict[str, Any]], ids: dict[str, int]) -> None:
    """One ledger transaction per (lease, operator) of this batch, with one line per request (ref
    `inference:<id>`) on the client's account, paid from the lease hold."""
    batches: dict[tuple[str, int], list[ledger.Charge]] = defaultdict(list)
    first_key: dict[tuple[str, int], str] = {}
    for entry in uses:
        cost = Decimal(entry["row"]["cost"])
        if cost > 0 and entry["owner"] is not None:
            group = (entry["lease"], entry["owner"])
            batches[group].append(ledger.Charge(cost, services.ledger_ref(ids[entry["key"]])))
            first_key.setdefault(group, entry["key"])
    for (lease_key, owner_id), charges in sorted(batches.items()):
        ledger.hold_consume(
            key=lease_key,
            use_key=f"{lease_key}:{first_key[lease_key, owner_id]}",
            charges=charges,
            operator_id=owner_id,
            kind=LedgerEntryKind.INFERENCE,
            memo=f"inference usage: {len(charges)} request(s) over /v1",
            # A lease released before its usage arrived (its process died and the sweep gave it back): the work was
            # delivered, so it is billed from the balance, as far as that goes.
            from_balance_if_closed=True,
        )


def _teach_routing(uses: list[dict[str, Any]]) -> None:
    """The latencies routing learns from these requests (their failures were taught when they happened)."""
    latencies = []
    for entry in uses:
        row = entry["row"]
        if "teach_ms" in entry:
            if entry["teach_ms"] is not None:
                latencies.append((row["node_id"], entry["teach_ms"]))
        elif row["status"] == InferenceStatus.COMPLETED and entry.get("first_byte_ms") is not None:
            latencies.append((row["node_id"], entry["first_byte_ms"]))  # an entry journaled before teach_ms
    routing_lessons.teach_latencies(latencies)


def _key_spend(uses: list[dict[str, Any]]) -> None:
    """Add the requests' costs to their keys' spend (their budgets: clients/key_limits.py), one UPDATE per key."""
    totals: dict[int, Decimal] = defaultdict(Decimal)
    for entry in uses:
        if entry.get("api_key") is not None:
            totals[entry["api_key"]] += Decimal(entry["row"]["cost"])
    for key_id, total in sorted(totals.items()):
        key_record_spend(limits=KeyLimits.load(key_id), cost=total, tokens=0)


@dataclass(frozen=True)
class Applied:
    rows: int  # rows inserted now (entries seen before are not counted)
    closed: int  # leases released


@transaction.atomic
def apply(entries: list[dict[str, Any]]) -> Applied:
    """Write these journal entries to PostgreSQL in one transaction; entries applied before change nothing."""
    uses = [e for e in entries if e["t"] == USE]
    inserted = _insert_rows(uses)
    new = [e for e in uses if e["key"] in inserted]
    _charge(new, inserted)
    _key_spend(new)
    _teach_routing(new)
    closes = [e["lease"] for e in entries if e["t"] == CLOSE]
    for lease_key in closes:  # after the charges: a lease's close comes after all of its uses
        ledger.hold_release(key=lease_key)
    return Applied(rows=len(new), closed=len(closes))


def leases_open(*, client_id: int) -> bool:
    """Whether some web process holds a lease of this client's money."""
    return Hold.objects.filter(client_id=client_id, key__startswith="lease:", status=HoldStatus.HELD).exists()


def release_stale_leases(*, now: datetime | None = None) -> int:
    """Release leases whose process died before closing them (past any use it could still journal).

    Call after draining the journal, so that uses of those leases are charged from the hold first.
    """
    now = now or timezone.now()
    # A lease takes reservations for at most twice its TTL (leases.py), each request ends within the deadline.
    cutoff = now - timedelta(seconds=2 * settings.INFERENCE_LEASE_TTL_S + settings.INFERENCE_DEADLINE_S + 60)
    stale = Hold.objects.filter(key__startswith="lease:", status=HoldStatus.HELD, created_at__lt=cutoff)
    keys = list(stale.values_list("key", flat=True)[:1000])
    for key in keys:
        ledger.hold_release(key=key)
    return len(keys)
