"""`POST /api/v1/inference/`'s wait for the answer (inference/waits.py, inference/seed_asgi.py): held in front of
Django on a real uvicorn process, no thread per waiting request, one query per tick for all of them."""

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal

import httpx
import pytest
import redis
from asgiref.sync import async_to_sync, sync_to_async
from django.conf import settings
from django.db import connection
from django.test.utils import CaptureQueriesContext
from prometheus_client.parser import text_string_to_metric_families

from inference import services
from inference.models import InferenceRequest
from inference.waits import FinishWatch
from tests.conftest import bearer
from tests.inference.conftest import MODEL, balance, fund, start_service
from tests.llm_models.conftest import wait_until

URL = "/api/v1/inference/"
QUESTION = {"question_text": "hi", "desired_model": MODEL}
WAITING = 20


@pytest.fixture
def no_worker():  # type: ignore[no-untyped-def]
    """Nothing consumes the broker: the rows stay queued until the test runs them (services.inference_run)."""
    broker = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    broker.delete("celery")
    yield
    broker.delete("celery")  # the dispatches no worker took
    broker.close()


def _threads(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("Threads:"))


def _ask(base_url: str, key: str, **headers: str) -> httpx.Response:
    return httpx.post(
        f"{base_url}{URL}", json=QUESTION, headers={"Authorization": f"Bearer {key}", **headers}, timeout=60
    )


def _answered(base_url: str) -> dict[str, float]:
    """`POST /api/v1/inference/` answers counted by the server's /metrics (gpumarket_http_requests_total), by status."""
    text = httpx.get(f"{base_url}/metrics", timeout=10).text
    counts: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = sample.labels
            if sample.name == "gpumarket_http_requests_total" and labels.get("route") == URL:
                counts[labels["status"]] = counts.get(labels["status"], 0) + sample.value
    return counts


def _run_queued(expected: int) -> list[int]:
    """Wait until `expected` rows are queued, then answer each as the worker would; their ids."""
    wait_until(lambda: InferenceRequest.objects.filter(status="queued").count() == expected, timeout=30)
    time.sleep(0.3)  # their views have answered 202 to the layer in front of Django
    ids = list(InferenceRequest.objects.filter(status="queued").values_list("pk", flat=True))
    for request_id in ids:
        services.inference_run(request_id=request_id)
    return ids


@pytest.mark.live_server
@pytest.mark.django_db(transaction=True)
def test_waiting_requests_hold_no_thread_and_get_201_once_their_rows_finish(
    live_service, user_client, node_on, no_worker
):
    client, key = user_client
    fund(client, "10.00")
    _, stub = node_on()
    stub.behaviour.answer = "answered"
    with ThreadPoolExecutor(1) as pool:  # warm up: the watch's poller and Django's sync thread exist from now on
        first = pool.submit(_ask, live_service.base_url, key)
        _run_queued(1)
        assert first.result().status_code == 201
    before = _threads(live_service.pid)
    counted_before = _answered(live_service.base_url)

    with ThreadPoolExecutor(WAITING) as pool:
        replies = [pool.submit(_ask, live_service.base_url, key) for _ in range(WAITING)]
        wait_until(lambda: InferenceRequest.objects.filter(status="queued").count() == WAITING, timeout=30)
        time.sleep(1)  # every view has answered; each request is waiting
        during = _threads(live_service.pid)
        assert not any(reply.done() for reply in replies)
        finished_at = time.monotonic()
        ids = _run_queued(WAITING)
        answers = [reply.result() for reply in replies]
        took = time.monotonic() - finished_at

    assert during - before < WAITING // 4, (before, during)  # a thread per waiting request would add WAITING
    assert [a.status_code for a in answers] == [201] * WAITING
    assert sorted(a.json()["id"] for a in answers) == sorted(ids)
    assert {(a.json()["status"], a.json()["answer_text"]) for a in answers} == {("completed", "answered")}
    assert took < 15  # as the rows finished, not when INFERENCE_SYNC_WAIT_S (30 s) ran out
    assert all(a.headers["x-request-id"] for a in answers)
    counted = _answered(live_service.base_url)  # the metrics count the 201 each caller got, not the view's 202
    assert counted.get("201", 0) - counted_before.get("201", 0) == WAITING
    assert counted.get("202", 0) == counted_before.get("202", 0)


@pytest.mark.live_server
@pytest.mark.django_db(transaction=True)
def test_a_waited_answer_is_what_its_idempotency_key_replays(live_service, user_client, node_on, no_worker):
    client, key = user_client
    fund(client, "1.00")
    node_on()
    with ThreadPoolExecutor(1) as pool:
        waiting = pool.submit(_ask, live_service.base_url, key, **{"Idempotency-Key": "wait-1"})
        wait_until(lambda: InferenceRequest.objects.filter(status="queued").exists(), timeout=30)
        time.sleep(0.3)
        meanwhile = _ask(live_service.base_url, key, **{"Idempotency-Key": "wait-1"})
        _run_queued(1)
        first = waiting.result()
    again = _ask(live_service.base_url, key, **{"Idempotency-Key": "wait-1"})

    assert (meanwhile.status_code, meanwhile.json()["status"]) == (202, "queued")  # the answer stored so far
    assert meanwhile.headers["idempotent-replayed"] == "true"
    assert (first.status_code, first.json()["status"]) == (201, "completed")
    assert again.status_code == 201 and again.json() == first.json()
    assert again.headers["idempotent-replayed"] == "true"
    assert InferenceRequest.objects.count() == 1
    assert balance(client) == Decimal("1.00") - Decimal(first.json()["cost"])


@pytest.mark.live_server
@pytest.mark.django_db(transaction=True)
def test_a_wait_that_runs_out_answers_202_with_the_queued_record(
    user_client, node_on, no_worker, tmp_path, django_db_blocker
):
    from tests.llm_models.conftest import _stop

    fund(user_client[0], "1.00")
    node_on()
    with django_db_blocker.unblock():
        service = start_service(tmp_path / "server.log", INFERENCE_SYNC_WAIT_S="1")
    try:
        began = time.monotonic()
        r = _ask(service.base_url, user_client[1])
        elapsed = time.monotonic() - began
        respond_async = _ask(service.base_url, user_client[1], Prefer="respond-async")
    finally:
        _stop(service)

    assert (r.status_code, r.json()["status"]) == (202, "queued")
    assert 1 <= elapsed < 10
    assert respond_async.status_code == 202 and respond_async.json()["id"] != r.json()["id"]


@pytest.mark.django_db
def test_one_query_a_tick_checks_every_waiting_row(api_client, user_client, node_on):
    client, key = user_client
    fund(client, "1.00")
    node_on()
    ids = [
        api_client.post(URL, QUESTION, format="json", HTTP_PREFER="respond-async", **bearer(key)).json()["id"]
        for _ in range(5)
    ]  # queued: the dispatch runs at commit, and this test's transaction never commits
    tick_s = 0.05
    watch = FinishWatch.in_this_thread(tick_s=tick_s)

    async def scenario() -> tuple[list[bool], float]:
        waits = [asyncio.create_task(watch.wait(i, timeout=1.0)) for i in ids]
        await asyncio.sleep(0.2)
        await sync_to_async(services.inference_run)(request_id=ids[0])
        finished_at = time.monotonic()
        await waits[0]
        noticed = time.monotonic() - finished_at
        return [await w for w in waits], noticed

    with CaptureQueriesContext(connection) as queries:
        began = time.monotonic()
        results, noticed = async_to_sync(scenario)()
        elapsed = time.monotonic() - began
    checks = [q for q in queries.captured_queries if '"inference_inferencerequest"."status" IN' in q["sql"]]

    assert results == [True, False, False, False, False]
    assert noticed < 0.5
    assert 5 <= len(checks) <= elapsed / tick_s + 2  # one per tick for all five (a query each would be 5x)
