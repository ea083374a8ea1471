"""Finding a machine (API.md §14): GET regions/ and GET rentals/offers/ with filters, ordering and reliability."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from gpus.models import Gpu
from llm_models.choices import NodeStatus
from llm_models.models import Node, NodeMetricSample
from llm_models.services import metrics_slot_start
from rentals import services
from tests.conftest import bearer
from tests.factories import make_client
from tests.llm_models.conftest import errors_of
from tests.rentals.conftest import make_rentable_node

OFFERS_URL = "/api/v1/rentals/offers/"
REGIONS_URL = "/api/v1/regions/"


def live_for(node: Node, minutes: int) -> None:
    """Registered two days ago, heard in `minutes` of the last 1440 whole minutes."""
    Node.objects.filter(pk=node.pk).update(registered_at=timezone.now() - timedelta(days=2))
    current = metrics_slot_start(timezone.now())
    NodeMetricSample.objects.bulk_create(
        NodeMetricSample(node=node, recorded_at=current - timedelta(minutes=i + 1)) for i in range(minutes)
    )


@pytest.fixture
def market(operator):  # type: ignore[no-untyped-def]
    """Three live nodes: an H100 x8 in eu-west at 2.50, an A100 x4 in us-east at 1.20 (40 GB), an H100 x1 in
    us-east at 3.00 with discounts and containers; reliability 0.5, 1.0 and 0.25."""
    h100, _ = make_rentable_node(operator, region="eu-west")
    a100, _ = make_rentable_node(operator, region="us-east", price_per_hour=Decimal("1.2"))
    Gpu.objects.filter(pk=a100.gpu_id).update(gpu_model="A100", gpu_count=4, gpu_memory_gb=40, region="us-east")
    small, _ = make_rentable_node(
        operator, region="us-east", price_per_hour=Decimal("3"), capabilities=["containers", "inference"]
    )
    Gpu.objects.filter(pk=small.gpu_id).update(
        gpu_count=1, discount_daily=Decimal("0.05"), discount_weekly=Decimal("0.1"), discount_monthly=Decimal("0.2")
    )
    live_for(h100, 720)
    live_for(a100, 1440)
    live_for(small, 360)
    return h100, a100, small


def node_ids(api_client, query: str = "") -> list[int]:  # type: ignore[no-untyped-def]
    r = api_client.get(f"{OFFERS_URL}{query}")
    assert r.status_code == 200, r.json()
    return [row["node_id"] for row in r.json()["results"]]


def test_offers_list_one_row_per_rentable_node_with_its_figures(api_client, market):
    h100, a100, small = market

    r = api_client.get(OFFERS_URL)

    assert r.status_code == 200
    rows = {row["node_id"]: row for row in r.json()["results"]}
    assert r.json()["count"] == 3
    assert rows[small.pk] == {
        "node_id": small.pk,
        "gpu_model": "H100",
        "gpu_count": 1,
        "gpu_memory_gb": 80,
        "region": "us-east",
        "price_per_hour": "3.000000",
        "discounts": {"daily": "0.050", "weekly": "0.100", "monthly": "0.200"},
        "reliability": 0.25,
        "capabilities": ["containers", "inference"],
    }
    assert (rows[h100.pk]["reliability"], rows[a100.pk]["reliability"]) == (0.5, 1.0)
    assert rows[h100.pk]["capabilities"] == ["inference"]


def test_offers_leave_out_rented_offline_and_unpriced_nodes(api_client, market, operator, renter):
    h100, a100, small = market
    services.rental_start(client=renter[0], node_id=h100.pk, hours=1)
    Node.objects.filter(pk=a100.pk).update(status=NodeStatus.OFFLINE)
    unpriced, _ = make_rentable_node(operator, price_per_hour=Decimal("0"))

    assert node_ids(api_client) == [small.pk]
    assert unpriced.pk not in node_ids(api_client)


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("?gpu_model=h100", ["h100", "small"]),
        ("?region=US-EAST", ["a100", "small"]),
        ("?gpu_count__gte=4", ["a100", "h100"]),
        ("?gpu_memory_gb__gte=80", ["h100", "small"]),
        ("?price_per_hour__lte=2.5", ["a100", "h100"]),
        ("?reliability__gte=0.5", ["a100", "h100"]),
        ("?gpu_model=H100&region=us-east", ["small"]),
        ("?ordering=price_per_hour", ["a100", "h100", "small"]),
        ("?ordering=-reliability", ["a100", "h100", "small"]),
        ("?ordering=-price_per_hour", ["small", "h100", "a100"]),
    ],
)
def test_offers_filter_and_order(api_client, market, query, expected):
    names = dict(zip(market, ("h100", "a100", "small"), strict=True))
    by_name = {name: node.pk for node, name in names.items()}

    got = node_ids(api_client, query)

    if "ordering" in query:
        assert got == [by_name[n] for n in expected]
    else:
        assert sorted(got) == sorted(by_name[n] for n in expected)


@pytest.mark.parametrize(
    ("query", "attr"),
    [
        ("?gpu_count__gte=many", "gpu_count__gte"),
        ("?price_per_hour__lte=cheap", "price_per_hour__lte"),
        ("?reliability__gte=2", "reliability__gte"),
        ("?gpu_memory_gb__gte=1.5", "gpu_memory_gb__gte"),
    ],
)
def test_offers_refuse_bad_filter_values_naming_them(api_client, market, query, attr):
    r = api_client.get(f"{OFFERS_URL}{query}")

    assert r.status_code == 400
    assert [a for _, a in errors_of(r)] == [attr]


def test_offers_are_paginated(api_client, market):
    r = api_client.get(f"{OFFERS_URL}?page_size=2&ordering=price_per_hour")

    assert (r.json()["count"], len(r.json()["results"])) == (3, 2)
    assert r.json()["next"] is not None


def test_regions_count_nodes_and_what_is_free_with_their_gpu_models(api_client, market, renter):
    small = market[2]
    services.rental_start(client=renter[0], node_id=small.pk, hours=1)
    _, key = make_client()

    r = api_client.get(REGIONS_URL, **bearer(key))

    assert r.status_code == 200
    assert r.json()["results"] == [
        {"region": "eu-west", "nodes_total": 1, "nodes_available": 1, "gpu_models": ["H100"]},
        {"region": "us-east", "nodes_total": 2, "nodes_available": 1, "gpu_models": ["A100", "H100"]},
    ]
    assert api_client.get(REGIONS_URL).status_code == 200  # public, like the inventory


def test_a_node_declares_capabilities_at_register_and_in_heartbeats(api_client, provider, private_endpoints):
    from tests.llm_models.conftest import HEARTBEAT_URL

    key = provider[1]
    r = api_client.post(
        "/api/v1/llm_models/register/",
        {"name": "box", "endpoint_url": "http://127.0.0.1:9/v1", "capabilities": ["containers", "inference"]},
        format="json",
        **bearer(key),
    )
    assert r.status_code == 201, r.json()
    node = Node.objects.get(pk=r.json()["node_id"])
    assert node.capabilities == ["containers", "inference"]

    beat = api_client.post(
        HEARTBEAT_URL, {"capabilities": ["training"]}, format="json", **bearer(r.json()["node_token"])
    )
    assert beat.status_code == 200
    node.refresh_from_db()
    assert node.capabilities == ["training"]
    bad = api_client.post(HEARTBEAT_URL, {"capabilities": ["mining"]}, format="json", **bearer(r.json()["node_token"]))
    assert (bad.status_code, errors_of(bad)) == (400, [("invalid_choice", "capabilities.0")])


def test_a_node_that_declares_nothing_serves_inference(operator):
    node, _ = make_rentable_node(operator)

    assert node.capabilities == ["inference"]


def test_more_than_eight_capabilities_are_a_400_even_when_repeated(api_client, operator):
    from tests.llm_models.conftest import HEARTBEAT_URL

    _, token = make_rentable_node(operator)

    r = api_client.post(HEARTBEAT_URL, {"capabilities": ["training"] * 9}, format="json", **bearer(token))

    assert (r.status_code, errors_of(r)) == (400, [("max_length", "capabilities")])
