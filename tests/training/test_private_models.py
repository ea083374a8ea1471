"""A fine-tuned model is its owner's (API.md §13): never in public listings, kept across the node's model syncs."""

from decimal import Decimal

import pytest

from llm_models.models import LlmModel
from tests.conftest import bearer
from tests.training.conftest import BASE_MODEL, fund, heartbeat, training_node
from training.models import TrainingEvent, TrainingJob


@pytest.fixture
def fine_tuned(api_client, user_client, provider):  # type: ignore[no-untyped-def]
    """(node, token, model name) of a job that succeeded through real heartbeats."""
    client, key = user_client
    fund(client, "100")
    node, token = training_node(owner=provider[0])
    body = {"model": BASE_MODEL, "dataset_url": "https://d.example.com/x.jsonl", "epochs": 1, "learning_rate": 0.1,
            "batch_size": 1, "suffix": "mine"}  # fmt: skip
    job_id = api_client.post("/api/v1/training/create/", body, format="json", **bearer(key)).json()["id"]
    command = heartbeat(api_client, token)["commands"][0]
    name = command["params"]["output_model"]
    heartbeat(api_client, token, results=[{"id": command["id"], "status": "succeeded", "fine_tuned_model": name}])
    assert TrainingJob.objects.get(pk=job_id).status == "succeeded"
    return node, token, name


def test_public_listings_never_show_a_fine_tuned_model(api_client, fine_tuned):
    node, _, name = fine_tuned
    private = LlmModel.objects.get(name=name)

    models = api_client.get("/api/v1/models/?page_size=100").json()["results"]
    assert name not in [m["name"] for m in models]
    assert api_client.get(f"/api/v1/models/{private.pk}/").status_code == 404
    assert api_client.get(f"/api/v1/models/{private.pk}/providers/").status_code == 404
    assert name not in [m["name"] for m in api_client.get(f"/api/v1/nodes/{node.pk}/").json()["models"]]
    assert name not in [m["name"] for m in api_client.get("/api/v1/llm_models/all-models/").json()["results"]]
    assert api_client.get("/api/v1/stats/").json()["models"]["total"] == LlmModel.objects.filter(owner=None).count()


def test_the_nodes_model_list_neither_drops_nor_publishes_it(api_client, fine_tuned):
    node, token, name = fine_tuned
    base = {"name": BASE_MODEL, "input_price_per_million": "1.00"}

    heartbeat(api_client, token, models=[base])  # the backend lists only the base model
    assert node.node_models.filter(model__name=name).exists()
    heartbeat(api_client, token, models=[base, {"name": name, "input_price_per_million": "0"}])
    row = node.node_models.get(model__name=name)
    assert (row.input_price_per_million, row.model.owner_id is not None) == (Decimal("1.00"), True)


def test_events_are_bounded_per_job(api_client, user_client, provider, settings):
    settings.TRAINING_MAX_EVENTS_PER_JOB = 3
    client, key = user_client
    fund(client, "100")
    _, token = training_node(owner=provider[0])
    body = {"model": BASE_MODEL, "dataset_url": "https://d.example.com/x.jsonl", "epochs": 1, "learning_rate": 0.1,
            "batch_size": 1}  # fmt: skip
    job_id = api_client.post("/api/v1/training/create/", body, format="json", **bearer(key)).json()["id"]
    command = heartbeat(api_client, token)["commands"][0]
    for step in range(1, 6):
        heartbeat(api_client, token, results=[
            {"id": command["id"], "status": "running", "progress": step / 10, "metrics": {"step": step}}
        ])  # fmt: skip

    assert TrainingEvent.objects.filter(job_id=job_id).count() == 3
    assert TrainingJob.objects.get(pk=job_id).metrics == {"step": 5}
