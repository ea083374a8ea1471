"""Every admin page fit for an operator: money as money, no Add/Delete where it only shows, no secrets."""

from decimal import Decimal

import pytest

from clients import ledger
from clients.models import ApiKey
from llm_models.choices import NodeCommandAction, NodeCommandStatus
from llm_models.models import Node, NodeCommand
from tests.console.helpers import metric_samples, nodes_in_every_state, paid_request
from tests.inference.conftest import fund

VIEW_ONLY = [
    "/admin/clients/ledgertransaction/",
    "/admin/clients/ledgerentry/",
    "/admin/clients/ledgeraccount/",
    "/admin/clients/hold/",
    "/admin/inference/inferencerequest/",
    "/admin/inference/noderevenue/",
    "/admin/llm_models/nodemetricsample/",
    "/admin/llm_models/nodecommand/",
    "/admin/rentals/rental/",
]


@pytest.fixture
def browser(client, admin):  # type: ignore[no-untyped-def]
    client.force_login(admin[0].user)
    return client


@pytest.mark.parametrize("url", VIEW_ONLY)
def test_view_only_pages_offer_neither_add_nor_delete(browser, url, provider, user_client):
    fund(user_client[0], "5.00")
    paid_request(payer=user_client[0], node=nodes_in_every_state(provider[0])["live"], cost="1.00", key="v1")

    page = browser.get(url).content.decode()

    assert f'href="{url}add/"' not in page
    assert "delete_selected" not in page
    assert browser.get(f"{url}add/").status_code == 403


def test_balances_and_ledger_amounts_are_money(browser, provider, user_client):
    fund(user_client[0], "25.029155")

    clients = browser.get("/admin/clients/client/").content.decode()
    entries = browser.get("/admin/clients/ledgerentry/").content.decode()

    assert '<span class="money">25.03</span>' in clients
    assert "25.0291550000000" not in clients and "25.029155" not in clients
    assert '<span class="money">25.029155</span>' in entries  # the ledger keeps its 6 places


def test_the_nodes_list_shows_health_heartbeat_models_and_gpu_metrics(browser, provider):
    nodes = nodes_in_every_state(provider[0])
    Node.objects.filter(pk=nodes["live"].pk).update(
        latest_metrics={"gpu_utilization": 37.0, "gpu_memory_used_mb": 20480, "gpu_memory_total_mb": 81920}
    )

    page = browser.get("/admin/llm_models/node/").content.decode()
    failing = browser.get("/admin/llm_models/node/?health=failing").content.decode()

    assert ">live<" in page and ">offline<" in page and ">live · failing<" in page
    assert "failing: no new work for 4" in page
    assert "org/a" in page
    assert "37 %" in page and "20/80 GB" in page
    assert " s ago</time>" in page and "2 h ago</time>" in page
    assert "live-failing" in failing and "live-a" not in failing


def test_a_node_page_has_its_metrics_history_and_no_digests_or_internal_counters(browser, provider):
    node = nodes_in_every_state(provider[0])["live"]
    Node.objects.filter(pk=node.pk).update(latency_ewma_ms=1.3361399999999999, models_digest="d" * 64)
    metric_samples(node, [10.0, 55.5, 90.0])
    node.refresh_from_db()

    page = browser.get(f"/admin/llm_models/node/{node.pk}/change/").content.decode()

    assert '<canvas id="node-metrics-chart"' in page
    assert '"gpu_utilization": 55.5' in page  # the samples the chart is drawn from
    assert "3 samples" in page
    assert node.token_digest not in page and "d" * 64 not in page
    assert "1.3361399999999999" not in page and "1 ms" in page
    assert "deletelink" not in page and "Delete?" not in page


def test_api_keys_show_masked_never_their_digest(browser, user_client):
    key = ApiKey.objects.get(client=user_client[0])

    page = browser.get(f"/admin/clients/apikey/{key.pk}/change/").content.decode()

    assert key.digest not in page
    assert key.masked in page


def test_a_command_of_an_ended_rental_shows_both_statuses_as_they_are(browser, provider, user_client):
    from datetime import timedelta

    from django.utils import timezone

    from rentals.models import Rental

    node = nodes_in_every_state(provider[0])["live"]
    now = timezone.now()
    rental = Rental.objects.create(
        client=user_client[0], node=node, status="cancelled", hours=1, price_per_hour=Decimal("1"), total=Decimal("1"),
        starts_at=now - timedelta(minutes=30), ends_at=now + timedelta(minutes=30), ended_at=now,
    )  # fmt: skip
    NodeCommand.objects.create(
        node=node, rental=rental, action=NodeCommandAction.START, status=NodeCommandStatus.RUNNING
    )

    page = browser.get("/admin/llm_models/nodecommand/?rental_state=ended").content.decode()

    assert '<td class="field-status">Running</td>' in page
    assert '<td class="field-rental_status">Cancelled</td>' in page


def test_hold_pages_show_what_is_still_held(browser, user_client):
    fund(user_client[0], "5.00")
    ledger.hold_place(client_id=user_client[0].pk, amount=Decimal("1.5"), key="still-held")

    page = browser.get("/admin/clients/hold/").content.decode()

    assert page.count('<span class="money">1.500000</span>') == 2  # amount and still held
