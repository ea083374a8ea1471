"""The usage drain applies the journal in full batches and leaves its tail to the next run (inference/journal/
stream.py): chasing entries that arrive while it applies made it apply a few dozen at a time under load, each
batch paying the ledger's fixed dozen statements."""

import threading
import time

import pytest
from django.db import connection, transaction

from core import json_codec
from inference.journal import stream as usage_journal
from inference.models import InferenceRequest
from tests.inference.journal_helpers import use_entry

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("usage_journal_clean")]


def _append(journal, parties: dict, keys: list[str]) -> None:  # type: ignore[no-untyped-def]
    for key in keys:
        entry = use_entry(key, **parties, cost="0")  # no lease to charge: the rows alone show what was applied
        journal.xadd(usage_journal.STREAM, {"e": json_codec.dumps(entry)})


def _waiting_on_a_lock() -> bool:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_stat_clear_snapshot()")  # a transaction reads the activity of its first look
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = current_database()"
        )
        return cursor.fetchone()[0] > 0


def test_a_drain_stops_at_a_partial_batch_and_leaves_what_arrived_meanwhile(usage_journal_clean, journal_parties):
    journal = usage_journal_clean
    _append(journal, journal_parties, ["a0", "a1", "a2"])
    applied: list[int] = []

    def drain() -> None:
        try:
            applied.append(usage_journal.drain(batch_size=5))
        finally:
            connection.close()

    with transaction.atomic():
        # The drain reads the three entries, then waits on this lock to insert their rows...
        with connection.cursor() as cursor:
            cursor.execute(f"LOCK TABLE {InferenceRequest._meta.db_table} IN SHARE MODE")
        drainer = threading.Thread(target=drain)
        drainer.start()
        deadline = time.monotonic() + 10
        while not _waiting_on_a_lock() and time.monotonic() < deadline:
            time.sleep(0.02)
        assert _waiting_on_a_lock()
        # ...while three more arrive.
        _append(journal, journal_parties, ["b0", "b1", "b2"])
    drainer.join(timeout=10)

    assert applied == [3]  # its batch was partial: the three that arrived meanwhile wait for the next run
    assert usage_journal.pending() == 3
    assert usage_journal.drain(batch_size=5) == 3
    assert sorted(InferenceRequest.objects.values_list("request_key", flat=True)) == [
        "a0", "a1", "a2", "b0", "b1", "b2"
    ]  # fmt: skip


def test_a_drain_applies_every_full_batch_in_one_run(usage_journal_clean, journal_parties):
    _append(usage_journal_clean, journal_parties, [f"k{i}" for i in range(12)])

    assert usage_journal.drain(batch_size=5) == 12  # 5 + 5 + 2
    assert usage_journal.pending() == 0
    assert InferenceRequest.objects.count() == 12
