"""Redis clients a process shares: one per URL and timeout (sync; a client keeps its own connection pool). Asyncio
code shares one pipelined connection per URL and event loop instead: core/redis_mux.py."""

import redis

_Key = tuple[str, float]
_sync: dict[_Key, redis.Redis] = {}


def redis_client(url: str, *, timeout_s: float) -> redis.Redis:
    """The process's client for `url` (socket and connect timeouts of `timeout_s`)."""
    client = _sync.get((url, timeout_s))
    if client is None:
        client = _sync[(url, timeout_s)] = redis.Redis.from_url(
            url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s
        )
    return client
