"""Celery entry points of the node registry: thin, safe to run twice, and run by a real worker."""

import time
from datetime import timedelta
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.utils import timezone

from config.celery import app as celery_app
from llm_models.choices import NodeStatus
from llm_models.models import Node, NodeMetricSample
from llm_models.tasks import node_mark_stale_offline as node_mark_stale_offline_task
from llm_models.tasks import node_metrics_prune as node_metrics_prune_task
from tests.factories import make_node
from tests.llm_models.conftest import wait_until


def test_the_stale_node_task_flips_stale_nodes_and_is_safe_to_repeat(provider, settings):
    settings.NODE_HEARTBEAT_TIMEOUT_S = 90
    stale, _ = make_node(
        owner=provider[0], status=NodeStatus.ONLINE, last_heartbeat_at=timezone.now() - timedelta(minutes=5)
    )
    fresh, _ = make_node(owner=provider[0], status=NodeStatus.ONLINE, last_heartbeat_at=timezone.now())

    assert node_mark_stale_offline_task.delay().get() == 1
    assert node_mark_stale_offline_task.delay().get() == 0

    stale.refresh_from_db()
    fresh.refresh_from_db()
    assert stale.status == NodeStatus.OFFLINE
    assert fresh.status == NodeStatus.ONLINE


def test_the_prune_task_deletes_old_samples_and_is_safe_to_repeat(provider, settings):
    settings.NODE_METRICS_RETENTION_S = 3600
    node, _ = make_node(owner=provider[0])
    NodeMetricSample.objects.create(node=node, recorded_at=timezone.now() - timedelta(hours=2))
    kept = NodeMetricSample.objects.create(node=node, recorded_at=timezone.now())

    assert node_metrics_prune_task.delay().get() == 1
    assert node_metrics_prune_task.delay().get() == 0
    assert list(NodeMetricSample.objects.values_list("pk", flat=True)) == [kept.pk]


def test_beat_runs_the_sweep_and_the_prune():
    schedule = django_settings.CELERY_BEAT_SCHEDULE
    by_task = {entry["task"]: entry for entry in schedule.values()}

    assert by_task["llm_models.tasks.node_mark_stale_offline"]["schedule"] == timedelta(
        seconds=django_settings.NODE_SWEEP_INTERVAL_S
    )
    assert "llm_models.tasks.node_metrics_prune" in by_task
    assert {"llm_models.tasks.node_mark_stale_offline", "llm_models.tasks.node_metrics_prune"} <= set(
        celery_app.tasks.keys()
    )


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_a_real_worker_marks_a_stale_node_offline(provider, celery_worker):
    timeout_s = django_settings.NODE_HEARTBEAT_TIMEOUT_S
    stale, _ = make_node(
        owner=provider[0],
        status=NodeStatus.ONLINE,
        last_heartbeat_at=timezone.now() - timedelta(seconds=timeout_s + 60),
    )
    fresh, _ = make_node(owner=provider[0], status=NodeStatus.ONLINE, last_heartbeat_at=timezone.now())
    started = time.monotonic()

    eager = celery_app.conf.task_always_eager
    celery_app.conf.task_always_eager = False  # publish to Redis: the worker, not this process, runs it
    try:
        result = node_mark_stale_offline_task.delay()
    finally:
        celery_app.conf.task_always_eager = eager

    assert type(result).__name__ == "AsyncResult"  # sent, not run here
    wait_until(lambda: Node.objects.get(pk=stale.pk).status == NodeStatus.OFFLINE, timeout=30, process=celery_worker)
    fresh.refresh_from_db()
    assert fresh.status == NodeStatus.ONLINE
    # And it was our worker that ran it.
    log_path = Path(celery_worker.log_path)
    wait_until(lambda: f"{result.id}] succeeded" in log_path.read_text(), timeout=10, process=celery_worker)
    print(f"worker round trip: {time.monotonic() - started:.1f} s")
