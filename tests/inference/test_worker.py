"""Dispatch through real Celery workers on Redis: nothing is lost, nothing is charged twice."""

import os
import signal
from datetime import timedelta
from decimal import Decimal

import pytest
from django.conf import settings
from django.utils import timezone

from clients import ledger
from inference import services
from inference.models import InferenceRequest
from tests.conftest import bearer
from tests.inference.conftest import MODEL, balance, fund
from tests.llm_models.conftest import wait_until

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]
URL = "/api/v1/inference/"


def test_a_real_worker_answers_a_request_the_view_waits_for(api_client, user_client, node_on, start_worker):
    client, key = user_client
    fund(client, "1.00")
    node, stub = node_on()
    stub.behaviour.answer = "worker answer"
    start_worker()

    r = api_client.post(URL, {"question_text": "hi", "desired_model": MODEL}, format="json", **bearer(key))

    assert r.status_code == 201, r.content
    assert (r.json()["status"], r.json()["answer_text"], r.json()["node"]) == ("completed", "worker answer", node.pk)
    assert balance(client) == Decimal("1.00") - Decimal(r.json()["cost"])


def test_async_requests_and_a_batch_are_all_answered_by_workers(api_client, user_client, node_on, start_worker):
    client, key = user_client
    fund(client, "1.00")
    node_on()
    workers = [start_worker("w1"), start_worker("w2")]

    single = api_client.post(
        URL, {"question_text": "q", "desired_model": MODEL}, format="json", HTTP_PREFER="respond-async", **bearer(key)
    )
    batch = api_client.post(
        f"{URL}batch/", {"model": MODEL, "prompts": [f"p{i}" for i in range(6)]}, format="json", **bearer(key)
    )

    assert (single.status_code, single.json()["status"]) == (202, "queued")
    assert batch.status_code == 202 and len(batch.json()["items"]) == 6
    wait_until(
        lambda: not InferenceRequest.objects.exclude(status="completed").exists(), timeout=60, process=workers[0]
    )
    got = api_client.get(f"{URL}batch/{batch.json()['id']}/", **bearer(key)).json()
    assert got["status"] == "completed" and all(i["answer_text"] for i in got["items"])
    assert balance(client) == Decimal("1.00") - sum(InferenceRequest.objects.values_list("cost", flat=True))
    assert ledger.reconcile() == []


def test_a_worker_killed_mid_request_loses_nothing_and_charges_once(api_client, user_client, node_on, start_worker):
    client, key = user_client
    fund(client, "1.00")
    _, stub = node_on()
    stub.behaviour.answer = "slow but sure"
    stub.behaviour.first_byte_delay_s = 3.0
    first = start_worker("doomed")

    r = api_client.post(
        URL, {"question_text": "q", "desired_model": MODEL}, format="json", HTTP_PREFER="respond-async", **bearer(key)
    )
    pk = r.json()["id"]
    wait_until(lambda: len(stub.chat_requests) == 1, timeout=30, process=first)
    os.killpg(first.pid, signal.SIGKILL)  # mid-request, before any answer
    first.wait(timeout=10)
    assert InferenceRequest.objects.get(pk=pk).status == "running"
    stub.behaviour.first_byte_delay_s = 0.0

    second = start_worker("rescuer")
    later = timezone.now() + timedelta(seconds=settings.INFERENCE_DEADLINE_S + 1)
    assert services.inference_requeue_stuck(now=later) == {"requeued": 1, "failed": 0}
    wait_until(lambda: InferenceRequest.objects.get(pk=pk).status == "completed", timeout=30, process=second)

    req = InferenceRequest.objects.get(pk=pk)
    assert (req.attempts, req.answer_text) == (2, "slow but sure")
    assert balance(client) == Decimal("1.00") - req.cost
    assert ledger.reconcile() == []
    # A second sweep or a redelivered task changes nothing.
    assert services.inference_requeue_stuck(now=later + timedelta(hours=1)) == {"requeued": 0, "failed": 0}
    services.inference_run(request_id=pk)
    assert balance(client) == Decimal("1.00") - req.cost
