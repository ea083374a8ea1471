"""A burst of admissions at once (clients/key_limits.py on core/redis_clients.py's shared asyncio client): every one
is counted in Redis, none falls back to the database. redis-py's default pool refused connections past 100 ("Too
many connections"), and those admissions went to the database instead, seconds late under a burst of streams."""

import asyncio

import pytest
import redis
from django.conf import settings

from clients.key_limits import KeyLimits, key_admit_async
from clients.models import KeyRateWindow
from clients.services import api_key_create
from tests.factories import make_client

BURST = 600


@pytest.mark.django_db(transaction=True)  # database_call hands its connection back: no test transaction to keep
def test_a_burst_of_admissions_is_counted_in_redis_and_none_falls_back_to_the_database() -> None:
    client, _ = make_client()
    key, _ = api_key_create(client=client, name="bursty", rpm=1_000_000)
    limits = KeyLimits.of(key)

    async def burst() -> list[str]:
        admissions = await asyncio.gather(*(key_admit_async(limits=limits, model="any/model") for _ in range(BURST)))
        return [a.headers["x-ratelimit-remaining-requests"] for a in admissions]

    remaining = asyncio.run(burst())

    assert sorted(int(r) for r in remaining) == list(range(1_000_000 - BURST, 1_000_000))  # each counted once
    assert not KeyRateWindow.objects.filter(api_key_id=key.pk).exists()  # the database's fallback never ran
    store = redis.Redis.from_url(settings.KEY_LIMITS_REDIS_URL)
    counters = [int(store.get(name) or 0) for name in store.scan_iter(f"gm:keylim:{key.pk}:r:*")]
    store.close()
    assert sum(counters) == BURST
