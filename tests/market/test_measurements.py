"""Latency, throughput and uptime on the market API come from real traffic and real heartbeats (API.md §9)."""

from datetime import UTC, datetime, timedelta

import pytest
import time_machine

from inference.choices import InferenceStatus
from tests.factories import make_node
from tests.market.helpers import completed, every, heartbeats, live_node, serve

NOW = datetime(2026, 3, 1, 12, 0, 30, tzinfo=UTC)


@pytest.fixture(autouse=True)
def _minute_slots(settings):  # type: ignore[no-untyped-def]
    settings.NODE_METRICS_SAMPLE_EVERY_S = 60
    settings.NODE_METRICS_RETENTION_S = 24 * 3600


def providers(api_client, model_id: int, **params) -> list[dict]:  # type: ignore[no-untyped-def]
    r = api_client.get(f"/api/v1/models/{model_id}/providers/", params)
    assert r.status_code == 200, r.json()
    return r.json()["results"]


def test_latency_p50_and_throughput_come_from_the_nodes_completed_requests_of_the_last_day(api_client, provider):
    node = live_node(provider[0])
    offer = serve(node, "org/llama")
    other = live_node(provider[0])
    completed(node, latency_ms=100, completion_tokens=10)
    completed(node, latency_ms=400, completion_tokens=40)
    completed(node, latency_ms=200, completion_tokens=20)
    completed(node, latency_ms=5, completion_tokens=500, status=InferenceStatus.FAILED)  # not completed
    completed(node, latency_ms=9000, finished_at=datetime.now(UTC) - timedelta(hours=25))  # too old
    completed(other, latency_ms=1)  # another node's

    [row] = providers(api_client, offer.model_id)

    assert row["latency_p50_ms"] == 200.0
    assert row["throughput_tps"] == 100.0  # 70 tokens in 0.7 s
    node_row = api_client.get(f"/api/v1/nodes/{node.pk}/").json()
    assert (node_row["latency_p50_ms"], node_row["throughput_tps"]) == (200.0, 100.0)


def test_latency_p50_of_an_even_count_is_the_mean_of_the_middle_two(api_client, provider):
    node = live_node(provider[0])
    offer = serve(node, "org/llama")
    for ms in (100, 300, 500, 50):
        completed(node, latency_ms=ms)

    assert providers(api_client, offer.model_id)[0]["latency_p50_ms"] == 200.0


def test_a_node_without_traffic_has_no_latency_yet(api_client, provider):
    offer = serve(live_node(provider[0]), "org/llama")

    [row] = providers(api_client, offer.model_id)

    assert (row["latency_p50_ms"], row["throughput_tps"]) == (None, None)


def test_a_models_latency_is_the_median_over_every_node_serving_it(api_client, provider):
    a, b = live_node(provider[0]), live_node(provider[0])
    offer = serve(a, "org/llama")
    serve(b, "org/llama")
    completed(a, latency_ms=100)
    completed(b, latency_ms=300)
    completed(b, latency_ms=900)
    completed(b, latency_ms=1, model="org/other")

    assert api_client.get(f"/api/v1/models/{offer.model_id}/").json()["latency_p50_ms"] == 300.0


def test_uptime_is_the_share_of_minute_slots_with_a_heartbeat(api_client, provider):
    with time_machine.travel(datetime(2026, 3, 1, 11, 0, 10, tzinfo=UTC), tick=False):
        node, token = make_node(owner=provider[0])
    offer = serve(node, "org/llama")
    # Every 30 s from 11:50:10 to 12:00:00, silent from 11:56:00 to 11:58:00: minutes 11:50-11:55 and
    # 11:58-11:59 have a heartbeat, 11:56 and 11:57 do not.
    beats = every(datetime(2026, 3, 1, 11, 50, 10, tzinfo=UTC), datetime(2026, 3, 1, 12, 0, tzinfo=UTC), 30)
    beats = [
        t
        for t in beats
        if not (datetime(2026, 3, 1, 11, 56, tzinfo=UTC) <= t < datetime(2026, 3, 1, 11, 58, tzinfo=UTC))
    ]
    heartbeats(api_client, token, beats)

    with time_machine.travel(NOW, tick=False):
        [row] = providers(api_client, offer.model_id)
        node_row = api_client.get(f"/api/v1/nodes/{node.pk}/").json()

    assert row["uptime_5m"] == 0.6  # 11:55, 11:58, 11:59 of 11:55-11:59
    assert row["uptime_30m"] == round(8 / 30, 4)  # 11:50-11:55, 11:58, 11:59 of 11:30-11:59
    assert row["uptime_1d"] == round(8 / 60, 4)  # registered at 11:00:10: 60 whole minutes since
    assert [node_row[k] for k in ("uptime_5m", "uptime_30m", "uptime_1d")] == [0.6, round(8 / 30, 4), round(8 / 60, 4)]


def test_jittery_heartbeats_every_30_seconds_are_full_uptime(api_client, provider):
    with time_machine.travel(datetime(2026, 3, 1, 11, 0, tzinfo=UTC), tick=False):
        node, token = make_node(owner=provider[0])
    offer = serve(node, "org/llama")
    start = datetime(2026, 3, 1, 11, 54, 50, tzinfo=UTC)
    # 29.x s and 30.x s apart in turn: a "60 s since the last sample" rule would miss some minutes.
    beats = [start + timedelta(seconds=30 * i + (0.9 if i % 2 else 0)) for i in range(12)]
    heartbeats(api_client, token, beats)

    with time_machine.travel(NOW, tick=False):
        [row] = providers(api_client, offer.model_id)

    assert row["uptime_5m"] == 1.0


def test_uptime_is_null_until_a_whole_slot_has_passed_since_registration(api_client, provider):
    with time_machine.travel(datetime(2026, 3, 1, 12, 0, 5, tzinfo=UTC), tick=False):
        node, token = make_node(owner=provider[0])
    serve(node, "org/llama")
    heartbeats(api_client, token, [datetime(2026, 3, 1, 12, 0, 10, tzinfo=UTC)])

    with time_machine.travel(NOW, tick=False):
        row = api_client.get(f"/api/v1/nodes/{node.pk}/").json()

    assert (row["uptime_5m"], row["uptime_30m"], row["uptime_1d"]) == (None, None, None)
