"""Redis clients a process shares: one per URL and timeout (sync), and one per URL and timeout in each event loop
(asyncio clients belong to the loop they were made in). Clients keep their own connection pools.

An asyncio client's pool holds at most ASYNC_POOL_SIZE connections, and a command that finds them all busy waits
for one (up to the timeout) rather than failing: a burst of a thousand requests admitted at once under their keys'
limits (clients/key_limits.py) shares the pool instead of opening a connection each, which redis-py's default pool
refuses past 100 ("Too many connections"; the admission then fell back to the database, seconds late)."""

import asyncio
import weakref

import redis
import redis.asyncio

ASYNC_POOL_SIZE = 64  # connections per URL and event loop; one command takes well under a millisecond
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
        pool = redis.asyncio.BlockingConnectionPool.from_url(
            url,
            max_connections=ASYNC_POOL_SIZE,
            timeout=timeout_s,  # the wait for a free connection
            socket_timeout=timeout_s,
            socket_connect_timeout=timeout_s,
        )
        client = clients[(url, timeout_s)] = redis.asyncio.Redis(connection_pool=pool)
    return client
