"""The admin index is the operator's console: its figures are what the database holds (docs/API.md §16)."""

import re
from decimal import Decimal

import pytest

from clients import ledger
from console.models import Reconciliation
from console.tasks import ledger_reconcile
from core.formatting import money
from tests.console.helpers import nodes_in_every_state, paid_request
from tests.factories import make_client
from tests.inference.conftest import fund


def figures(page: str) -> dict[str, str]:
    """The console's figures by name (`data-figure`), as the page shows them."""
    found = {}
    for name, body in re.findall(r'data-figure="([a-z_]+)">(.*?)</', page, flags=re.S):
        found.setdefault(name, re.sub(r"<[^>]+>", "", body).strip())
    return found


@pytest.fixture
def browser(client, admin):  # type: ignore[no-untyped-def]
    client.force_login(admin[0].user)
    return client


def test_console_counts_applications_nodes_and_holds(browser, applicant, provider, user_client):
    make_client(role="gpu_provider", approved=False)
    nodes_in_every_state(provider[0])
    fund(user_client[0], "5.00")
    ledger.hold_place(client_id=user_client[0].pk, amount=Decimal("1.25"), key="console-open-hold")

    page = browser.get("/admin/").content.decode()

    shown = figures(page)
    assert shown["applications_waiting"] == "2"
    assert (shown["nodes_live"], shown["nodes_offline"], shown["nodes_failing"]) == ("2", "1", "1")
    assert shown["nodes_rented"] == "0"
    assert (shown["open_holds"], shown["held"]) == ("1", "1.25")
    assert 'href="/admin/clients/client/?provider_application=pending"' in page


def test_console_shows_todays_requests_tokens_and_revenue_by_share_from_the_ledger(browser, provider, user_client):
    fund(user_client[0], "50.00")
    node = nodes_in_every_state(provider[0])["live"]
    total = paid_request(payer=user_client[0], node=node, cost="10.000003", key="c1", tokens=(100, 20))
    total += paid_request(payer=user_client[0], node=node, cost="2.5", key="c2", tokens=(7, 3))
    shares = {k: ledger.split_revenue(Decimal("10.000003"))[k] + ledger.split_revenue(Decimal("2.5"))[k] for k in
              ("operator", "platform", "treasury")}  # fmt: skip

    page = browser.get("/admin/").content.decode()

    today = figures(page.split('id="figures-1"')[1].split("</tr>")[0])
    assert (today["requests"], today["tokens"]) == ("2", "130")
    assert today["revenue"] == f"{total:,.2f}" == "12.50"
    assert (
        (today["operator"], today["platform"], today["treasury"])
        == (
            money(shares["operator"]),  # 8.750002
            money(shares["platform"]),  # 3.125001
            money(shares["treasury"]),  # 0.625000, shown rounded half up
        )
        == ("8.75", "3.13", "0.63")
    )
    month = figures(page.split('id="figures-2"')[1].split("</tr>")[0])
    assert (month["requests"], month["revenue"]) == ("2", "12.50")
    assert '<script id="console-data" type="application/json">' in page
    assert "/static/core/chart-4.5.1.umd.min.js" in page  # served by us, no CDN
    # Nothing is loaded from another host (a CSRF token may spell "cdn" by chance: look at src and href only).
    assert re.findall(r'(?:src|href)="(?:https?:)?//', page) == []


def test_console_shows_the_payouts_waiting_for_an_operator(browser, provider):
    from payments.services import payout_request

    fund(provider[0], "30.00")
    payout_request(client=provider[0], amount=Decimal("12.50"))

    shown = figures(browser.get("/admin/").content.decode())

    assert (shown["open_payouts"], shown["payouts_amount"]) == ("1", "12.50")


def test_the_beat_task_records_a_reconciliation_that_the_console_shows(browser, user_client):
    fund(user_client[0], "3.00")

    assert ledger_reconcile() is True

    run = Reconciliation.objects.get()
    assert (run.ok, run.mismatch_count, run.trigger) == (True, 0, "beat")
    assert figures(browser.get("/admin/").content.decode())["reconciliation"] == "Balanced"


def test_a_reconciliation_that_finds_mismatches_says_so(browser, user_client):
    from clients.models import Client

    fund(user_client[0], "3.00")
    Client.objects.filter(pk=user_client[0].pk).update(balance=Decimal("4.00"))  # a cached balance gone wrong

    r = browser.post("/admin/console/reconcile/")

    assert r.status_code == 302
    run = Reconciliation.objects.get()
    assert (run.ok, run.mismatch_count, run.trigger) == (False, 1, "operator")
    assert f"client:{user_client[0].pk}" in run.mismatches[0]
    assert figures(browser.get("/admin/").content.decode())["reconciliation"] == "1 mismatch"


def test_reconcile_now_needs_a_post_from_staff(client, browser, user_client):
    assert browser.get("/admin/console/reconcile/").status_code == 405
    client.logout()
    client.force_login(user_client[0].user)
    assert client.post("/admin/console/reconcile/").status_code == 302
    assert not Reconciliation.objects.exists()
