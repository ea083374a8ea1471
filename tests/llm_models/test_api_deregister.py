"""DELETE /api/v1/llm_models/deregister/ (API.md §3): the node leaves routing for good; its history stays."""

from datetime import UTC, datetime

import time_machine
from django.utils import timezone

from llm_models.choices import NodeStatus
from llm_models.models import Node, NodeMetricSample, NodeModel
from tests.conftest import bearer
from tests.factories import make_node
from tests.llm_models.conftest import ALL_MODELS_URL, DEREGISTER_URL, errors_of

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def live_node(owner, **fields):  # type: ignore[no-untyped-def]
    return make_node(owner=owner, status=NodeStatus.ONLINE, last_heartbeat_at=timezone.now(), **fields)


def test_node_deregisters_with_its_token(api_client, provider):
    node, token = live_node(provider[0], models=["org/a"])
    NodeMetricSample.objects.create(node=node, recorded_at=timezone.now(), metrics={"gpu_utilization": 1})

    with time_machine.travel(NOW, tick=False):
        r = api_client.delete(DEREGISTER_URL, **bearer(token))

    assert r.status_code == 204
    assert r.content == b""
    node.refresh_from_db()
    assert node.status == NodeStatus.DEREGISTERED
    assert node.deregistered_at == NOW
    assert node.active_requests == 0
    # The row and its history stay.
    assert Node.objects.filter(pk=node.pk).exists()
    assert NodeMetricSample.objects.filter(node=node).count() == 1
    assert NodeModel.objects.filter(node=node).count() == 1


def test_node_token_in_the_body_works(api_client, provider):
    node, token = live_node(provider[0])

    r = api_client.delete(DEREGISTER_URL, {"node_token": token}, format="json")

    assert r.status_code == 204
    node.refresh_from_db()
    assert node.status == NodeStatus.DEREGISTERED


def test_the_token_stops_working_after_deregistering(api_client, heartbeat, provider):
    node, token = live_node(provider[0])
    api_client.delete(DEREGISTER_URL, **bearer(token))

    assert heartbeat(token, {"metrics": {}}).status_code == 401
    assert api_client.delete(DEREGISTER_URL, **bearer(token)).status_code == 401
    node.refresh_from_db()
    assert node.status == NodeStatus.DEREGISTERED


def test_the_node_leaves_all_models_at_once(api_client, provider):
    _, token = live_node(provider[0], models=["org/only-here"])
    assert [m["name"] for m in api_client.get(ALL_MODELS_URL).json()["results"]] == ["org/only-here"]

    api_client.delete(DEREGISTER_URL, **bearer(token))

    assert api_client.get(ALL_MODELS_URL).json()["results"] == []


def test_deregistering_one_node_leaves_the_others(api_client, provider):
    _, token = live_node(provider[0], models=["org/a"])
    other, _ = live_node(provider[0], models=["org/a"])

    api_client.delete(DEREGISTER_URL, **bearer(token))

    other.refresh_from_db()
    assert other.status == NodeStatus.ONLINE
    assert api_client.get(ALL_MODELS_URL).json()["results"][0]["live_nodes"] == 1


def test_deregister_without_a_token_is_401(api_client, provider):
    node, _ = live_node(provider[0])

    r = api_client.delete(DEREGISTER_URL)

    assert r.status_code == 401
    assert errors_of(r) == [("not_authenticated", None)]
    node.refresh_from_db()
    assert node.status == NodeStatus.ONLINE


def test_deregister_with_a_wrong_token_is_401(api_client, provider):
    node, _ = live_node(provider[0])

    r = api_client.delete(DEREGISTER_URL, **bearer("gmn_wrong"))

    assert r.status_code == 401
    node.refresh_from_db()
    assert node.status == NodeStatus.ONLINE


def test_a_client_api_key_cannot_deregister_a_node(api_client, provider):
    node, _ = live_node(provider[0])

    r = api_client.delete(DEREGISTER_URL, **bearer(provider[1]))

    assert r.status_code == 401
    node.refresh_from_db()
    assert node.status == NodeStatus.ONLINE


def test_one_nodes_token_deregisters_only_that_node(api_client, provider, other_provider):
    _, token = live_node(provider[0])
    others, _ = live_node(other_provider[0])

    api_client.delete(DEREGISTER_URL, **bearer(token))

    others.refresh_from_db()
    assert others.status == NodeStatus.ONLINE
