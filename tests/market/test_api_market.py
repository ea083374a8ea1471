"""The public market read API (API.md §7): models, providers, nodes, monitoring; filters, sorting, 404s."""

from datetime import UTC, datetime, timedelta

import pytest
from django.utils import timezone

from llm_models.choices import NodeStatus
from llm_models.models import NodeMetricSample
from llm_models.services import node_deregister
from tests.conftest import bearer
from tests.factories import LlmModelFactory, make_node
from tests.llm_models.conftest import errors_of
from tests.market.helpers import completed, live_node, serve


def results(api_client, url: str, **params) -> list[dict]:  # type: ignore[no-untyped-def]
    r = api_client.get(url, params)
    assert r.status_code == 200, r.json()
    return r.json()["results"]


# --- models/ ---------------------------------------------------------------------------------------------------------


def test_models_list_every_model_with_live_node_count_and_lowest_live_prices(api_client, provider, other_provider):
    serve(live_node(provider[0]), "org/llama", "0.30", "0.90", context_window=131072)
    serve(live_node(other_provider[0]), "org/llama", "0.20", "1.10", context_window=8192)
    serve(make_node(owner=provider[0], status=NodeStatus.OFFLINE)[0], "org/llama", "0.01", "0.01")
    LlmModelFactory(name="org/idle", context_window=4096)

    rows = results(api_client, "/api/v1/models/")

    assert [(m["name"], m["live_nodes"]) for m in rows] == [("org/idle", 0), ("org/llama", 2)]
    llama = rows[1]
    assert (llama["input_price_per_million"], llama["output_price_per_million"]) == ("0.200000", "0.900000")
    assert llama["context_window"] == 131072
    assert rows[0]["input_price_per_million"] is None and rows[0]["context_window"] == 4096


def test_models_filter_by_region_and_gpu_count_and_price_only_matching_live_nodes(api_client, provider):
    serve(live_node(provider[0], region="us-east", gpu_model="H100"), "org/llama", "0.30", "0.90")
    serve(live_node(provider[0], region="eu-west", gpu_model="A100"), "org/llama", "0.10", "0.10")
    serve(live_node(provider[0], region="eu-west", gpu_model="A100"), "org/mistral")

    us = results(api_client, "/api/v1/models/", region="US-EAST")
    h100 = results(api_client, "/api/v1/models/", gpu_model="h100")

    assert [(m["name"], m["live_nodes"], m["input_price_per_million"]) for m in us] == [("org/llama", 1, "0.300000")]
    assert [m["name"] for m in h100] == ["org/llama"]
    assert [m["name"] for m in results(api_client, "/api/v1/models/", search="mist")] == ["org/mistral"]


def test_models_order_by_price_and_live_nodes(api_client, provider):
    serve(live_node(provider[0]), "org/dear", "5", "5")
    serve(live_node(provider[0]), "org/cheap", "1", "1")
    serve(live_node(provider[0]), "org/cheap", "2", "2")
    LlmModelFactory(name="org/idle")

    by_price = [m["name"] for m in results(api_client, "/api/v1/models/", ordering="input_price_per_million")]
    by_nodes = [m["name"] for m in results(api_client, "/api/v1/models/", ordering="-live_nodes")]

    assert by_price == ["org/cheap", "org/dear", "org/idle"]  # no live price: last
    assert by_nodes == ["org/cheap", "org/dear", "org/idle"]


def test_models_order_by_latency(api_client, provider):
    slow, fast = live_node(provider[0]), live_node(provider[0])
    serve(slow, "org/slow")
    serve(fast, "org/fast")
    completed(slow, latency_ms=900, model="org/slow")
    completed(fast, latency_ms=100, model="org/fast")

    assert [m["name"] for m in results(api_client, "/api/v1/models/", ordering="latency_p50_ms")] == [
        "org/fast",
        "org/slow",
    ]


def test_a_model_is_read_by_id_and_an_unknown_id_is_404(api_client, provider):
    offer = serve(live_node(provider[0]), "org/llama")

    assert api_client.get(f"/api/v1/models/{offer.model_id}/").json()["name"] == "org/llama"
    r = api_client.get("/api/v1/models/999999/")
    assert r.status_code == 404
    assert errors_of(r) == [("not_found", None)]


def test_a_region_with_a_nul_is_a_400_naming_it(api_client):
    r = api_client.get("/api/v1/models/", {"region": "eu\x00"})

    assert r.status_code == 400
    assert errors_of(r) == [("null_characters_not_allowed", "region")]


# --- models/{id}/providers/ ------------------------------------------------------------------------------------------


def test_providers_are_the_live_nodes_serving_the_model_with_public_fields(api_client, provider, other_provider):
    node = live_node(provider[0], name="gpu-7", region="eu-west", gpu_model="H100", gpu_count=8)
    offer = serve(node, "org/llama", "0.20", "0.60", context_window=131072)
    serve(make_node(owner=other_provider[0], status=NodeStatus.OFFLINE)[0], "org/llama")

    [row] = results(api_client, f"/api/v1/models/{offer.model_id}/providers/")

    assert row == {
        "node_id": node.pk,
        "node_name": "gpu-7",
        "provider": provider[0].user.username,
        "region": "eu-west",
        "gpu_model": "H100",
        "gpu_count": 8,
        "input_price_per_million": "0.200000",
        "output_price_per_million": "0.600000",
        "context_window": 131072,
        "last_heartbeat_at": row["last_heartbeat_at"],
        "latency_p50_ms": None,
        "throughput_tps": None,
        "uptime_5m": row["uptime_5m"],
        "uptime_30m": row["uptime_30m"],
        "uptime_1d": row["uptime_1d"],
    }


def test_providers_sort_by_price_by_default_and_by_latency_on_request(api_client, provider):
    dear, cheap = live_node(provider[0]), live_node(provider[0])
    offer = serve(dear, "org/llama", "3", "3")
    serve(cheap, "org/llama", "1", "1")
    completed(dear, latency_ms=100)
    completed(cheap, latency_ms=500)
    url = f"/api/v1/models/{offer.model_id}/providers/"

    assert [r["node_id"] for r in results(api_client, url)] == [cheap.pk, dear.pk]
    assert [r["node_id"] for r in results(api_client, url, ordering="latency_p50_ms")] == [dear.pk, cheap.pk]
    assert [r["node_id"] for r in results(api_client, url, ordering="-price")] == [dear.pk, cheap.pk]


def test_providers_filter_by_region_and_gpu_model(api_client, provider):
    us = live_node(provider[0], region="us-east", gpu_model="H100")
    eu = live_node(provider[0], region="eu-west", gpu_model="A100")
    offer = serve(us, "org/llama")
    serve(eu, "org/llama")
    url = f"/api/v1/models/{offer.model_id}/providers/"

    assert [r["node_id"] for r in results(api_client, url, region="eu-west")] == [eu.pk]
    assert [r["node_id"] for r in results(api_client, url, gpu_model="H100")] == [us.pk]


def test_providers_of_an_unknown_model_are_404(api_client):
    assert api_client.get("/api/v1/models/999999/providers/").status_code == 404


def test_a_provider_whose_username_is_an_email_is_shown_by_id(api_client):
    from clients.choices import ClientRole
    from tests.factories import make_client

    owner, _ = make_client(role=ClientRole.GPU_PROVIDER, approved=True, username="alice@example.com")
    offer = serve(live_node(owner), "org/llama")

    [row] = results(api_client, f"/api/v1/models/{offer.model_id}/providers/")

    assert row["provider"] == f"provider-{owner.pk}"


# --- nodes/ ----------------------------------------------------------------------------------------------------------


def test_nodes_list_registered_nodes_with_status_models_and_prices(api_client, provider):
    node = live_node(provider[0], gpu_model="H100")
    serve(node, "org/b", "2", "3")
    serve(node, "org/a", "1", "1")
    offline, _ = make_node(owner=provider[0], status=NodeStatus.OFFLINE)
    gone, _ = make_node(owner=provider[0], status=NodeStatus.ONLINE)
    node_deregister(node=gone)

    rows = results(api_client, "/api/v1/nodes/")

    assert [(r["id"], r["status"], r["live"]) for r in rows] == [
        (node.pk, "online", True),
        (offline.pk, "offline", False),
    ]
    assert [m["name"] for m in rows[0]["models"]] == ["org/a", "org/b"]
    assert rows[0]["models"][1]["output_price_per_million"] == "3.000000"
    assert rows[0]["gpu"]["gpu_model"] == "H100"
    assert rows[1]["gpu"] is None


def test_nodes_filter_by_model_region_gpu_status_and_live(api_client, provider):
    a = live_node(provider[0], region="us-east", gpu_model="H100")
    serve(a, "org/llama")
    b, _ = make_node(owner=provider[0], status=NodeStatus.OFFLINE, region="eu-west")
    serve(b, "org/mistral")

    def ids(**params):  # type: ignore[no-untyped-def]
        return [r["id"] for r in results(api_client, "/api/v1/nodes/", **params)]

    assert ids(model="org/llama") == [a.pk]
    assert ids(region="EU-WEST") == [b.pk]
    assert ids(gpu_model="h100") == [a.pk]
    assert ids(status="offline") == [b.pk]
    assert ids(live="true") == [a.pk]
    assert ids(live="false") == [b.pk]


def test_nodes_sort_by_price_latency_and_uptime(api_client, provider):
    dear, cheap = live_node(provider[0]), live_node(provider[0])
    serve(dear, "org/llama", "9", "9")
    serve(cheap, "org/llama", "1", "1")
    completed(dear, latency_ms=100)
    completed(cheap, latency_ms=800)
    now = timezone.now()
    for i in range(1, 6):  # `dear` heard in each of the last 5 whole minutes, `cheap` in none
        NodeMetricSample.objects.create(node=dear, recorded_at=now - timedelta(seconds=60 * i))
    from llm_models.models import Node

    Node.objects.filter(pk__in=[dear.pk, cheap.pk]).update(registered_at=now - timedelta(hours=1))

    def ids(ordering: str) -> list[int]:
        return [r["id"] for r in results(api_client, "/api/v1/nodes/", ordering=ordering)]

    assert ids("price") == [cheap.pk, dear.pk]
    assert ids("latency_p50_ms") == [dear.pk, cheap.pk]
    assert ids("-uptime_30m") == [dear.pk, cheap.pk]


def test_a_bad_filter_value_is_a_400_naming_it(api_client):
    r = api_client.get("/api/v1/nodes/", {"live": "maybe"})

    assert r.status_code == 400
    assert errors_of(r) == [("invalid", "live")]


def test_a_node_is_read_by_id_with_its_latest_metrics(api_client, provider):
    node = live_node(provider[0], latest_metrics={"gpu_utilization": 42.5})

    body = api_client.get(f"/api/v1/nodes/{node.pk}/").json()

    assert body["id"] == node.pk
    assert body["latest_metrics"] == {"gpu_utilization": 42.5}


def test_a_deregistered_or_unknown_node_is_404(api_client, provider):
    node = live_node(provider[0])
    node_deregister(node=node)

    for url in (f"/api/v1/nodes/{node.pk}/", f"/api/v1/nodes/{node.pk}/monitoring/", "/api/v1/nodes/999999/"):
        r = api_client.get(url)
        assert r.status_code == 404, url
        assert errors_of(r) == [("not_found", None)]


# --- nodes/{id}/monitoring/ ------------------------------------------------------------------------------------------


T = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def monitored(provider):  # type: ignore[no-untyped-def]
    node = live_node(provider[0], latest_metrics={"gpu_utilization": 99}, active_requests=4)
    for i in range(5):
        NodeMetricSample.objects.create(
            node=node, recorded_at=T + timedelta(minutes=i), metrics={"gpu_utilization": i}, active_requests=i
        )
    return node


def test_monitoring_shows_latest_metrics_and_history_newest_first(api_client, monitored):
    body = api_client.get(f"/api/v1/nodes/{monitored.pk}/monitoring/").json()

    assert body["latest_metrics"] == {"gpu_utilization": 99}
    assert body["active_requests"] == 4
    assert body["live"] is True
    assert body["count"] == 5
    assert [s["metrics"]["gpu_utilization"] for s in body["results"]] == [4, 3, 2, 1, 0]


def test_monitoring_filters_by_since_and_until(api_client, monitored):
    body = api_client.get(
        f"/api/v1/nodes/{monitored.pk}/monitoring/",
        {"since": "2026-03-01T12:01:00Z", "until": "2026-03-01T12:03:00+00:00"},
    ).json()

    assert [s["recorded_at"] for s in body["results"]] == [
        "2026-03-01T12:03:00Z",
        "2026-03-01T12:02:00Z",
        "2026-03-01T12:01:00Z",
    ]


def test_monitoring_is_paginated(api_client, monitored):
    body = api_client.get(f"/api/v1/nodes/{monitored.pk}/monitoring/", {"page_size": 2, "page": 2}).json()

    assert body["count"] == 5
    assert [s["active_requests"] for s in body["results"]] == [2, 1]
    assert body["next"] and body["previous"]


@pytest.mark.parametrize("param", ["since", "until"])
def test_monitoring_with_a_bad_time_is_a_400_naming_it(api_client, monitored, param):
    r = api_client.get(f"/api/v1/nodes/{monitored.pk}/monitoring/", {param: "yesterday"})

    assert r.status_code == 400
    assert errors_of(r) == [("invalid", param)]


def test_monitoring_with_until_before_since_is_a_400(api_client, monitored):
    r = api_client.get(
        f"/api/v1/nodes/{monitored.pk}/monitoring/", {"since": "2026-03-02T00:00:00Z", "until": "2026-03-01T00:00:00Z"}
    )

    assert r.status_code == 400
    assert errors_of(r) == [("invalid", "until")]


# --- access ----------------------------------------------------------------------------------------------------------


def test_anonymous_callers_are_throttled_and_signed_in_ones_are_not(api_client, settings, user_client):
    settings.MARKET_ANON_THROTTLE_RATE = "2/min"

    assert [api_client.get("/api/v1/stats/").status_code for _ in range(3)] == [200, 200, 429]
    assert api_client.get("/api/v1/stats/", **bearer(user_client[1])).status_code == 200


def test_an_invalid_key_on_a_public_endpoint_is_401(api_client):
    assert api_client.get("/api/v1/models/", **bearer("gmk_nope")).status_code == 401
