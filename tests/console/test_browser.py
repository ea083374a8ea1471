"""The console in a real browser: Playwright drives Chromium (Debian's, /usr/bin/chromium; `.ci/run` installs it)
against a live server, logged in as an operator through the login form. Screenshots go to .data/artifacts/."""

import os
from decimal import Decimal
from pathlib import Path

import pytest

from clients import ledger
from inference.models import InferenceRequest
from llm_models.models import Node, NodeModel
from tests.console.helpers import metric_samples, nodes_in_every_state, paid_request
from tests.factories import PASSWORD, LlmModelFactory, make_client
from tests.inference.conftest import fund
from tests.llm_models.conftest import REPO_ROOT

pytestmark = [pytest.mark.live_server, pytest.mark.django_db(transaction=True)]

CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
ARTIFACTS = Path(os.environ.get("TEST_ARTIFACTS_DIR", REPO_ROOT / ".data" / "artifacts"))


@pytest.fixture
def browser_page(live_server, monkeypatch):  # type: ignore[no-untyped-def]
    """A Chromium page, logged in as an operator through the admin's login form."""
    if not Path(CHROMIUM).exists():
        pytest.fail(f"No Chromium at {CHROMIUM}: `apt-get install -y chromium` (or set CHROMIUM_PATH).")
    from playwright.sync_api import sync_playwright

    # Playwright's sync API runs an event loop in this thread; the test's own ORM calls are still synchronous.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    operator, _ = make_client(staff=True, username="operator")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(f"{live_server.url}/admin/login/?next=/admin/")
        page.fill("#id_username", operator.user.username)
        page.fill("#id_password", PASSWORD)
        page.click("input[type=submit]")
        page.wait_for_url(f"{live_server.url}/admin/")
        page.base = live_server.url  # type: ignore[attr-defined]
        try:
            yield page
        finally:
            browser.close()


def figure(page, name: str) -> str:  # type: ignore[no-untyped-def]
    return page.locator(f'[data-figure="{name}"]').first.inner_text().strip()


def test_the_console_shows_what_the_operator_needs_with_charts(browser_page, applicant, provider, user_client):
    page = browser_page
    nodes = nodes_in_every_state(provider[0])
    fund(user_client[0], "40.00")
    paid = [
        paid_request(payer=user_client[0], node=nodes["live"], cost="10.000003", key="b1", tokens=(1000, 200)),
        paid_request(payer=user_client[0], node=nodes["live"], cost="2.5", key="b2", tokens=(70, 30)),
    ]
    ledger.hold_place(client_id=user_client[0].pk, amount=Decimal("3.333333"), key="b-open")
    shares = [ledger.split_revenue(amount) for amount in paid]

    page.goto(f"{page.base}/admin/")
    page.wait_for_function("window.consoleCharts && window.consoleCharts.revenue.chartArea.width > 0")
    page.screenshot(path=ARTIFACTS / "console-index.png", full_page=True)
    page.screenshot(path=ARTIFACTS / "console-top.png")  # what docs/console.png shows

    assert figure(page, "applications_waiting") == "1"
    assert (figure(page, "nodes_live"), figure(page, "nodes_offline"), figure(page, "nodes_failing")) == ("2", "1", "1")
    assert (figure(page, "open_holds"), figure(page, "held")) == ("1", "3.33")
    today = page.locator("#figures-1")
    assert today.locator('[data-figure="requests"]').inner_text() == "2"
    assert today.locator('[data-figure="tokens"]').inner_text() == "1,300"
    assert today.locator('[data-figure="revenue"]').inner_text() == "12.50"
    # The charts are drawn from the page's own figures: 30 days, today's bar the ledger's shares.
    drawn = page.evaluate(
        "() => Object.fromEntries(window.consoleCharts.revenue.data.datasets.map(d => [d.label, d.data]))"
    )
    assert all(len(values) == 30 for values in drawn.values())
    for share in ("operator", "platform", "treasury"):
        assert drawn[share][-1] == pytest.approx(float(sum(s[share] for s in shares)))
        assert sum(drawn[share][:-1]) == 0
    requests = page.evaluate("() => window.consoleCharts.requests.data.datasets[0].data")
    assert requests[-1] == 2
    assert page.locator("script[src*='//']").count() == 0  # no script from another host
    # The applications tile leads to the filtered list.
    page.click("#tile-applications")
    page.wait_for_selector("#result_list")
    assert "provider_application=pending" in page.url
    assert page.locator("#result_list tbody tr").count() == 1


def test_a_nodes_page_charts_its_metrics_and_shows_no_secrets(browser_page, provider):
    page = browser_page
    node = nodes_in_every_state(provider[0])["live"]
    Node.objects.filter(pk=node.pk).update(
        latency_ewma_ms=1.3361399999999999,
        latest_metrics={"gpu_utilization": 90.0, "gpu_memory_used_mb": 40960, "gpu_memory_total_mb": 81920},
    )
    metric_samples(node, [10.0, 55.5, 90.0, 42.0])
    node.refresh_from_db()

    page.goto(f"{page.base}/admin/llm_models/node/")
    page.screenshot(path=ARTIFACTS / "nodes-list.png", full_page=True)
    row = page.locator("#result_list tbody tr", has_text="live-a")
    assert row.locator("td.field-health").inner_text() == "live"
    assert row.locator("td.field-gpu_util").inner_text() == "90 %"
    assert row.locator("td.field-gpu_memory").inner_text() == "40/80 GB"
    assert "org/a" in row.locator("td.field-models").inner_text()
    assert "ago" in row.locator("td.field-heartbeat").inner_text()

    page.goto(f"{page.base}/admin/llm_models/node/{node.pk}/change/")
    page.wait_for_function("window.nodeMetricsChart && window.nodeMetricsChart.chartArea.width > 0")
    page.screenshot(path=ARTIFACTS / "node-page.png", full_page=True)
    utilization = page.evaluate("() => window.nodeMetricsChart.data.datasets[0].data")
    assert utilization == [10.0, 55.5, 90.0, 42.0]
    html = page.content()
    assert node.token_digest not in html
    assert "1.3361399999999999" not in html
    assert page.get_by_text("Delete", exact=True).count() == 0


def test_money_is_money_and_view_only_pages_offer_no_add_or_delete(browser_page, provider, user_client):
    page = browser_page
    fund(user_client[0], "25.029155")
    paid_request(payer=user_client[0], node=nodes_in_every_state(provider[0])["live"], cost="0.000123", key="m")

    page.goto(f"{page.base}/admin/clients/client/")
    page.screenshot(path=ARTIFACTS / "clients-list.png", full_page=True)
    cell = page.locator("#result_list tbody tr", has_text=user_client[0].user.username).locator(".money").first
    assert cell.inner_text() == "25.03"  # 25.029155 less 0.000123
    assert cell.evaluate("e => getComputedStyle(e).textAlign") == "right"
    assert "25.0291550000000" not in page.content()

    for url in ("/admin/clients/ledgerentry/", "/admin/clients/hold/", "/admin/inference/inferencerequest/"):
        page.goto(f"{page.base}{url}")
        assert page.locator(f'#content a[href="{url}add/"]').count() == 0, url
        assert page.locator('select[name="action"] option[value="delete_selected"]').count() == 0, url
    assert page.locator(".money", has_text="0.000123").count() == 1  # a request's cost keeps its 6 places
    page.screenshot(path=ARTIFACTS / "inference-requests.png", full_page=True)


# The changelist tables that grew columns (market/admin.py's figures, a request's cost): all of each table is
# on screen at 1280 px, none of it behind the results box's horizontal scrollbar.
WIDE_LISTS = ["/admin/llm_models/node/", "/admin/inference/inferencerequest/"]
REAL_MODEL = "meta-llama/Llama-3.1-70B-Instruct"


@pytest.mark.parametrize("url", WIDE_LISTS)
def test_list_columns_fit_at_1280_px(browser_page, provider, user_client, url):
    page = browser_page
    nodes = nodes_in_every_state(provider[0])
    Node.objects.filter(pk=nodes["live"].pk).update(
        latest_metrics={"gpu_utilization": 90.0, "gpu_memory_used_mb": 40960, "gpu_memory_total_mb": 81920},
    )
    NodeModel.objects.create(node=nodes["live"], model=LlmModelFactory(name=REAL_MODEL))
    fund(user_client[0], "10.00")
    for i, node in enumerate(nodes.values()):
        paid_request(payer=user_client[0], node=node, cost="1.234567", key=f"w{i}", tokens=(123456, 7890))
    InferenceRequest.objects.update(desired_model=REAL_MODEL, latency_ms=12345, error_code="node_timeout")

    page.goto(f"{page.base}{url}")
    page.screenshot(path=ARTIFACTS / f"fit-{url.strip('/').replace('/', '-')}.png", full_page=True)
    table, room, window = page.evaluate(
        """() => {
            const table = document.querySelector('#result_list');
            return [table.scrollWidth, table.closest('.results').clientWidth, document.documentElement.scrollWidth];
        }"""
    )

    assert page.locator("#result_list tbody tr").count() == 4
    assert table <= room, f"{url}: the table is {table} px wide in {room} px"
    assert window <= 1280, f"{url}: the page scrolls sideways ({window} px)"
