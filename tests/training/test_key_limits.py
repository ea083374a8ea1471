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
