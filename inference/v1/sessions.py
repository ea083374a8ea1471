"""Sticky sessions (API.md §11): requests of one client that carry the same `session_id` (or, failing that,
`prompt_cache_key`) go to the node that answered the session last, while that node is still a candidate and the
session was used within INFERENCE_SESSION_TTL_S, so the node's prefix cache is reused. When it fails, the request
goes to the next candidate, and remembering the node that answered moves the session there.

    session = session_of(data)                                   # None: no session, nothing else to do
    node_id = session_node(client_id=..., session=session)       # or `await session_node_async(...)`
    candidates = prefer_node(candidates, node_id)
    ... relay ...
    session_remember(client_id=..., session=session, node_id=delivery.candidate.node_id)   # on success

Sessions live in Redis at INFERENCE_SESSION_REDIS_URL (shared by every web process), in Django's cache where that
is empty. Both are an optimisation: a store that cannot be reached makes the request unsticky, never an error. The
async variants never touch the database (the lean path's rule).
"""

import hashlib
import logging
from collections.abc import Mapping, Sequence

import redis
from django.conf import settings
from django.core.cache import cache

from core.redis_clients import redis_client
from core.redis_mux import RedisMux, redis_mux
from inference.errors import BadChatRequest
from inference.routing import Candidate

logger = logging.getLogger(__name__)

SESSION_FIELDS = ("session_id", "prompt_cache_key")
MAX_SESSION_LENGTH = 256
_PREFIX = "inference:session:"


def session_of(data: Mapping[str, object]) -> str | None:
    """The request's session: `session_id`, else `prompt_cache_key`; None without either. Not a string of 1 to
    256 characters → 400 naming the field."""
    for field in SESSION_FIELDS:
        value = data.get(field)
        if value is None:
            continue
        if not isinstance(value, str) or not value or len(value) > MAX_SESSION_LENGTH:
            raise BadChatRequest(f"`{field}` must be a string of 1 to {MAX_SESSION_LENGTH} characters.", attr=field)
        return value
    return None


def session_key(*, client_id: int, session: str) -> str:
    """The store's key: per client (one client cannot steer another's session), the session id hashed (any length
    or character fits)."""
    digest = hashlib.sha256(session.encode()).hexdigest()[:32]
    return f"{_PREFIX}{client_id}:{digest}"


def prefer_node(candidates: Sequence[Candidate], node_id: int | None) -> list[Candidate]:
    """The candidates with `node_id` moved first, if it is among them (still live, not cooling down, allowed by
    the routing controls); otherwise as they are."""
    if node_id is None:
        return list(candidates)
    first = [c for c in candidates if c.node_id == node_id]
    return first + [c for c in candidates if c.node_id != node_id] if first else list(candidates)


def _redis_enabled() -> bool:
    return bool(settings.INFERENCE_SESSION_REDIS_URL)


def _redis() -> redis.Redis:
    return redis_client(settings.INFERENCE_SESSION_REDIS_URL, timeout_s=1)


def _redis_async() -> RedisMux:
    return redis_mux(settings.INFERENCE_SESSION_REDIS_URL, timeout_s=1)


def _node_id(raw: object) -> int | None:
    """A stored node id (Redis answers bytes, the cache the int it was given); anything else is no session."""
    if isinstance(raw, bytes):
        raw = raw.decode(errors="replace")
    if isinstance(raw, int) and not isinstance(raw, bool):
        return raw
    return int(raw) if isinstance(raw, str) and raw.isdigit() else None


def session_node(*, client_id: int, session: str) -> int | None:
    """The node the session was last answered by, if used within INFERENCE_SESSION_TTL_S."""
    key = session_key(client_id=client_id, session=session)
    if not _redis_enabled():
        return _node_id(cache.get(key))
    try:
        return _node_id(_redis().get(key))
    except (redis.RedisError, OSError):
        logger.warning("session store unreachable: request routed without its session", exc_info=True)
        return None


async def session_node_async(*, client_id: int, session: str) -> int | None:
    """`session_node` for async callers: one Redis round trip, no database."""
    key = session_key(client_id=client_id, session=session)
    if not _redis_enabled():
        return _node_id(await cache.aget(key))
    try:
        return _node_id(await _redis_async().execute("GET", key))
    except (redis.RedisError, OSError):
        logger.warning("session store unreachable: request routed without its session", exc_info=True)
        return None


def session_remember(*, client_id: int, session: str, node_id: int) -> None:
    """Record that `node_id` answered the session (moving it there if it was elsewhere) and restart its TTL."""
    key, ttl = session_key(client_id=client_id, session=session), settings.INFERENCE_SESSION_TTL_S
    if not _redis_enabled():
        cache.set(key, node_id, timeout=ttl)
        return
    try:
        _redis().set(key, node_id, ex=ttl)
    except (redis.RedisError, OSError):
        logger.warning("session store unreachable: session not remembered", exc_info=True)


async def session_remember_async(*, client_id: int, session: str, node_id: int) -> None:
    """`session_remember` for async callers."""
    key, ttl = session_key(client_id=client_id, session=session), settings.INFERENCE_SESSION_TTL_S
    if not _redis_enabled():
        await cache.aset(key, node_id, timeout=ttl)
        return
    try:
        await _redis_async().execute("SET", key, node_id, "EX", ttl)
    except (redis.RedisError, OSError):
        logger.warning("session store unreachable: session not remembered", exc_info=True)
