"""POST /api/v1/llm_models/heartbeat/ (API.md §3): a node says it is alive, with its metrics and models."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
import time_machine

from llm_models.choices import NodeStatus
from llm_models.models import NodeMetricSample, NodeModel
from tests.factories import PASSWORD, make_node
from tests.llm_models.conftest import HEARTBEAT_URL, errors_of

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
METRICS = {
    "gpu_utilization": 37,
    "gpu_memory_used_mb": 20000,
    "gpu_memory_total_mb": 81920,
    "gpu_temperature_c": 61,
    "cpu_percent": 12.5,
    "ram_used_mb": 64000,
    "ram_total_mb": 512000,
}


@pytest.fixture
def node_and_token(provider):  # type: ignore[no-untyped-def]
    return make_node(owner=provider[0], models=["org/a", "org/b"])


def served(node) -> dict[str, NodeModel]:  # type: ignore[no-untyped-def]
    return {nm.model.name: nm for nm in NodeModel.objects.filter(node=node).select_related("model")}


def test_heartbeat_answers_with_status_interval_and_commands(heartbeat, node_and_token):
    _, token = node_and_token

    r = heartbeat(token, {"metrics": METRICS})

    assert r.status_code == 200, r.json()
    assert r.json() == {"status": "online", "heartbeat_interval_s": 30, "commands": []}


def test_heartbeat_brings_the_node_online_and_stores_its_metrics(heartbeat, node_and_token):
    node, token = node_and_token

    with time_machine.travel(NOW, tick=False):
        r = heartbeat(token, {"metrics": METRICS, "active_requests": 3})

    assert r.status_code == 200
    node.refresh_from_db()
    assert node.status == NodeStatus.ONLINE
    assert node.last_heartbeat_at == NOW
    assert node.latest_metrics == METRICS
    assert node.active_requests == 3


def test_heartbeat_with_an_empty_body_counts(heartbeat, node_and_token):
    node, token = node_and_token

    r = heartbeat(token, {})

    assert r.status_code == 200
    node.refresh_from_db()
    assert node.status == NodeStatus.ONLINE
    assert node.latest_metrics == {}


def test_heartbeat_keeps_per_gpu_metrics(heartbeat, node_and_token):
    node, token = node_and_token
    gpus = [{"index": 0, "name": "H100", "utilization": 50, "memory_used_mb": 1, "temperature_c": 60}]

    r = heartbeat(token, {"metrics": {"gpu_utilization": 50, "gpus": gpus}})

    assert r.status_code == 200, r.json()
    node.refresh_from_db()
    assert node.latest_metrics["gpus"][0]["utilization"] == 50


def test_unknown_metric_keys_are_dropped(heartbeat, node_and_token):
    node, token = node_and_token

    r = heartbeat(token, {"metrics": {"gpu_utilization": 10, "fan_rpm": 3000}})

    assert r.status_code == 200
    node.refresh_from_db()
    assert node.latest_metrics == {"gpu_utilization": 10}


def test_node_token_in_the_body_works(api_client, node_and_token):
    node, token = node_and_token

    r = api_client.post(HEARTBEAT_URL, {"node_token": token, "metrics": METRICS}, format="json")

    assert r.status_code == 200
    node.refresh_from_db()
    assert node.status == NodeStatus.ONLINE
    assert "node_token" not in node.latest_metrics


def test_heartbeat_without_a_token_is_401(api_client, node_and_token):
    node, _ = node_and_token

    r = api_client.post(HEARTBEAT_URL, {"metrics": METRICS}, format="json")

    assert r.status_code == 401
    assert errors_of(r) == [("not_authenticated", None)]
    assert 'realm="node"' in r.headers["WWW-Authenticate"]
    node.refresh_from_db()
    assert node.status == NodeStatus.OFFLINE


@pytest.mark.parametrize("token", ["gmn_not-a-real-token", "garbage"])
def test_heartbeat_with_a_wrong_token_is_401(heartbeat, node_and_token, token):
    node, _ = node_and_token

    r = heartbeat(token, {"metrics": METRICS})

    assert r.status_code == 401
    assert errors_of(r) == [("invalid_node_token", None)]
    node.refresh_from_db()
    assert node.status == NodeStatus.OFFLINE


def test_wrong_token_in_the_body_is_401(api_client, node_and_token):
    r = api_client.post(HEARTBEAT_URL, {"node_token": "gmn_wrong"}, format="json")

    assert r.status_code == 401


def test_a_client_api_key_is_not_a_node_token(heartbeat, provider, node_and_token):
    node, _ = node_and_token

    r = heartbeat(provider[1], {"metrics": METRICS})

    assert r.status_code == 401
    node.refresh_from_db()
    assert node.status == NodeStatus.OFFLINE


def test_the_owners_password_is_not_a_node_token(api_client, provider, node_and_token):
    api_client.login(username=provider[0].user.username, password=PASSWORD)

    r = api_client.post(HEARTBEAT_URL, {"metrics": METRICS}, format="json")

    assert r.status_code == 401
    node, _ = node_and_token
    node.refresh_from_db()
    assert node.status == NodeStatus.OFFLINE


def test_a_deregistered_nodes_token_is_401(heartbeat, provider):
    node, token = make_node(owner=provider[0], status=NodeStatus.DEREGISTERED)

    r = heartbeat(token, {"metrics": METRICS})

    assert r.status_code == 401
    node.refresh_from_db()
    assert node.status == NodeStatus.DEREGISTERED
    assert node.last_heartbeat_at is None


def test_a_revoked_providers_node_is_401_provider_not_approved(heartbeat, provider, node_and_token):
    node, token = node_and_token
    client = provider[0]
    client.is_gpu_provider_approved = False
    client.save()

    r = heartbeat(token, {"metrics": METRICS})

    assert r.status_code == 401
    assert errors_of(r) == [("provider_not_approved", None)]
    node.refresh_from_db()
    assert node.status == NodeStatus.OFFLINE
    assert node.last_heartbeat_at is None


def test_a_deactivated_providers_node_is_401(heartbeat, provider, node_and_token):
    node, token = node_and_token
    provider[0].user.is_active = False
    provider[0].user.save()

    r = heartbeat(token, {"metrics": METRICS})

    assert r.status_code == 401
    node.refresh_from_db()
    assert node.status == NodeStatus.OFFLINE


def test_an_admins_node_heartbeats_without_provider_approval(heartbeat, admin):
    _, token = make_node(owner=admin[0])

    assert heartbeat(token, {"metrics": METRICS}).status_code == 200


@pytest.mark.parametrize(
    ("metrics", "attr"),
    [
        ({"gpu_utilization": 150}, "metrics.gpu_utilization"),
        ({"gpu_utilization": -1}, "metrics.gpu_utilization"),
        ({"cpu_percent": 101}, "metrics.cpu_percent"),
        ({"gpu_temperature_c": 500}, "metrics.gpu_temperature_c"),
        ({"ram_used_mb": -5}, "metrics.ram_used_mb"),
        ({"gpu_memory_used_mb": "lots"}, "metrics.gpu_memory_used_mb"),
        ({"gpus": [{"utilization": 101}]}, "metrics.gpus.0.utilization"),
    ],
)
def test_metrics_out_of_range_are_400_and_change_nothing(heartbeat, node_and_token, metrics, attr):
    node, token = node_and_token

    r = heartbeat(token, {"metrics": metrics})

    assert r.status_code == 400
    assert [a for _, a in errors_of(r)] == [attr]
    node.refresh_from_db()
    assert node.status == NodeStatus.OFFLINE
    assert node.latest_metrics == {}
    assert not NodeMetricSample.objects.exists()


def test_metrics_that_are_not_an_object_are_400(heartbeat, node_and_token):
    _, token = node_and_token

    r = heartbeat(token, {"metrics": "hot"})

    assert r.status_code == 400
    assert [a for _, a in errors_of(r)] == ["metrics.non_field_errors"]


@pytest.mark.parametrize("key", ["status", "last_heartbeat_at", "owner", "surprise"])
def test_unknown_top_level_keys_are_400(heartbeat, node_and_token, key):
    node, token = node_and_token

    r = heartbeat(token, {"metrics": METRICS, key: "x"})

    assert r.status_code == 400
    assert errors_of(r) == [("read_only_field", key)]
    node.refresh_from_db()
    assert node.status == NodeStatus.OFFLINE


@pytest.mark.parametrize("value", [-1, "many"])
def test_bad_active_requests_is_400(heartbeat, node_and_token, value):
    _, token = node_and_token

    r = heartbeat(token, {"active_requests": value})

    assert r.status_code == 400
    assert [a for _, a in errors_of(r)] == ["active_requests"]


def test_models_in_a_heartbeat_replace_the_nodes_served_models(heartbeat, node_and_token):
    node, token = node_and_token
    models = [
        {"name": "org/b", "input_price_per_million": "0.9", "output_price_per_million": "1.9"},
        {"name": "org/c", "context_window": 32768},
    ]

    r = heartbeat(token, {"metrics": METRICS, "models": models})

    assert r.status_code == 200, r.json()
    now_served = served(node)
    assert set(now_served) == {"org/b", "org/c"}
    assert now_served["org/b"].input_price_per_million == Decimal("0.9")
    assert now_served["org/b"].output_price_per_million == Decimal("1.9")
    assert now_served["org/c"].input_price_per_million == Decimal("0.50")  # the settings' defaults
    assert now_served["org/c"].context_window == 32768


def test_an_empty_model_list_stops_serving_every_model(heartbeat, node_and_token):
    node, token = node_and_token

    r = heartbeat(token, {"models": []})

    assert r.status_code == 200
    assert served(node) == {}


def test_a_heartbeat_without_models_keeps_the_served_models(heartbeat, node_and_token):
    node, token = node_and_token

    heartbeat(token, {"metrics": METRICS})

    assert set(served(node)) == {"org/a", "org/b"}


def test_repeating_the_same_models_changes_nothing(heartbeat, node_and_token):
    node, token = node_and_token
    models = [{"name": "org/a", "input_price_per_million": "0.3"}]
    heartbeat(token, {"models": models})
    first = served(node)["org/a"].pk

    r = heartbeat(token, {"models": models})

    assert r.status_code == 200
    assert served(node)["org/a"].pk == first
    assert served(node)["org/a"].input_price_per_million == Decimal("0.3")


def test_changed_prices_in_a_later_heartbeat_are_applied(heartbeat, node_and_token):
    node, token = node_and_token
    heartbeat(token, {"models": [{"name": "org/a", "input_price_per_million": "0.3"}]})

    heartbeat(token, {"models": [{"name": "org/a", "input_price_per_million": "0.4"}]})

    assert served(node)["org/a"].input_price_per_million == Decimal("0.4")


def test_duplicate_models_in_a_heartbeat_are_400_and_keep_the_old_list(heartbeat, node_and_token):
    node, token = node_and_token

    r = heartbeat(token, {"models": [{"name": "org/x"}, {"name": "org/x"}]})

    assert r.status_code == 400
    assert errors_of(r) == [("duplicate_model", "models")]
    assert set(served(node)) == {"org/a", "org/b"}


def test_a_metric_sample_is_kept_once_per_sample_period(heartbeat, node_and_token, settings):
    node, token = node_and_token
    settings.NODE_METRICS_SAMPLE_EVERY_S = 60

    with time_machine.travel(NOW, tick=False) as traveller:
        assert heartbeat(token, {"metrics": METRICS}).status_code == 200
        assert NodeMetricSample.objects.filter(node=node).count() == 1

        traveller.shift(timedelta(seconds=1))
        assert heartbeat(token, {"metrics": {"gpu_utilization": 99}}).status_code == 200
        assert NodeMetricSample.objects.filter(node=node).count() == 1

        traveller.shift(timedelta(seconds=59))
        assert heartbeat(token, {"metrics": {"gpu_utilization": 55}, "active_requests": 2}).status_code == 200

    samples = list(NodeMetricSample.objects.filter(node=node).order_by("recorded_at"))
    assert len(samples) == 2
    assert samples[0].recorded_at == NOW
    assert samples[0].metrics == METRICS
    assert samples[1].recorded_at == NOW + timedelta(seconds=60)
    assert samples[1].metrics == {"gpu_utilization": 55}
    assert samples[1].active_requests == 2
    node.refresh_from_db()
    assert node.latest_metrics == {"gpu_utilization": 55}


def test_a_second_nodes_samples_are_its_own(heartbeat, provider, node_and_token):
    node, token = node_and_token
    other, other_token = make_node(owner=provider[0])

    heartbeat(token, {"metrics": METRICS})
    heartbeat(other_token, {"metrics": {"gpu_utilization": 1}})

    assert NodeMetricSample.objects.filter(node=node).count() == 1
    assert NodeMetricSample.objects.get(node=other).metrics == {"gpu_utilization": 1}


def test_a_body_that_is_not_an_object_is_400(api_client, node_and_token):
    node, token = node_and_token

    r = api_client.post(HEARTBEAT_URL, [METRICS], format="json", HTTP_AUTHORIZATION=f"Bearer {token}")

    assert r.status_code == 400
    assert errors_of(r)[0][0] == "invalid"
    node.refresh_from_db()
    assert node.status == NodeStatus.OFFLINE


RESULTS = [
    {"id": 1, "status": "succeeded", "output": "started"},
    {"id": 2, "status": "failed", "output": "exit status 1"},
    {"id": 3, "status": "unsupported", "output": "no hook configured for action 'rental_ssh_key'"},
    {"id": 4, "status": "succeeded"},
]


def test_command_results_of_every_status_are_accepted(heartbeat, node_and_token):
    _, token = node_and_token

    r = heartbeat(token, {"metrics": METRICS, "results": RESULTS})

    assert r.status_code == 200, r.json()
    assert r.json()["commands"] == []


def test_the_same_results_sent_again_are_accepted(heartbeat, node_and_token):
    """Agents resend outcomes until a heartbeat carrying them is answered (API.md §3)."""
    _, token = node_and_token

    assert heartbeat(token, {"results": RESULTS}).status_code == 200
    assert heartbeat(token, {"results": RESULTS}).status_code == 200


@pytest.mark.parametrize(
    "result",
    [
        {"id": 1, "status": "done"},
        {"id": 0, "status": "succeeded"},
        {"id": "1", "status": "succeeded"},
        {"status": "succeeded"},
        {"id": 1, "status": "failed", "output": "x" * 8193},
        {"id": 2**90, "status": "succeeded"},  # beyond any id: a 500 on SQLite once (found by the fuzz run)
    ],
)
def test_malformed_results_are_400_naming_results(heartbeat, node_and_token, result):
    _, token = node_and_token

    r = heartbeat(token, {"results": [result]})

    assert r.status_code == 400
    assert all(attr.startswith("results") for _, attr in errors_of(r)), errors_of(r)


def test_a_sample_is_kept_at_the_first_heartbeat_of_each_slot(heartbeat, node_and_token, settings):
    node, token = node_and_token
    settings.NODE_METRICS_SAMPLE_EVERY_S = 60

    for at, expected in [
        (NOW + timedelta(seconds=59), 1),
        (NOW + timedelta(seconds=60), 2),
        (NOW + timedelta(seconds=119), 2),
    ]:
        with time_machine.travel(at, tick=False):
            assert heartbeat(token, {"metrics": METRICS}).status_code == 200
        assert NodeMetricSample.objects.filter(node=node).count() == expected, at
