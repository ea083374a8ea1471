"""The node registry's services, called without HTTP."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from core.errors import DomainError
from llm_models import selectors, services
from llm_models.choices import NodeStatus
from llm_models.endpoint_guard import UnsafeEndpoint
from llm_models.models import LlmModel, Node, NodeMetricSample, NodeModel
from tests.factories import GpuFactory, make_node

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


@pytest.fixture(autouse=True)
def _timeouts(settings):  # type: ignore[no-untyped-def]
    settings.NODE_HEARTBEAT_TIMEOUT_S = 90
    settings.NODE_METRICS_RETENTION_S = 24 * 3600


def ago(seconds: float) -> datetime:
    return NOW - timedelta(seconds=seconds)


# --- node_mark_stale_offline ------------------------------------------------------------------------------


def test_stale_online_nodes_go_offline_and_are_counted(provider):
    owner = provider[0]
    stale, _ = make_node(owner=owner, status=NodeStatus.ONLINE, last_heartbeat_at=ago(91))
    very_stale, _ = make_node(owner=owner, status=NodeStatus.ONLINE, last_heartbeat_at=ago(86400))
    fresh, _ = make_node(owner=owner, status=NodeStatus.ONLINE, last_heartbeat_at=ago(10))
    at_the_limit, _ = make_node(owner=owner, status=NodeStatus.ONLINE, last_heartbeat_at=ago(90))
    already_offline, _ = make_node(owner=owner, status=NodeStatus.OFFLINE, last_heartbeat_at=ago(500))
    gone, _ = make_node(owner=owner, status=NodeStatus.DEREGISTERED, last_heartbeat_at=ago(500))

    flipped = services.node_mark_stale_offline(now=NOW)

    assert flipped == 2
    statuses = dict(Node.objects.values_list("pk", "status"))
    assert statuses == {
        stale.pk: NodeStatus.OFFLINE,
        very_stale.pk: NodeStatus.OFFLINE,
        fresh.pk: NodeStatus.ONLINE,
        at_the_limit.pk: NodeStatus.ONLINE,
        already_offline.pk: NodeStatus.OFFLINE,
        gone.pk: NodeStatus.DEREGISTERED,
    }


def test_marking_stale_nodes_keeps_their_last_heartbeat(provider):
    node, _ = make_node(owner=provider[0], status=NodeStatus.ONLINE, last_heartbeat_at=ago(300))

    services.node_mark_stale_offline(now=NOW)

    node.refresh_from_db()
    assert node.last_heartbeat_at == ago(300)


def test_marking_stale_nodes_twice_is_safe(provider):
    make_node(owner=provider[0], status=NodeStatus.ONLINE, last_heartbeat_at=ago(300))

    assert services.node_mark_stale_offline(now=NOW) == 1
    assert services.node_mark_stale_offline(now=NOW) == 0
    assert Node.objects.get().status == NodeStatus.OFFLINE


def test_the_timeout_comes_from_settings(provider, settings):
    settings.NODE_HEARTBEAT_TIMEOUT_S = 10
    make_node(owner=provider[0], status=NodeStatus.ONLINE, last_heartbeat_at=ago(11))

    assert services.node_mark_stale_offline(now=NOW) == 1


def test_marking_stale_nodes_defaults_to_now(provider):
    make_node(owner=provider[0], status=NodeStatus.ONLINE, last_heartbeat_at=datetime.now(UTC) - timedelta(hours=1))

    assert services.node_mark_stale_offline() == 1


def test_a_node_that_heartbeats_again_comes_back_online(provider):
    node, _ = make_node(owner=provider[0], status=NodeStatus.ONLINE, last_heartbeat_at=ago(300))
    services.node_mark_stale_offline(now=NOW)
    node.refresh_from_db()
    assert not selectors.node_list_live(now=NOW).filter(pk=node.pk).exists()

    services.node_record_heartbeat(node=node, metrics={"gpu_utilization": 5}, now=NOW)

    node.refresh_from_db()
    assert node.status == NodeStatus.ONLINE
    assert node.last_heartbeat_at == NOW
    assert selectors.node_list_live(now=NOW).filter(pk=node.pk).exists()
    assert services.node_mark_stale_offline(now=NOW) == 0


# --- node_metrics_prune -----------------------------------------------------------------------------------


def test_pruning_deletes_only_samples_older_than_the_retention(provider):
    node, _ = make_node(owner=provider[0])
    old = NodeMetricSample.objects.create(node=node, recorded_at=ago(24 * 3600 + 1))
    older = NodeMetricSample.objects.create(node=node, recorded_at=ago(30 * 24 * 3600))
    kept = NodeMetricSample.objects.create(node=node, recorded_at=ago(24 * 3600 - 1))
    recent = NodeMetricSample.objects.create(node=node, recorded_at=ago(5))

    deleted = services.node_metrics_prune(now=NOW)

    assert deleted == 2
    remaining = set(NodeMetricSample.objects.values_list("pk", flat=True))
    assert remaining == {kept.pk, recent.pk}
    assert not remaining & {old.pk, older.pk}
    assert Node.objects.filter(pk=node.pk).exists()


def test_pruning_twice_is_safe(provider):
    node, _ = make_node(owner=provider[0])
    NodeMetricSample.objects.create(node=node, recorded_at=ago(48 * 3600))

    assert services.node_metrics_prune(now=NOW) == 1
    assert services.node_metrics_prune(now=NOW) == 0


# --- node_record_heartbeat / node_deregister ----------------------------------------------------------------


def test_a_heartbeat_racing_a_deregistration_does_not_resurrect_the_node(provider):
    node, _ = make_node(owner=provider[0], status=NodeStatus.ONLINE, last_heartbeat_at=ago(5))
    authenticated_copy = Node.objects.get(pk=node.pk)  # loaded before the deregistration committed
    services.node_deregister(node=node, now=NOW)

    with pytest.raises(services.NodeDeregistered):
        services.node_record_heartbeat(node=authenticated_copy, metrics={}, now=NOW)

    node.refresh_from_db()
    assert node.status == NodeStatus.DEREGISTERED
    assert not NodeMetricSample.objects.exists()


def test_deregistering_twice_keeps_the_first_time(provider):
    node, _ = make_node(owner=provider[0], status=NodeStatus.ONLINE)

    services.node_deregister(node=node, now=NOW)
    services.node_deregister(node=node, now=NOW + timedelta(hours=1))

    node.refresh_from_db()
    assert node.status == NodeStatus.DEREGISTERED
    assert node.deregistered_at == NOW


def test_deregistering_all_of_an_owners_nodes_leaves_other_owners_alone(provider, other_provider):
    make_node(owner=provider[0], status=NodeStatus.ONLINE)
    make_node(owner=provider[0], status=NodeStatus.OFFLINE)
    make_node(owner=provider[0], status=NodeStatus.DEREGISTERED)
    theirs, _ = make_node(owner=other_provider[0], status=NodeStatus.ONLINE)

    assert services.node_deregister_all_of_owner(owner=provider[0]) == 2
    assert set(Node.objects.filter(owner=provider[0]).values_list("status", flat=True)) == {NodeStatus.DEREGISTERED}
    theirs.refresh_from_db()
    assert theirs.status == NodeStatus.ONLINE


# --- node_register / node_sync_models ---------------------------------------------------------------------


def test_register_refuses_an_unsafe_endpoint_and_creates_nothing(provider, settings):
    settings.ALLOW_PRIVATE_NODE_ENDPOINTS = False

    with pytest.raises(UnsafeEndpoint):
        services.node_register(owner=provider[0], name="n", endpoint_url="http://10.0.0.1/v1")

    assert not Node.objects.exists()


def test_register_refuses_another_owners_gpu(provider, other_provider):
    gpu = GpuFactory(user=other_provider[0].user)

    with pytest.raises(DomainError) as exc:
        services.node_register(owner=provider[0], name="n", endpoint_url="http://93.184.216.34/v1", gpu=gpu)

    assert exc.value.attr == "gpu"
    assert not Node.objects.exists()


def test_register_without_models_serves_nothing(provider):
    registered = services.node_register(owner=provider[0], name="n", endpoint_url="http://93.184.216.34/v1")

    assert registered.raw_token.startswith("gmn_")
    assert registered.node.status == NodeStatus.OFFLINE
    assert not NodeModel.objects.exists()


def test_syncing_models_adds_updates_and_removes(provider):
    node, _ = make_node(owner=provider[0], models=["org/keep", "org/drop"])

    services.node_sync_models(
        node=node,
        models=[
            {"name": "org/keep", "input_price_per_million": Decimal("7"), "output_price_per_million": Decimal("8")},
            {"name": "org/new", "context_window": 1024},
        ],
    )

    rows = {nm.model.name: nm for nm in NodeModel.objects.filter(node=node).select_related("model")}
    assert set(rows) == {"org/keep", "org/new"}
    assert rows["org/keep"].input_price_per_million == Decimal("7")
    assert rows["org/new"].context_window == 1024
    # The model record of a model no longer served stays: other nodes and past inferences may name it.
    assert LlmModel.objects.filter(name="org/drop").exists()
    node.refresh_from_db()
    assert node.models_digest
