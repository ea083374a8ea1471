"""API.md §12 on training: a key needs the `training` scope, and its budget and rpm admit a job."""

from decimal import Decimal

from clients.models import ApiKey
from clients.services import api_key_create
from tests.conftest import bearer
from tests.training.conftest import fund, training_node
from tests.training.test_api_jobs import URL, body
from training.models import TrainingJob


def test_a_key_without_training_cannot_create_jobs_on_either_path(api_client, user_client, provider):
    fund(user_client[0], "50.00")
    training_node(owner=provider[0], price="6.00")
    _, raw = api_key_create(client=user_client[0], name="llm-only", scopes=["inference"])

    seed = api_client.post(URL, body(), format="json", **bearer(raw))
    openai = api_client.post(
        "/v1/fine_tuning/jobs", {"model": "x", "training_file": "file-1"}, format="json", **bearer(raw)
    )
    listing = api_client.get("/api/v1/training/jobs/", **bearer(raw))

    assert seed.status_code == 403 and seed.json()["errors"][0]["code"] == "insufficient_scope"
    assert openai.status_code == 403 and openai.json()["error"]["code"] == "insufficient_scope"
    assert listing.status_code == 403
    assert not TrainingJob.objects.exists()


def test_a_spent_budget_refuses_a_job_while_the_account_has_money(api_client, user_client, provider):
    fund(user_client[0], "50.00")
    training_node(owner=provider[0], price="6.00")
    key, raw = api_key_create(client=user_client[0], name="ci", budget=Decimal("1"))
    ApiKey.objects.filter(pk=key.pk).update(spent=Decimal("1"), spent_since=key.created_at)

    r = api_client.post(URL, body(), format="json", **bearer(raw))

    assert r.status_code == 402 and r.json()["errors"][0]["code"] == "key_budget_exceeded"
    assert not TrainingJob.objects.exists()


def test_a_jobs_charge_counts_toward_the_budget_of_the_key_that_created_it(api_client, user_client, provider):
    from datetime import timedelta

    import time_machine
    from django.utils import timezone

    from tests.training.conftest import heartbeat

    fund(user_client[0], "50.00")
    _, token = training_node(owner=provider[0], price="6.00")
    key, raw = api_key_create(client=user_client[0], name="ci", budget=Decimal("0.40"))
    job_id = api_client.post(URL, body(), format="json", **bearer(raw)).json()["id"]
    command = heartbeat(api_client, token)["commands"][0]
    start = timezone.now()
    with time_machine.travel(start, tick=False):
        heartbeat(api_client, token, results=[{"id": command["id"], "status": "running", "progress": 0.1}])
    with time_machine.travel(start + timedelta(minutes=4, seconds=30), tick=False):
        cancelled = api_client.delete(f"/api/v1/training/jobs/{job_id}/", **bearer(raw))
        refused = api_client.post(URL, body(), format="json", **bearer(raw))

    key.refresh_from_db()
    assert TrainingJob.objects.get(pk=job_id).api_key_id == key.pk
    assert cancelled.json()["charged"] == "0.500000" and key.spent == Decimal("0.5")
    assert refused.status_code == 402 and refused.json()["errors"][0]["code"] == "key_budget_exceeded"
