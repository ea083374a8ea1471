"""What the /v1 doors look up, remembered briefly per process: API keys (both doors: one cache, one rule), and
routes, models' context windows and the node facts of routing controls (the lean door).

Each lookup runs the same query the web door runs (in Django's thread for sync code), at most once per key or
model per TTL however many requests ask at the same moment (single flight). Consequences, by design:
  - a revoked key or a deactivated user is refused at most INFERENCE_KEY_CACHE_S late on /v1 (either door), and a
    key's changed limits apply as late;
  - routes are at most INFERENCE_ROUTE_CACHE_S old: a node that went away since is skipped by failover, a node that
    failed here is dropped from this process's copy at once (`forget_route`).
"""

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Generic, TypeVar

from django.conf import settings
from django.contrib.auth.base_user import AbstractBaseUser
from django.utils import timezone

from clients.authentication import api_key_active
from clients.choices import KeyScope
from clients.key_limit_types import KeyLimits
from clients.models import ApiKey
from core.asgi import database_call
from core.tokens import hash_secret
from inference import routing
from inference.errors import ModelNotFound, NoCapacity
from inference.routing import Candidate
from inference.v1.params import context_window as _context_window
from inference.v1.routing_controls import NodeFacts
from inference.v1.routing_controls import node_facts as _node_facts
from plans.choices import SubscriptionStatus
from plans.models import Subscription

T = TypeVar("T")
_MAX_ENTRIES = 10_000


class TtlCache(Generic[T]):
    """Values (not None) by key for `ttl()` seconds; concurrent misses of one key share one load."""

    def __init__(self, ttl: Callable[[], float]) -> None:
        self._ttl = ttl
        self._values: dict[str, tuple[float, T]] = {}
        self._loading: dict[str, asyncio.Future[T]] = {}

    async def get(self, key: str, load: Callable[[], Awaitable[T]]) -> T:
        hit = self._values.get(key)
        if hit is not None and hit[0] > time.monotonic():
            return hit[1]
        pending = self._loading.get(key)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._loading[key] = future
        try:
            value = await load()
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: no "never retrieved" warning when nobody else waited
            raise
        finally:
            del self._loading[key]
        future.set_result(value)
        ttl = self._ttl()
        if ttl > 0 and value is not None:  # misses are not kept: a key made a moment later works at once
            if len(self._values) >= _MAX_ENTRIES:
                self._values.clear()
            self._values[key] = (time.monotonic() + ttl, value)
        return value

    def forget(self, key: str) -> None:
        self._values.pop(key, None)

    def cached(self, key: str) -> T | None:
        """The value kept for `key`, if still fresh (for sync callers; they `put` what they load)."""
        hit = self._values.get(key)
        return hit[1] if hit is not None and hit[0] > time.monotonic() else None

    def put(self, key: str, value: T) -> None:
        ttl = self._ttl()
        if ttl > 0 and value is not None:
            if len(self._values) >= _MAX_ENTRIES:
                self._values.clear()
            self._values[key] = (time.monotonic() + ttl, value)


@dataclass(frozen=True)
class KnownKey:
    """An API key that authenticates (clients.authentication.api_key_active), as both /v1 doors keep it."""

    user: AbstractBaseUser
    key: ApiKey
    limits: KeyLimits

    def serves_the_lean_door(self) -> bool:
        """Unexpired and with the `inference` scope: otherwise the web door answers its 401 or 403."""
        expires_at = self.key.expires_at
        return (expires_at is None or expires_at > timezone.now()) and KeyScope.INFERENCE in self.limits.scopes


def _known_key(digest: str) -> KnownKey | None:
    key = api_key_active(digest=digest)
    return None if key is None else KnownKey(user=key.client.user, key=key, limits=KeyLimits.of(key))


class DomainMiss:
    """No route: the web door answers (404 or 503 with its Retry-After)."""


def _route(model: str) -> list[Candidate] | DomainMiss:
    try:
        return routing.route(model=model)
    except (ModelNotFound, NoCapacity):
        return DomainMiss()


_keys: TtlCache[KnownKey | None] = TtlCache(lambda: settings.INFERENCE_KEY_CACHE_S)
_routes: TtlCache[list[Candidate] | DomainMiss] = TtlCache(lambda: settings.INFERENCE_ROUTE_CACHE_S)
_known_key_async = database_call(_known_key)
_route_async = database_call(_route)


async def key_of(raw: str) -> KeyLimits | None:
    """This API key's limits (its client's id among them) when the lean door may serve it, or None (unknown,
    revoked, expired, inactive user, no `inference` scope: the web door answers 401 or 403)."""
    digest = hash_secret(raw)
    known = await _keys.get(digest, lambda: _known_key_async(digest))
    return known.limits if known is not None and known.serves_the_lean_door() else None


def known_key(raw: str) -> KnownKey | None:
    """The same key from the same per-process cache, for the web door's authentication (sync, in its thread)."""
    digest = hash_secret(raw)
    known = _keys.cached(digest)
    if known is None:
        known = _known_key(digest)
        if known is not None:
            _keys.put(digest, known)
    return known


async def route(model: str) -> list[Candidate] | None:
    """Candidates for `model`, best first, or None when there are none (the web door answers)."""
    found = await _routes.get(model, lambda: _route_async(model))
    return None if isinstance(found, DomainMiss) else found


def forget_route(model: str) -> None:
    _routes.forget(model)


_windows: TtlCache[int] = TtlCache(lambda: settings.INFERENCE_ROUTE_CACHE_S)


def _window(model: str, ids: list[int]) -> int:
    return _context_window(model=model, node_ids=ids) or 0  # 0: unknown (the cache keeps no None)


_window_async = database_call(_window)


async def context_window(model: str, node_ids: list[int]) -> int | None:
    """The largest context window of `model` on these nodes (v1/params.context_window), None if unknown."""
    ids = sorted(set(node_ids))
    window = await _windows.get(f"{model}|{ids}", lambda: _window_async(model, ids))
    return window or None


_facts: TtlCache[dict[int, NodeFacts]] = TtlCache(lambda: settings.INFERENCE_ROUTE_CACHE_S)
_node_facts_async = database_call(_node_facts)


async def node_facts(node_ids: Iterable[int]) -> dict[int, NodeFacts]:
    """Names and measured latency of these nodes (routing_controls.node_facts), for requests with `provider`."""
    ids = sorted(set(node_ids))
    return await _facts.get(str(ids), lambda: _node_facts_async(ids))


def _on_a_plan(client_id: int) -> bool:
    return Subscription.objects.filter(
        client_id=client_id, status=SubscriptionStatus.ACTIVE, renews_at__gt=timezone.now()
    ).exists()


_plans: TtlCache[bool] = TtlCache(lambda: settings.INFERENCE_KEY_CACHE_S)
_on_a_plan_async = database_call(_on_a_plan)


async def on_a_plan(client_id: int) -> bool:
    """Whether the client has an active plan (its requests take the plan's quota: the web door serves them)."""
    return await _plans.get(str(client_id), lambda: _on_a_plan_async(client_id))
