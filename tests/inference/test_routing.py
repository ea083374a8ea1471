"""Routing picks the best live node for a model and says 404 or 503 when there is none."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from clients import ledger
from clients.choices import ClientRole
from inference.choices import InferenceStatus
from inference.errors import ModelNotFound, NoCapacity
from inference.models import InferenceRequest
from inference.routing import route
from llm_models import services as node_services
from llm_models.choices import NodeStatus
from llm_models.models import Node
from rentals.services import rental_start
from tests.factories import GpuFactory, make_client, make_requests, rows_read
from tests.inference.conftest import MODEL, live_node, stale


def test_an_unknown_model_is_model_not_found(db):
    with pytest.raises(ModelNotFound):
        route(model="nobody/serves-this")


def test_a_known_model_without_live_nodes_is_no_capacity_with_a_retry_after(provider):
    node = live_node(owner=provider[0])
    stale(node)

    with pytest.raises(NoCapacity) as exc:
        route(model=MODEL)
    assert exc.value.status == 503
    assert exc.value.retry_after > 0


def test_the_faster_node_wins(provider):
    slow = live_node(owner=provider[0], latency_ewma_ms=900.0)
    fast = live_node(owner=provider[0], latency_ewma_ms=100.0)

    assert [c.node_id for c in route(model=MODEL)] == [fast.pk, slow.pk]


def test_the_less_loaded_node_wins(provider):
    busy = live_node(owner=provider[0], active_requests=8)
    idle = live_node(owner=provider[0], active_requests=0)

    assert route(model=MODEL)[0].node_id == idle.pk
    assert busy.pk in [c.node_id for c in route(model=MODEL)]


def test_the_cheaper_node_wins(provider):
    dear = live_node(owner=provider[0], input_price="3.00", output_price="9.00")
    cheap = live_node(owner=provider[0], input_price="1.00", output_price="2.00")

    assert [c.node_id for c in route(model=MODEL)] == [cheap.pk, dear.pk]
    assert route(model=MODEL)[0].input_price_per_million == Decimal("1.00")


def test_offline_deregistered_and_revoked_nodes_are_never_chosen(provider):
    offline = live_node(owner=provider[0])
    Node.objects.filter(pk=offline.pk).update(status=NodeStatus.OFFLINE)
    gone = live_node(owner=provider[0])
    Node.objects.filter(pk=gone.pk).update(status=NodeStatus.DEREGISTERED)
    revoked_owner, _ = make_client(role=ClientRole.GPU_PROVIDER, approved=False)
    live_node(owner=revoked_owner)
    good = live_node(owner=provider[0])

    assert [c.node_id for c in route(model=MODEL)] == [good.pk]


def test_a_rented_node_is_never_chosen_and_alone_leaves_no_capacity(provider, user_client):
    rented = live_node(owner=provider[0], latency_ewma_ms=50.0, gpu=GpuFactory(user=provider[0].user))
    free = live_node(owner=provider[0], latency_ewma_ms=900.0, input_price="3.00", output_price="9.00")
    assert route(model=MODEL)[0].node_id == rented.pk  # the better node, until it is rented
    ledger.credit(client_id=user_client[0].pk, amount=Decimal("100"), key="routing-test-funds")

    rental_start(client=user_client[0], node_id=rented.pk, hours=1)

    assert [c.node_id for c in route(model=MODEL)] == [free.pk]
    Node.objects.filter(pk=free.pk).update(status=NodeStatus.OFFLINE)
    with pytest.raises(NoCapacity):
        route(model=MODEL)


def test_a_node_cooling_down_is_skipped_and_its_cooldown_grows_then_resets(provider):
    node = live_node(owner=provider[0])
    now = timezone.now()

    first = node_services.node_record_failure(node_id=node.pk, now=now)
    second = node_services.node_record_failure(node_id=node.pk, now=now)

    assert (second - now) == 2 * (first - now)
    with pytest.raises(NoCapacity) as exc:
        route(model=MODEL, now=now)
    assert exc.value.retry_after == int((second - now).total_seconds())
    node_services.node_record_success(node_id=node.pk, latency_ms=250)
    node.refresh_from_db()
    assert (node.consecutive_failures, node.cooldown_until, node.latency_ewma_ms) == (0, None, 250.0)
    assert route(model=MODEL, now=now + timedelta(seconds=1))[0].node_id == node.pk


def test_latency_is_smoothed(provider, settings):
    settings.INFERENCE_LATENCY_EWMA_ALPHA = 0.5
    node = live_node(owner=provider[0], latency_ewma_ms=100.0)

    node_services.node_record_success(node_id=node.pk, latency_ms=300)

    node.refresh_from_db()
    assert node.latency_ewma_ms == 200.0


def test_our_running_requests_are_load_and_finished_ones_are_not(provider):
    running = live_node(owner=provider[0])
    finished = live_node(owner=provider[0])
    make_requests(client=provider[0], node=running, status=InferenceStatus.RUNNING, count=3)
    make_requests(client=provider[0], node=finished, status=InferenceStatus.COMPLETED, count=20)
    make_requests(client=provider[0], node=finished, status=InferenceStatus.FAILED, count=5)

    assert [c.node_id for c in route(model=MODEL)] == [finished.pk, running.pk]


def test_routing_reads_only_the_running_requests_however_many_a_node_served(provider):
    """The in-flight count must not read a node's whole history: routing runs for every request (cached for a
    second on the lean door), and a node serves millions of requests."""
    node = live_node(owner=provider[0])
    make_requests(client=provider[0], node=node, status=InferenceStatus.COMPLETED, count=3000)
    make_requests(client=provider[0], node=node, status=InferenceStatus.RUNNING, count=2)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE inference_inferencerequest")

    with CaptureQueriesContext(connection) as queries:
        assert [c.node_id for c in route(model=MODEL)] == [node.pk]
    (query,) = queries.captured_queries

    assert rows_read(query["sql"], InferenceRequest._meta.db_table) <= 2
