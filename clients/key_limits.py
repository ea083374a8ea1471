"""An API key's limits (API.md §12), written once and called by every door that spends: scopes, model allow-list,
budget, rpm/tpm, expiry.

Scopes are checked by `key_scopes.key_require_scope` (clients.authentication, every key-authenticated Django
request); a budget's period by `key_periods.period_bounds`. Here:
- `key_admit` / `key_admit_async` run before a request is relayed (lean /v1, Django /v1, the seed resource's
  sync, stream and batch): model allow-list, budget, then the rpm/tpm counters; they return the `x-ratelimit-*`
  headers to send.
- `key_record_spend` / `key_record_spend_async` run when a request has finished: its cost goes to the key's
  spend of the period, its tokens to the tpm counter.

Counters (rpm, tpm) are per key per UTC minute (a fixed window: at most `rpm` requests are admitted in each
calendar minute, whatever the number of processes). They live in Redis where KEY_LIMITS_REDIS_URL is set (one
script, one command: INCR + EXPIRE + GET), else in the database (`KeyRateWindow`, a conditional UPDATE). A key
without rpm/tpm touches no counter. The budget is checked against the key's spend since the start of its period,
added to as each request finishes: a request already running can take it past the budget by its own cost, and the
next one is refused.

The spend lives in `ApiKey.spent` (the record of truth) and, where Redis is configured, in a counter per key and
period (integer micro-USD) read by the same script as the rpm counter: no database query. A missing
counter is seeded from the row (SET NX); recording raises the counter to the row's new total under the row's lock,
never adds, so concurrent recordings and journal retries stay exact (docs/API.md §9 "Keys, plans and usage").
"""

import hashlib
import logging
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import redis
from django.conf import settings
from django.db import transaction
from django.db.models import Case, F, Value, When
from django.utils import timezone

from clients.choices import KeyScope
from clients.errors import InsufficientScope, KeyBudgetExceeded, ModelNotAllowed, RateLimited
from clients.key_limit_types import Admission, KeyLimits
from clients.key_periods import period_bounds
from clients.models import ApiKey, KeyRateWindow
from core.asgi import database_call
from core.redis_clients import redis_client
from core.redis_mux import RedisMux, redis_mux

log = logging.getLogger(__name__)
_PREFIX = "gm:keylim"
MICRO_USD = Decimal("0.000001")  # the ledger's smallest amount: the Redis spend counter counts these


def _spent(limits: KeyLimits, now: datetime) -> Decimal:
    start, _ = period_bounds(period=limits.budget_period, created_at=limits.created_at, now=now)
    row = ApiKey.objects.filter(pk=limits.key_id).values_list("spent", "spent_since").first()
    if row is None or row[1] != start:
        return Decimal("0")
    return row[0]


def _micros(amount: Decimal) -> int:
    """An amount as whole micro-USD (ledger amounts have 6 places: exact)."""
    return int((amount / MICRO_USD).to_integral_value(ROUND_HALF_UP))


def _spend_name(limits: KeyLimits, now: datetime) -> tuple[str, int | None]:
    """The Redis counter of the key's spend in the period `now` is in, and its lifetime in seconds (None: the
    `total` period, which never ends)."""
    start, end = period_bounds(period=limits.budget_period, created_at=limits.created_at, now=now)
    name = f"{_PREFIX}:{limits.key_id}:s:{limits.budget_period}:{int(start.timestamp())}"
    return name, None if end is None else max(1, int((end - now).total_seconds()) + 60)


def _seed_spend(limits: KeyLimits, now: datetime) -> Decimal:
    """The period's spend counter was missing: set it (SET NX) from the database, read under the key's row lock so
    that no recording runs between the read and the SET. Returns the counter's value."""
    name, ttl = _spend_name(limits, now)
    start, _ = period_bounds(period=limits.budget_period, created_at=limits.created_at, now=now)
    with transaction.atomic():
        row = ApiKey.objects.select_for_update().filter(pk=limits.key_id).values_list("spent", "spent_since").first()
        spent = row[0] if row is not None and row[1] == start else Decimal("0")
        pipe = _redis().pipeline(transaction=True)
        pipe.set(name, _micros(spent), nx=True, ex=ttl)
        pipe.get(name)
        value = pipe.execute()[1]
    return _usd(value)


def _usd(micros: Any) -> Decimal:
    """A Redis counter's value (micro-USD) as an amount."""
    return Decimal(int(micros)) * MICRO_USD


def _spent_in_redis(limits: KeyLimits, now: datetime, counted: Any) -> Decimal:
    """The spend from the admission script's GET, seeded from the database when the counter was missing."""
    return _seed_spend(limits, now) if counted is None else _usd(counted)


def _check_budget(limits: KeyLimits, spent: Decimal) -> None:
    if limits.budget is not None and spent >= limits.budget:
        raise KeyBudgetExceeded(
            f"This API key has spent its budget of {limits.budget} for this {limits.budget_period} period."
        )


def _check_model(limits: KeyLimits, model: str | None, scope: str = KeyScope.INFERENCE) -> None:
    if scope not in limits.scopes:
        raise InsufficientScope(f"This API key lacks the `{scope}` scope.")
    if model is not None and limits.models and model not in limits.models:
        raise ModelNotAllowed(f"This API key may not use the model `{model}`.")


# --- Counters -----------------------------------------------------------------------------------------------------


def _window(now: datetime) -> tuple[int, int]:
    """(the minute's epoch second, seconds until it ends)."""
    epoch = int(now.timestamp())
    start = epoch - epoch % 60
    return start, start + 60 - epoch


def _names(key_id: int, minute: int) -> tuple[str, str]:
    return f"{_PREFIX}:{key_id}:r:{minute}", f"{_PREFIX}:{key_id}:t:{minute}"


def _judge(limits: KeyLimits, *, requests: int, tokens: int, reset: int) -> Admission:
    """Refuse (429) or admit with headers; `requests` counts this one."""
    headers: dict[str, str] = {}
    if limits.rpm is not None:
        headers["x-ratelimit-limit-requests"] = str(limits.rpm)
        headers["x-ratelimit-remaining-requests"] = str(max(0, limits.rpm - requests))
        headers["x-ratelimit-reset-requests"] = f"{reset}s"
    if limits.tpm is not None:
        headers["x-ratelimit-limit-tokens"] = str(limits.tpm)
        headers["x-ratelimit-remaining-tokens"] = str(max(0, limits.tpm - tokens))
        headers["x-ratelimit-reset-tokens"] = f"{reset}s"
    if limits.rpm is not None and requests > limits.rpm:
        raise RateLimited(
            f"This API key is limited to {limits.rpm} requests a minute.", retry_after=reset, headers=headers
        )
    if limits.tpm is not None and tokens >= limits.tpm:
        raise RateLimited(
            f"This API key is limited to {limits.tpm} tokens a minute.", retry_after=reset, headers=headers
        )
    return Admission(headers=headers)


def redis_enabled() -> bool:
    return bool(settings.KEY_LIMITS_REDIS_URL)


_seed_spend_async = database_call(lambda limits, now: _seed_spend(limits, now))
_add_spend_async = database_call(lambda limits, cost, now: _add_spend(limits, cost, now))
_add_tokens_in_database_async = database_call(lambda limits, t, now: _add_tokens_in_database(limits, t, now))


def _redis() -> redis.Redis:
    return redis_client(settings.KEY_LIMITS_REDIS_URL, timeout_s=2)


def _redis_async() -> RedisMux:
    return redis_mux(settings.KEY_LIMITS_REDIS_URL, timeout_s=2)


# The admission's one Redis command (atomic, one reply to parse: a MULTI/EXEC pipeline of the same commands costs
# redis-py several times the CPU): the minute's request counter bumped and its tokens read (a key with rpm or tpm),
# the period's spend read (a key with a budget). A counter or spend not there is nil (None).
_ADMIT = """
local out = {false, false, false}
if ARGV[1] == '1' then
  out[1] = redis.call('INCR', KEYS[1])
  redis.call('EXPIRE', KEYS[1], 120)
  out[2] = redis.call('GET', KEYS[2])
end
if ARGV[2] == '1' then out[3] = redis.call('GET', KEYS[3]) end
return out
"""
_ADMIT_SHA = hashlib.sha1(_ADMIT.encode()).hexdigest()  # noqa: S324 - Redis names scripts by their SHA-1


def _admit_args(limits: KeyLimits, now: datetime) -> list[Any]:
    """The admission script's 3 keys and 2 flags."""
    counts = limits.rpm is not None or limits.tpm is not None
    requests_name, tokens_name = _names(limits.key_id, _window(now)[0])
    spend_name = _spend_name(limits, now)[0] if limits.budget is not None else f"{_PREFIX}:{limits.key_id}:s"
    return [3, requests_name, tokens_name, spend_name, int(counts), int(limits.budget is not None)]


def _counted(result: list[Any]) -> tuple[int, int, Any]:
    """(requests, tokens, the spend counter's raw value or None) from the script's reply."""
    requests, tokens, spend = result
    return int(requests or 0), int(tokens or 0), spend


def _admit_in_redis(limits: KeyLimits, now: datetime) -> tuple[int, int, Any]:
    client, args = _redis(), _admit_args(limits, now)
    try:
        return _counted(client.evalsha(_ADMIT_SHA, *args))
    except redis.exceptions.NoScriptError:  # a Redis that has not seen it yet (or was flushed of scripts)
        return _counted(client.eval(_ADMIT, *args))


async def _admit_in_redis_async(limits: KeyLimits, now: datetime) -> tuple[int, int, Any]:
    client, args = _redis_async(), _admit_args(limits, now)
    try:
        return _counted(await client.execute("EVALSHA", _ADMIT_SHA, *args))
    except redis.exceptions.NoScriptError:
        return _counted(await client.execute("EVAL", _ADMIT, *args))


_RAISE_IF_SEEDED = """
local current = redis.call('GET', KEYS[1])
if not current then return false end
if tonumber(ARGV[1]) > tonumber(current) then redis.call('SET', KEYS[1], ARGV[1], 'KEEPTTL') end
return true
"""


def _count_in_database(limits: KeyLimits, now: datetime) -> tuple[int, int]:
    minute, _ = _window(now)
    start = datetime.fromtimestamp(minute, tz=UTC)
    KeyRateWindow.objects.bulk_create(
        [KeyRateWindow(api_key_id=limits.key_id, window_start=start)], ignore_conflicts=True
    )
    window = KeyRateWindow.objects.filter(api_key_id=limits.key_id, window_start=start)
    allowed = window if limits.rpm is None else window.filter(requests__lt=limits.rpm)
    bumped = allowed.update(requests=F("requests") + 1)
    requests, tokens = window.values_list("requests", "tokens").get()
    KeyRateWindow.objects.filter(api_key_id=limits.key_id, window_start__lt=start - timedelta(minutes=1)).delete()
    return (requests if bumped else requests + 1), tokens


# --- Admission and spend ------------------------------------------------------------------------------------------


def _admit_in_database(limits: KeyLimits, now: datetime) -> Admission:
    """Budget from `ApiKey.spent`, counters in `KeyRateWindow` (no Redis configured, or Redis unreachable)."""
    if limits.budget is not None:
        _check_budget(limits, _spent(limits, now))
    if limits.rpm is None and limits.tpm is None:
        return Admission()
    requests, tokens = _count_in_database(limits, now)
    return _judge(limits, requests=requests, tokens=tokens, reset=_window(now)[1])


_admit_in_database_async = database_call(_admit_in_database)


def _has_limits(limits: KeyLimits) -> bool:
    return limits.budget is not None or limits.rpm is not None or limits.tpm is not None


def _judge_counted(limits: KeyLimits, now: datetime, requests: int, tokens: int, spent: Decimal | None) -> Admission:
    if spent is not None:
        _check_budget(limits, spent)
    if limits.rpm is None and limits.tpm is None:
        return Admission()
    return _judge(limits, requests=requests, tokens=tokens, reset=_window(now)[1])


def key_admit(
    *, limits: KeyLimits | None, model: str | None, scope: str = KeyScope.INFERENCE, now: datetime | None = None
) -> Admission:
    """Admit one request of this key (None: a session or keyless payer, nothing to check) or raise 403/402/429.
    `model` None: not an inference request (a rental: scope, budget and rpm only)."""
    if limits is None:
        return Admission()
    now = now or timezone.now()
    _check_model(limits, model, scope)
    if not _has_limits(limits):
        return Admission()
    if not redis_enabled():
        return _admit_in_database(limits, now)
    try:
        requests, tokens, counted = _admit_in_redis(limits, now)
        spent = None if limits.budget is None else _spent_in_redis(limits, now, counted)
    except redis.RedisError:
        log.warning("key limits: Redis unreachable, key %s admitted on the database's figures", limits.key_id)
        return _admit_in_database(limits, now)
    return _judge_counted(limits, now, requests, tokens, spent)


async def key_admit_async(
    *,
    limits: KeyLimits,
    model: str,
    now: datetime | None = None,
) -> Admission:
    """key_admit for the lean /v1 path: the counters and the spend in one async Redis round trip, no database
    query (but the seed of a missing spend counter); without Redis, both in Django's database thread."""
    now = now or timezone.now()
    _check_model(limits, model)
    if not _has_limits(limits):
        return Admission()
    if not redis_enabled():
        return await _admit_in_database_async(limits, now)
    try:
        requests, tokens, counted = await _admit_in_redis_async(limits, now)
        spent = None
        if limits.budget is not None:
            spent = _usd(counted) if counted is not None else await _seed_spend_async(limits, now)
    except redis.RedisError:
        log.warning("key limits: Redis unreachable, key %s admitted on the database's figures", limits.key_id)
        return await _admit_in_database_async(limits, now)
    return _judge_counted(limits, now, requests, tokens, spent)


def _add_spend(limits: KeyLimits, cost: Decimal, now: datetime) -> None:
    """The cost to the key's spend: the row (its UPDATE takes the row lock), then, under that lock, the Redis counter
    raised to the row's new total if it is seeded (a missing one is seeded from the row)."""
    start, _ = period_bounds(period=limits.budget_period, created_at=limits.created_at, now=now)
    with transaction.atomic():
        ApiKey.objects.filter(pk=limits.key_id).update(
            spent=Case(When(spent_since=start, then=F("spent") + cost), default=Value(cost)), spent_since=start
        )
        if redis_enabled():
            total = ApiKey.objects.filter(pk=limits.key_id).values_list("spent", flat=True).first()  # our own write
            if total is not None:
                _raise_counter(limits.key_id, _spend_name(limits, now)[0], _micros(total))


def _raise_counter(key_id: int, name: str, total_micros: int) -> None:
    try:
        _redis().eval(_RAISE_IF_SEEDED, 1, name, total_micros)
    except redis.RedisError:  # the row has it; admission falls back to the row while Redis is unreachable
        log.warning("key limits: Redis unreachable, spend of key %s recorded in the database only", key_id)


def _add_tokens_in_database(limits: KeyLimits, tokens: int, now: datetime) -> None:
    start = datetime.fromtimestamp(_window(now)[0], tz=UTC)
    KeyRateWindow.objects.bulk_create(
        [KeyRateWindow(api_key_id=limits.key_id, window_start=start)], ignore_conflicts=True
    )
    KeyRateWindow.objects.filter(api_key_id=limits.key_id, window_start=start).update(tokens=F("tokens") + tokens)


def key_record_spend(*, limits: KeyLimits | None, cost: Decimal, tokens: int, now: datetime | None = None) -> None:
    """A finished request of this key: its cost to the period's spend, its tokens to the tpm counter."""
    if limits is None:
        return
    now = now or timezone.now()
    if cost > 0:
        _add_spend(limits, cost, now)
    if limits.tpm is not None and tokens > 0:
        if redis_enabled():
            _, tokens_name = _names(limits.key_id, _window(now)[0])
            pipe = _redis().pipeline(transaction=True)
            pipe.incrby(tokens_name, tokens)
            pipe.expire(tokens_name, 120)
            pipe.execute()
        else:
            _add_tokens_in_database(limits, tokens, now)


def key_record_spend_of(*, key_id: int | None, cost: Decimal, now: datetime | None = None) -> None:
    """A charge made later than the request that started it (a pay-as-you-go rental's minutes, a training job's
    end) to the spend of the key that started it (None: a session; a deleted key: nothing)."""
    if key_id is not None and cost > 0:
        key_record_spend(limits=KeyLimits.load(key_id), cost=cost, tokens=0, now=now)


async def key_record_spend_async(
    *,
    limits: KeyLimits,
    cost: Decimal,
    tokens: int,
    now: datetime | None = None,
) -> None:
    now = now or timezone.now()
    if cost > 0:
        await _add_spend_async(limits, cost, now)
    if limits.tpm is not None and tokens > 0:
        if redis_enabled():
            _, tokens_name = _names(limits.key_id, _window(now)[0])
            await _redis_async().execute_many(
                [("MULTI",), ("INCRBY", tokens_name, tokens), ("EXPIRE", tokens_name, 120), ("EXEC",)]
            )
        else:
            await _add_tokens_in_database_async(limits, tokens, now)
