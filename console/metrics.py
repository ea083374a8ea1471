"""GET /metrics: the service's series in Prometheus' text format (docs/API.md §16).

Two sources: the counters and histograms every process counts (core/metrics.py), added up over all processes from
PROMETHEUS_MULTIPROC_DIR when that is set; and figures that are the database's, read at scrape time (nodes by
status, revenue by share from the ledger, the usage journal's lag), so they are right whichever process answers.
"""

import logging
from collections.abc import Iterator

from django.conf import settings
from django.utils import timezone
from prometheus_client import REGISTRY, CollectorRegistry, generate_latest, multiprocess
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from console import selectors
from inference.journal import stream as usage_journal
from market.selectors import revenue_by_share

log = logging.getLogger(__name__)


class DatabaseCollector(Collector):
    """Series read from the database and the journal at scrape time."""

    def collect(self) -> Iterator[Metric]:
        counts = selectors.node_counts(now=timezone.now())
        nodes = GaugeMetricFamily(
            "gpumarket_nodes",
            "Registered nodes: live, offline (the rest), rented now, failing (cooling down); a node may be in several.",
            labels=["status"],
        )
        for status in ("live", "offline", "rented", "failing"):
            nodes.add_metric([status], getattr(counts, status))
        yield nodes
        revenue = revenue_by_share()
        shares = CounterMetricFamily(
            "gpumarket_revenue_usd", "What charges paid each share, from the ledger (USD).", labels=["share"]
        )
        for share in ("operator", "platform", "treasury"):
            shares.add_metric([share], float(getattr(revenue, share)))
        yield shares
        try:
            lag = usage_journal.lag_seconds()
        except Exception:  # Redis down: the series is left out of this scrape (its absence alerts), not a 500
            log.warning("usage journal lag unavailable", exc_info=True)
        else:
            yield GaugeMetricFamily(
                "gpumarket_usage_journal_lag_seconds",
                "Age of the oldest usage-journal entry not yet applied to the database (0 when none).",
                value=lag,
            )


_database = CollectorRegistry(auto_describe=False)
_database.register(DatabaseCollector())


def exposition() -> bytes:
    """Every series, as one scrape's body."""
    if settings.PROMETHEUS_MULTIPROC_DIR:
        processes = CollectorRegistry()
        multiprocess.MultiProcessCollector(processes)
        counted = generate_latest(processes)
    else:
        counted = generate_latest(REGISTRY)
    return counted + generate_latest(_database)
