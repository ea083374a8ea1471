"""Concurrent ends of one job settle it once: a cancel racing another cancel, or the node's final report."""

import threading
from collections.abc import Callable
from decimal import Decimal

import pytest
from django.db import connection
from rest_framework.test import APIClient

from clients import ledger
from clients.models import LedgerTransaction
from tests.conftest import bearer
from tests.training.conftest import BASE_MODEL, fund, heartbeat, training_node
from training.models import TrainingJob

pytestmark = pytest.mark.django_db(transaction=True)


def _race(*calls: Callable[[], int]) -> list[int]:
    """Run the calls at the same moment, each on its own connection; their HTTP statuses."""
    barrier = threading.Barrier(len(calls))
    statuses: list[int] = [0] * len(calls)

    def run(i: int) -> None:
        try:
            barrier.wait()
            statuses[i] = calls[i]()
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    return statuses


def _running_job(user_client, provider) -> tuple[int, str, int]:  # type: ignore[no-untyped-def]
    client, key = user_client
    fund(client, "100")
    _, token = training_node(owner=provider[0], price="6.00")
    api = APIClient()
    body = {"model": BASE_MODEL, "dataset_url": "https://d.example.com/x.jsonl", "epochs": 1, "learning_rate": 0.1,
            "batch_size": 1}  # fmt: skip
    job_id = api.post("/api/v1/training/create/", body, format="json", **bearer(key)).json()["id"]
    command_id = heartbeat(api, token)["commands"][0]["id"]
    heartbeat(api, token, results=[{"id": command_id, "status": "running", "progress": 0.2}])
    return job_id, token, command_id


def test_two_cancels_at_once_settle_once(user_client, provider):
    job_id, _, _ = _running_job(user_client, provider)
    _, key = user_client

    def cancel() -> int:
        return APIClient().delete(f"/api/v1/training/jobs/{job_id}/", **bearer(key)).status_code

    assert sorted(_race(cancel, cancel)) == [200, 409]
    assert LedgerTransaction.objects.filter(key__endswith=f"training:{job_id}", kind="settle").count() == 1
    assert ledger.reconcile() == []


def test_a_cancel_racing_the_nodes_success_ends_the_job_once(user_client, provider):
    job_id, token, command_id = _running_job(user_client, provider)
    client, key = user_client

    def cancel() -> int:
        return APIClient().delete(f"/api/v1/training/jobs/{job_id}/", **bearer(key)).status_code

    def succeed() -> int:
        done = {"id": command_id, "status": "succeeded", "fine_tuned_model": f"ft:{BASE_MODEL}:job:{job_id}"}
        return APIClient().post("/api/v1/llm_models/heartbeat/", {"results": [done]}, format="json",
                                HTTP_AUTHORIZATION=f"Bearer {token}").status_code  # fmt: skip

    statuses = _race(cancel, succeed)

    job = TrainingJob.objects.get(pk=job_id)
    assert statuses[1] == 200
    assert (job.status, statuses[0]) in (("cancelled", 200), ("succeeded", 409))
    assert LedgerTransaction.objects.filter(key__endswith=f"training:{job_id}", kind="settle").count() == 1
    assert ledger.balance_of(client_id=client.pk) == Decimal("100") - job.charged
    assert ledger.reconcile() == []
