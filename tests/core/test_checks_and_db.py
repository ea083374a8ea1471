"""core/checks.py (start-up warnings) and core/db.py (SQL that gives the same figures on PostgreSQL and SQLite)."""

import sqlite3
import statistics

import pytest
from django.core.checks import Warning as CheckWarning

from core import db
from core.checks import node_heartbeat_timeout_check


@pytest.mark.parametrize(("interval", "timeout"), [(30, 20), (30, 30)])
def test_a_heartbeat_timeout_not_above_the_interval_warns(settings, interval, timeout):
    settings.NODE_HEARTBEAT_INTERVAL_S, settings.NODE_HEARTBEAT_TIMEOUT_S = interval, timeout

    found = node_heartbeat_timeout_check()

    assert [(type(w), w.id) for w in found] == [(CheckWarning, "core.W001")]
    assert f"NODE_HEARTBEAT_TIMEOUT_S ({timeout})" in found[0].msg


def test_a_heartbeat_timeout_above_the_interval_is_fine(settings):
    settings.NODE_HEARTBEAT_INTERVAL_S, settings.NODE_HEARTBEAT_TIMEOUT_S = 5, 20

    assert node_heartbeat_timeout_check() == []


@pytest.mark.parametrize("values", [[], [None], [7], [3, 1], [5, 1, 4, None, 2], [10, 20, 30, 40], [2.5, 2.5, 9.0]])
def test_the_sqlite_median_is_postgresqls_percentile_cont(values):
    """The aggregate SQLite gets (core.db) interpolates an even count and skips nulls, as percentile_cont(0.5)."""
    conn = sqlite3.connect(":memory:")
    conn.create_aggregate("median", 1, db._MedianAggregate)
    conn.execute("CREATE TABLE t (x REAL)")
    conn.executemany("INSERT INTO t VALUES (?)", [(v,) for v in values])

    (got,) = conn.execute("SELECT median(x) FROM t").fetchone()

    present = [v for v in values if v is not None]
    assert got == (statistics.median(present) if present else None)
