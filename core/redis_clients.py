"""Redis clients a process shares: one per URL and timeout (sync), and one per URL and timeout in each event loop
(asyncio clients belong to the loop they were made in). Clients keep their own connection pools."""

import asyncio
import weakref

import redis
import redis.asyncio

_Key = tuple[str, float]
_sync: dict[_Key, redis.Redis] = {}
_async: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[_Key, redis.asyncio.Redis]]" = (
    weakref.WeakKeyDictionary()
)


def redis_client(url: str, *, timeout_s: float) -> redis.Redis:
    """The process's client for `url` (socket and connect timeouts of `timeout_s`)."""
    client = _sync.get((url, timeout_s))
    if client is None:
        client = _sync[(url, timeout_s)] = redis.Redis.from_url(
            url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s
        )
    return client


def redis_client_async(url: str, *, timeout_s: float) -> redis.asyncio.Redis:
    """The running loop's asyncio client for `url`."""
    clients = _async.setdefault(asyncio.get_running_loop(), {})
    client = clients.get((url, timeout_s))
    if client is None:
        client = clients[(url, timeout_s)] = redis.asyncio.Redis.from_url(
            url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s
        )
    return client
