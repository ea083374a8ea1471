"""GET stats/ figures, the no-secrets walk over every market endpoint, query-count bounds, and the admin columns."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.core.cache import cache
from django.utils import timezone

from clients import ledger
from core.crypto import encrypt
from inference.choices import InferenceStatus
from llm_models.choices import NodeStatus
from llm_models.models import NodeMetricSample
from llm_models.services import node_deregister
from tests.factories import GpuFactory, LlmModelFactory, make_node
from tests.market.helpers import completed, live_node, serve


def pay(payer, operator, charge: str, key: str) -> None:  # type: ignore[no-untyped-def]
    """A charge as the inference service makes it: hold, then settle with the node's owner as operator."""
    ledger.credit(client_id=payer.pk, amount=Decimal("100"), key=f"top-up:{key}")
    ledger.hold_place(client_id=payer.pk, amount=Decimal("10"), key=key)
    ledger.hold_settle(key=key, charge=Decimal(charge), kind="inference", operator_id=operator.pk)


def test_stats_count_nodes_gpus_models_inferences_latency_and_revenue(
    api_client, provider, other_provider, user_client
):
    a = live_node(provider[0], gpu_model="H100", gpu_count=8)
    b = live_node(other_provider[0], gpu_model="A100", gpu_count=4)
    live_node(provider[0], gpu=a.gpu)  # a second node on the same machine: its GPUs count once
    make_node(owner=provider[0], status=NodeStatus.OFFLINE, gpu=GpuFactory(user=provider[0].user, gpu_count=2))
    gone = live_node(provider[0])
    node_deregister(node=gone)
    serve(a, "org/llama")
    serve(b, "org/mistral")
    LlmModelFactory(name="org/idle")
    completed(a, latency_ms=100)
    completed(a, latency_ms=300)
    completed(b, latency_ms=1, status=InferenceStatus.FAILED)
    completed(a, latency_ms=5000, finished_at=timezone.now() - timedelta(days=3))
    pay(user_client[0], provider[0], "1.000000", "inference:1")
    pay(user_client[0], other_provider[0], "0.100000", "inference:2")
    pay(provider[0], provider[0], "1.000000", "inference:3")  # a provider using its own node earns nothing

    body = api_client.get("/api/v1/stats/").json()

    assert body["nodes"] == {"total": 4, "live": 3}
    assert body["gpus"] == {"total_machines": 3, "live_machines": 2, "live_gpus": 12}
    assert body["models"] == {"total": 3, "live": 2}
    assert body["inferences"] == {"today": 2, "total": 3}
    assert body["average_latency_ms"] == 200.0
    assert body["revenue"] == {"operator": "0.770000", "platform": "0.525000", "treasury": "0.105000"}


def test_stats_are_served_from_the_cache_for_market_stats_cache_s(
    api_client, provider, user_client, settings, django_assert_max_num_queries
):
    """The totals read every completed request and ledger line: anyone calling stats/ as often as they like costs
    one computation per MARKET_STATS_CACHE_S."""
    settings.MARKET_STATS_CACHE_S = 60
    node = live_node(provider[0])
    completed(node, latency_ms=100)
    assert api_client.get("/api/v1/stats/").json()["inferences"]["total"] == 1

    completed(node, latency_ms=100)
    pay(user_client[0], provider[0], "1.000000", "inference:cached")
    with django_assert_max_num_queries(0):
        body = api_client.get("/api/v1/stats/").json()
    assert body["inferences"]["total"] == 1, "stats up to MARKET_STATS_CACHE_S old are served"
    assert body["revenue"]["operator"] == "0.000000"

    cache.clear()  # what the timeout does
    body = api_client.get("/api/v1/stats/").json()
    assert body["inferences"]["total"] == 2
    assert body["revenue"]["operator"] == "0.700000"


def test_admin_shows_node_uptime_and_latency_and_provider_earnings(client, admin, provider, user_client):
    node = live_node(provider[0])
    completed(node, latency_ms=250)
    pay(user_client[0], provider[0], "2.000000", "inference:1")
    client.force_login(admin[0].user)

    nodes = client.get("/admin/llm_models/node/").content.decode().lower()
    node_page = client.get(f"/admin/llm_models/node/{node.pk}/change/").content.decode().lower()
    clients = client.get("/admin/clients/client/").content.decode()
    provider_page = client.get(f"/admin/clients/client/{provider[0].pk}/change/").content.decode()

    assert "250 ms" in nodes and "uptime 1 day" in nodes
    assert "250 ms" in node_page and "uptime 5 min" in node_page
    assert "1.400000" in clients
    assert "1.400000" in provider_page


def test_stats_and_admin_count_charges_paid_from_a_lease(
    api_client, client, admin, provider, other_provider, user_client
):
    """The /v1 lean path charges an open hold (a lease) with usage transactions: counted as settles are."""
    payer, operator = user_client[0], provider[0]
    ledger.credit(client_id=payer.pk, amount=Decimal("100"), key="top-up:lease")
    ledger.hold_place(client_id=payer.pk, amount=Decimal("10"), key="lease:x")
    ledger.hold_consume(
        key="lease:x",
        use_key="u1",
        charges=[ledger.Charge(Decimal("2.000000"))],
        kind="inference",
        operator_id=operator.pk,
    )
    ledger.hold_release(key="lease:x")  # the rest back to the payer: no revenue
    # Work delivered after the lease closed is charged from the payer's balance (the caller's choice, as
    # inference/journal/entries.py makes it): still revenue.
    ledger.hold_consume(
        key="lease:x",
        use_key="u2",
        charges=[ledger.Charge(Decimal("1.000000"))],
        kind="inference",
        operator_id=operator.pk,
        from_balance_if_closed=True,
    )
    pay(payer, other_provider[0], "1.000000", "inference:1")  # a settle beside them
    ledger.credit(client_id=operator.pk, amount=Decimal("100"), key="top-up:own")
    ledger.hold_place(client_id=operator.pk, amount=Decimal("10"), key="lease:own")
    ledger.hold_consume(
        key="lease:own",
        use_key="own",
        charges=[ledger.Charge(Decimal("1.000000"))],
        kind="inference",
        operator_id=operator.pk,
    )  # own node
    client.force_login(admin[0].user)

    body = api_client.get("/api/v1/stats/").json()
    clients = client.get("/admin/clients/client/").content.decode()
    provider_page = client.get(f"/admin/clients/client/{operator.pk}/change/").content.decode()

    assert body["revenue"] == {"operator": "2.800000", "platform": "1.250000", "treasury": "0.250000"}
    assert "2.100000" in clients and "0.700000" in clients
    assert "2.100000" in provider_page


# --- No secrets ------------------------------------------------------------------------------------------------------

ENDPOINT = "http://secret-node.example.net:8000/v1"
BACKEND_KEY = "sk-backend-very-secret-0123456789"


def test_no_market_endpoint_shows_a_secret(api_client, user_client):
    from clients.choices import ClientRole
    from tests.factories import make_client

    owner, owner_key = make_client(role=ClientRole.GPU_PROVIDER, approved=True, email="operator-secret@example.com")
    node, raw_token = make_node(
        owner=owner,
        status=NodeStatus.ONLINE,
        last_heartbeat_at=timezone.now(),
        endpoint_url=ENDPOINT,
        backend_api_key_encrypted=encrypt(BACKEND_KEY),
        gpu=GpuFactory(user=owner.user),
        models=["org/llama"],
        latest_metrics={"gpu_utilization": 1},
    )
    NodeMetricSample.objects.create(node=node, recorded_at=timezone.now(), metrics={"gpu_utilization": 1})
    completed(node, latency_ms=100, client=user_client[0])
    pay(user_client[0], owner, "1.000000", "inference:1")
    model_id = node.node_models.get().model_id
    secrets = [
        ENDPOINT,
        "secret-node.example.net",
        raw_token,
        node.token_digest,
        BACKEND_KEY,
        node.backend_api_key_encrypted,
        owner.user.email,
        owner_key,
        user_client[1],
        user_client[0].user.email,
    ]
    urls = [
        "/api/v1/models/",
        f"/api/v1/models/{model_id}/",
        f"/api/v1/models/{model_id}/providers/",
        "/api/v1/nodes/",
        f"/api/v1/nodes/{node.pk}/",
        f"/api/v1/nodes/{node.pk}/monitoring/",
        "/api/v1/stats/",
    ]

    for url in urls:
        r = api_client.get(url)
        assert r.status_code == 200, url
        text = r.content.decode()
        assert str(node.pk) in text or url.endswith(("stats/", "models/", f"{model_id}/")), url
        for secret in secrets:
            assert secret not in text, (url, secret)


# --- Query counts ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("nodes", [1, 8])
def test_lists_take_a_fixed_number_of_queries(api_client, provider, django_assert_max_num_queries, nodes):
    for _ in range(nodes):
        node = live_node(provider[0], gpu_model="H100")
        serve(node, "org/llama")
        serve(node, "org/mistral")
        completed(node, latency_ms=100)
        NodeMetricSample.objects.create(node=node, recorded_at=timezone.now() - timedelta(minutes=1))
    model_id = node.node_models.first().model_id

    for url, most in [
        ("/api/v1/models/", 2),  # count, page
        (f"/api/v1/models/{model_id}/", 1),
        (f"/api/v1/models/{model_id}/providers/", 3),  # the model, count, page
        ("/api/v1/nodes/", 3),  # count, page, served models
        (f"/api/v1/nodes/{node.pk}/", 2),
        (f"/api/v1/nodes/{node.pk}/monitoring/", 3),  # node, count, page
        ("/api/v1/stats/", 8),
    ]:
        with django_assert_max_num_queries(most):
            assert api_client.get(url).status_code == 200, url
