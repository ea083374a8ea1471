"""A key's budget spend in Redis (clients/key_limits.py): the counter read by admission in the rpm check's round
trip, seeded from the database when missing, added to wherever spend is recorded, exact under concurrency."""

import threading
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
import redis
from asgiref.sync import async_to_sync
from django.conf import settings
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from clients.errors import KeyBudgetExceeded
from clients.key_limits import KeyLimits, key_admit, key_admit_async, key_record_spend
from clients.models import ApiKey
from clients.services import api_key_create
from tests.factories import make_client

NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)


@pytest.fixture
def store():  # type: ignore[no-untyped-def]
    client = redis.Redis.from_url(settings.KEY_LIMITS_REDIS_URL, decode_responses=True)
    yield client
    client.close()


def spend_counters(store: redis.Redis, key_id: int) -> dict[str, str]:
    return {name: store.get(name) for name in store.scan_iter(f"gm:keylim:{key_id}:s:*")}


def _key(**limits: object) -> KeyLimits:
    client, _ = make_client()
    key, _ = api_key_create(client=client, name="capped", **limits)
    return KeyLimits.of(key)


def test_the_counter_is_seeded_once_then_follows_each_recording_exactly(store):  # type: ignore[no-untyped-def]
    limits = _key(budget=Decimal("1.00"), budget_period="day", rpm=100)
    key_record_spend(limits=limits, cost=Decimal("0.123456"), tokens=0, now=NOW)  # no counter yet: the row only
    assert spend_counters(store, limits.key_id) == {}

    key_admit(limits=limits, model=None, scope="rentals", now=NOW)  # seeds it from the row
    key_record_spend(limits=limits, cost=Decimal("0.000001"), tokens=0, now=NOW)
    key_record_spend(limits=limits, cost=Decimal("0.3"), tokens=0, now=NOW)

    day = int(datetime(2026, 12, 6, tzinfo=UTC).timestamp())
    assert spend_counters(store, limits.key_id) == {f"gm:keylim:{limits.key_id}:s:day:{day}": "423457"}
    assert ApiKey.objects.get(pk=limits.key_id).spent == Decimal("0.423457")
    ttl = store.ttl(f"gm:keylim:{limits.key_id}:s:day:{day}")
    assert 0 < ttl <= 12 * 3600 + 60  # gone a minute after the day (the key's period) ends, counted from now


def test_a_flushed_redis_is_seeded_again_from_the_database_and_still_refuses(store):  # type: ignore[no-untyped-def]
    limits = _key(budget=Decimal("0.50"), budget_period="month")
    key_admit(limits=limits, model=None, scope="rentals", now=NOW)
    key_record_spend(limits=limits, cost=Decimal("0.30"), tokens=0, now=NOW)
    key_record_spend(limits=limits, cost=Decimal("0.25"), tokens=0, now=NOW)
    assert list(spend_counters(store, limits.key_id).values()) == ["550000"]

    store.delete(*store.scan_iter("gm:keylim:*"))  # Redis restarted empty
    with pytest.raises(KeyBudgetExceeded):
        key_admit(limits=limits, model=None, scope="rentals", now=NOW)

    assert list(spend_counters(store, limits.key_id).values()) == ["550000"]


def test_a_new_period_starts_from_nothing(store):  # type: ignore[no-untyped-def]
    limits = _key(budget=Decimal("0.50"), budget_period="day")
    key_admit(limits=limits, model=None, scope="rentals", now=NOW)
    key_record_spend(limits=limits, cost=Decimal("0.60"), tokens=0, now=NOW)
    with pytest.raises(KeyBudgetExceeded):
        key_admit(limits=limits, model=None, scope="rentals", now=NOW)

    key_admit(limits=limits, model=None, scope="rentals", now=NOW + timedelta(days=1))  # admitted

    assert sorted(spend_counters(store, limits.key_id).values()) == ["0", "600000"]


@pytest.mark.django_db(transaction=True)  # database_call hands its connection back: no test transaction to keep
def test_lean_admission_reads_the_budget_without_a_database_query(store):  # type: ignore[no-untyped-def]
    limits = _key(budget=Decimal("5.00"), rpm=100)
    admit = async_to_sync(key_admit_async)
    with CaptureQueriesContext(connection) as seeding:  # sync_to_async runs in this thread here: its queries count
        admit(limits=limits, model="any/model", now=NOW)
    key_record_spend(limits=limits, cost=Decimal("4.99"), tokens=0, now=NOW)

    with CaptureQueriesContext(connection) as admitting:
        admission = admit(limits=limits, model="any/model", now=NOW)
    key_record_spend(limits=limits, cost=Decimal("0.01"), tokens=0, now=NOW)
    with CaptureQueriesContext(connection) as refusing, pytest.raises(KeyBudgetExceeded):
        admit(limits=limits, model="any/model", now=NOW)

    assert len(seeding.captured_queries) > 0  # the one seed (so the capture sees this path's queries)
    assert admitting.captured_queries == [] and refusing.captured_queries == []
    assert admission.headers["x-ratelimit-remaining-requests"] == "98"


@pytest.mark.django_db(transaction=True)
def test_concurrent_recordings_all_count_while_the_counter_is_seeded(store):  # type: ignore[no-untyped-def]
    limits = _key(budget=Decimal("1000"), budget_period="total")
    start = threading.Barrier(4)
    errors: list[BaseException] = []

    def worker(n: int) -> None:
        try:
            start.wait()
            for i in range(25):
                if i % 10 == n:  # some admissions (seeds, once the counter is gone) among the recordings
                    store.delete(*spend_counters(store, limits.key_id), "absent")  # DEL needs a name
                    key_admit(limits=limits, model=None, scope="rentals", now=NOW)
                key_record_spend(limits=limits, cost=Decimal("0.010001"), tokens=0, now=NOW)
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    assert ApiKey.objects.get(pk=limits.key_id).spent == Decimal("1.000100")
    assert list(spend_counters(store, limits.key_id).values()) == ["1000100"]
    assert store.ttl(next(iter(spend_counters(store, limits.key_id)))) == -1  # `total` never ends


@pytest.mark.django_db(transaction=True)
def test_a_recording_whose_transaction_rolls_back_leaves_the_counter_as_it_was(store):  # type: ignore[no-untyped-def]
    """The usage journal applies a failed batch again entry by entry: the failed attempt must not count."""
    limits = _key(budget=Decimal("1.00"), budget_period="day")
    key_admit(limits=limits, model=None, scope="rentals", now=NOW)  # seeded: 0
    key_record_spend(limits=limits, cost=Decimal("0.20"), tokens=0, now=NOW)

    with pytest.raises(RuntimeError), transaction.atomic():
        key_record_spend(limits=limits, cost=Decimal("0.30"), tokens=0, now=NOW)
        raise RuntimeError("the batch failed after recording")
    key_record_spend(limits=limits, cost=Decimal("0.30"), tokens=0, now=NOW)  # the retry

    assert list(spend_counters(store, limits.key_id).values()) == ["500000"]
    assert ApiKey.objects.get(pk=limits.key_id).spent == Decimal("0.50")
