"""GET /metrics (docs/API.md §16): guarded, Prometheus' format, and exact across several web processes."""

import time
from decimal import Decimal

import httpx
import pytest
from django.db.models import Sum
from prometheus_client.parser import text_string_to_metric_families

from clients import ledger
from clients.models import LedgerEntry
from tests.console.helpers import nodes_in_every_state, paid_request
from tests.inference.conftest import MODEL, fund, settle_usage, start_service
from tests.llm_models.conftest import HEARTBEAT_URL, _stop

Series = dict[tuple[str, frozenset], float]


def parse(text: str) -> Series:
    """Every sample of a scrape by (name, labels)."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(series: Series, name: str, **labels: str) -> float:
    return series.get((name, frozenset(labels.items())), 0.0)


# --- The guard ---------------------------------------------------------------------------------------------------


def test_metrics_answer_loopback_callers_when_no_token_is_set(client):
    r = client.get("/metrics", REMOTE_ADDR="127.0.0.1")

    assert r.status_code == 200
    assert r["Content-Type"].startswith("text/plain; version=")
    assert "gpumarket_nodes{" in r.content.decode()


def test_metrics_refuse_other_callers_when_no_token_is_set(client):
    r = client.get("/metrics", REMOTE_ADDR="203.0.113.7")

    assert r.status_code == 403
    assert r.json()["errors"][0]["code"] == "permission_denied"


@pytest.mark.parametrize("header", [None, "Bearer wrong-token", "Basic c2VjcmV0", "Bearer"])
def test_metrics_with_a_token_refuse_anyone_without_it_even_on_loopback(client, settings, header):
    settings.METRICS_TOKEN = "s3cret-scrape-token"
    extra = {"HTTP_AUTHORIZATION": header} if header else {}

    r = client.get("/metrics", REMOTE_ADDR="127.0.0.1", **extra)

    assert r.status_code == 403
    assert r.json()["errors"][0]["code"] == "permission_denied"


def test_metrics_with_a_token_answer_its_bearer_from_anywhere(client, settings):
    settings.METRICS_TOKEN = "s3cret-scrape-token"

    r = client.get("/metrics", REMOTE_ADDR="203.0.113.7", HTTP_AUTHORIZATION="Bearer s3cret-scrape-token")

    assert r.status_code == 200


def test_metrics_refuse_other_methods(client):
    assert client.post("/metrics").status_code == 405


# --- Figures read from the database ---------------------------------------------------------------------------------


def test_nodes_and_revenue_series_are_the_databases(client, provider, user_client):
    nodes = nodes_in_every_state(provider[0])
    fund(user_client[0], "20.00")
    paid_request(payer=user_client[0], node=nodes["live"], cost="10.000003", key="m1")
    shares = ledger.split_revenue(Decimal("10.000003"))

    series = parse(client.get("/metrics").content.decode())

    assert value(series, "gpumarket_nodes", status="live") == 2
    assert value(series, "gpumarket_nodes", status="offline") == 1
    assert value(series, "gpumarket_nodes", status="failing") == 1
    assert value(series, "gpumarket_nodes", status="rented") == 0
    for share in ("operator", "platform", "treasury"):
        assert value(series, "gpumarket_revenue_usd_total", share=share) == pytest.approx(float(shares[share]))
    assert value(series, "gpumarket_usage_journal_lag_seconds") >= 0


def test_http_requests_are_counted_by_url_pattern_not_raw_path(client):
    before = parse(client.get("/metrics").content.decode())

    for pk in (1, 2, 3):
        client.get(f"/api/v1/gpu/list/{pk}/")

    after = parse(client.get("/metrics").content.decode())
    labels = {"route": r"/api/v1/gpu/list/(?P<pk>\d+)/", "method": "GET", "status": "401"}  # a router's pattern
    name = "gpumarket_http_requests_total"
    assert value(after, name, **labels) - value(before, name, **labels) == 3
    assert not any("/api/v1/gpu/list/1/" in str(key) for key in after)


# --- Several processes ------------------------------------------------------------------------------------------


@pytest.mark.live_server
@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("usage_journal_clean")
def test_n_requests_raise_each_counter_by_exactly_n_across_two_web_processes(tmp_path, user_client, node_on, provider):
    """Two uvicorn processes share one PROMETHEUS_MULTIPROC_DIR; a scrape of either counts what both served,
    lean /v1 path and fast heartbeat path included."""
    from tests.factories import make_node

    n = 6
    client, key = user_client
    fund(client, "10.00")
    _node, stub = node_on(input_price="1.00", output_price="2.00")
    stub.behaviour.answer = "one two three"  # 3 completion tokens
    stub.behaviour.prompt_tokens = 5
    _beating, token = make_node(owner=provider[0], status="online")
    shared = tmp_path / "prometheus"
    shared.mkdir()
    env = {"PROMETHEUS_MULTIPROC_DIR": str(shared)}
    web = [start_service(tmp_path / f"web{i}.log", **env) for i in (1, 2)]
    try:
        scrape = f"{web[0].base_url}/metrics"
        before = parse(httpx.get(scrape).text)
        for i in range(n):
            base = web[i % 2].base_url
            r = httpx.post(
                f"{base}/v1/chat/completions",
                json={"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 16},
                headers={"Authorization": f"Bearer {key}"},
                timeout=30,
            )
            assert r.status_code == 200, r.text
            assert httpx.get(f"{base}/healthz").status_code == 200
            beat = httpx.post(
                f"{base}{HEARTBEAT_URL}",
                json={"metrics": {"gpu_utilization": 10 + i}},
                headers={"Authorization": f"Bearer {token}"},
            )
            assert beat.status_code == 200, beat.text
        after = parse(httpx.get(f"{web[1].base_url}/metrics").text)  # the other process: the same totals
    finally:
        for process in web:
            _stop(process)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    chat = {"route": "/v1/chat/completions", "method": "POST"}
    assert delta("gpumarket_http_requests_total", status="200", **chat) == n
    assert delta("gpumarket_http_request_duration_seconds_count", **chat) == n
    assert delta("gpumarket_http_requests_total", route="/healthz", method="GET", status="200") == n
    assert delta("gpumarket_inference_requests_total", model=MODEL, outcome="completed") == n
    assert delta("gpumarket_inference_tokens_total", model=MODEL, kind="prompt") == 5 * n
    assert delta("gpumarket_inference_tokens_total", model=MODEL, kind="completion") == 3 * n
    assert delta("gpumarket_heartbeats_total") == n
    heartbeat_route = {"route": HEARTBEAT_URL, "method": "POST", "status": "200"}
    assert delta("gpumarket_http_requests_total", **heartbeat_route) == n
    # What the requests paid reaches the revenue series once the journal is applied.
    settle_usage()
    from inference.models import InferenceRequest
    from tests.inference.conftest import by_lean_path

    served = list(InferenceRequest.objects.all())
    assert len(served) == n and all(by_lean_path(row) for row in served)
    revenue = parse(_scrape_here())
    cost = Decimal(n) * (5 * Decimal("1.00") + 3 * Decimal("2.00")) / 1_000_000  # prices are per million tokens
    assert sum(InferenceRequest.objects.values_list("cost", flat=True)) == cost
    shares = {s: value(revenue, "gpumarket_revenue_usd_total", share=s) for s in ("operator", "platform", "treasury")}
    assert sum(shares.values()) == pytest.approx(float(cost))
    # The operator's share is what its account was credited (each batch's charge is split on its own, rounded down).
    earned = LedgerEntry.objects.filter(account__client=provider[0], transaction__kind="usage").aggregate(
        s=Sum("amount")
    )
    assert shares["operator"] == pytest.approx(float(earned["s"])) and earned["s"] > 0


@pytest.mark.worker
@pytest.mark.live_server
@pytest.mark.django_db(transaction=True)
def test_a_celery_workers_counters_reach_a_scrape_of_a_web_process(tmp_path, user_client, node_on, start_worker):
    """The worker serves a seed /api/v1/inference/ request (the web process only queues it) and writes its counters
    to the shared PROMETHEUS_MULTIPROC_DIR, as `make run` sets it for web and worker alike."""
    from inference.models import InferenceRequest

    client, key = user_client
    fund(client, "1.00")
    _node, stub = node_on()
    stub.behaviour.answer = "one two three"  # 3 completion tokens
    stub.behaviour.prompt_tokens = 5
    shared = tmp_path / "prometheus"
    shared.mkdir()
    worker = start_worker(PROMETHEUS_MULTIPROC_DIR=str(shared))
    web = start_service(tmp_path / "web.log", PROMETHEUS_MULTIPROC_DIR=str(shared))
    served = {"model": MODEL, "outcome": "completed"}
    try:
        before = parse(httpx.get(f"{web.base_url}/metrics").text)
        r = httpx.post(
            f"{web.base_url}/api/v1/inference/",
            json={"question_text": "hi", "desired_model": MODEL},
            headers={"Authorization": f"Bearer {key}"},
            timeout=30,
        )
        assert r.status_code == 201, r.text
        deadline = time.monotonic() + 30
        while True:
            after = parse(httpx.get(f"{web.base_url}/metrics").text)
            counted = value(after, "gpumarket_inference_requests_total", **served)
            if counted > value(before, "gpumarket_inference_requests_total", **served):
                break
            assert time.monotonic() < deadline, f"not counted:\n{worker.log_path.read_text()[-3000:]}"
            time.sleep(0.2)
        time.sleep(0.5)  # anything counted twice would show by now
        after = parse(httpx.get(f"{web.base_url}/metrics").text)
    finally:
        _stop(web)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    row = InferenceRequest.objects.get(pk=r.json()["id"])
    assert (row.status, row.channel) == ("completed", "worker")
    assert delta("gpumarket_inference_requests_total", **served) == 1
    assert delta("gpumarket_inference_tokens_total", model=MODEL, kind="prompt") == 5
    assert delta("gpumarket_inference_tokens_total", model=MODEL, kind="completion") == 3
    assert (shared / f"counter_{worker.pid}.db").exists()  # the worker's own file: it counted them


def _scrape_here() -> str:
    from django.test import Client

    return Client().get("/metrics").content.decode()
