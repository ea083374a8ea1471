"""The official `openai` SDK's files and fine_tuning.jobs calls against a real uvicorn process; then the owner
chats with its fine-tuned model on a real stub node and another client gets 404 (API.md §13)."""

from decimal import Decimal

import httpx
import openai
import pytest

from clients import ledger
from tests.training.conftest import BASE_MODEL, CHAT, JSONL, balance, fund, training_node
from training.models import TrainingJob

pytestmark = [pytest.mark.live_server, pytest.mark.django_db(transaction=True)]


def sdk(service, key: str) -> openai.OpenAI:  # type: ignore[no-untyped-def]
    return openai.OpenAI(base_url=f"{service.base_url}/v1", api_key=key, max_retries=0, timeout=30)


def heartbeat(service, token: str, **body: object) -> dict:  # type: ignore[no-untyped-def]
    r = httpx.post(f"{service.base_url}/api/v1/llm_models/heartbeat/", json=body,
                   headers={"Authorization": f"Bearer {token}"}, timeout=10)  # fmt: skip
    assert r.status_code == 200, r.text
    return r.json()


def test_the_sdk_uploads_lists_and_retrieves_files(training_service, user_client, tmp_path):
    _, key = user_client
    api = sdk(training_service, key)
    path = tmp_path / "train.jsonl"
    path.write_text(JSONL)

    created = api.files.create(file=path.open("rb"), purpose="fine-tune")

    assert (created.object, created.purpose, created.bytes, created.filename) == (
        "file",
        "fine-tune",
        len(JSONL),
        "train.jsonl",
    )
    assert [f.id for f in api.files.list()] == [created.id]
    assert api.files.retrieve(created.id).id == created.id
    path.write_text(JSONL + '{"messages": "nope"}\n')
    with pytest.raises(openai.BadRequestError) as bad:
        api.files.create(file=path.open("rb"), purpose="fine-tune")
    assert "Line 4" in bad.value.message


def test_the_sdk_creates_lists_retrieves_cancels_and_reads_events_of_jobs(
    training_service, user_client, other_user, provider, tmp_path
):
    client, key = user_client
    fund(client, "50.00")
    node, _ = training_node(owner=provider[0], price="6.00")
    api = sdk(training_service, key)
    path = tmp_path / "train.jsonl"
    path.write_text(JSONL)
    file = api.files.create(file=path.open("rb"), purpose="fine-tune")

    job = api.fine_tuning.jobs.create(
        model=BASE_MODEL, training_file=file.id, suffix="sdk",
        hyperparameters={"n_epochs": 2, "batch_size": 4, "learning_rate_multiplier": 2},
    )  # fmt: skip

    assert (job.object, job.status, job.model, job.training_file) == ("fine_tuning.job", "queued", BASE_MODEL, file.id)
    assert (job.hyperparameters.n_epochs, job.hyperparameters.batch_size) == (2, 4)
    row = TrainingJob.objects.get()
    assert (row.node_id, row.learning_rate, row.suffix) == (node.pk, pytest.approx(2e-4), "sdk")
    assert [j.id for j in api.fine_tuning.jobs.list()] == [job.id]
    assert api.fine_tuning.jobs.retrieve(job.id).id == job.id
    with pytest.raises(openai.NotFoundError):
        sdk(training_service, other_user[1]).fine_tuning.jobs.retrieve(job.id)
    events = api.fine_tuning.jobs.list_events(job.id)
    assert [e.object for e in events] and all(e.object == "fine_tuning.job.event" for e in events)

    cancelled = api.fine_tuning.jobs.cancel(job.id)

    assert cancelled.status == "cancelled"
    assert balance(client) == Decimal("50.00")
    assert ledger.reconcile() == []
    with pytest.raises(openai.ConflictError):
        api.fine_tuning.jobs.cancel(job.id)


def test_the_owner_chats_with_its_fine_tuned_model_and_others_get_404(
    training_service, user_client, other_user, provider, private_endpoints, stub_node
):
    client, key = user_client
    fund(client, "50.00")
    fund(other_user[0], "50.00")
    _node, token = training_node(owner=provider[0], price="6.00", stub=stub_node)
    api = sdk(training_service, key)
    r = httpx.post(f"{training_service.base_url}/api/v1/training/create/", json={
        "model": BASE_MODEL, "dataset_url": "https://datasets.example.com/d.jsonl", "epochs": 1,
        "learning_rate": 0.0001, "batch_size": 2, "suffix": "chatty",
    }, headers={"Authorization": f"Bearer {key}"}, timeout=10)  # fmt: skip
    assert r.status_code == 201, r.text
    job_id = r.json()["id"]
    [command] = heartbeat(training_service, token)["commands"]
    name = command["params"]["output_model"]
    heartbeat(training_service, token, results=[{"id": command["id"], "status": "running", "progress": 0.5}])
    heartbeat(training_service, token, results=[{"id": command["id"], "status": "succeeded", "fine_tuned_model": name}])
    assert (
        api.fine_tuning.jobs.retrieve(f"ftjob-{job_id}").fine_tuned_model == name == f"ft:{BASE_MODEL}:chatty:{job_id}"
    )
    stub_node.behaviour.answer = "tuned hello"

    reply = api.chat.completions.create(model=name, messages=[CHAT["messages"][0]], max_tokens=10)

    assert reply.choices[0].message.content == "tuned hello"
    assert stub_node.chat_requests[-1].body["model"] == name
    assert name in [m.id for m in api.models.list()]
    other = sdk(training_service, other_user[1])
    with pytest.raises(openai.NotFoundError) as missing:
        other.chat.completions.create(model=name, messages=[CHAT["messages"][0]], max_tokens=10)
    assert missing.value.code == "model_not_found"
    assert name not in [m.id for m in other.models.list()]
    with pytest.raises(openai.NotFoundError):
        other.models.retrieve(name)
    seed_url = f"{training_service.base_url}/api/v1/inference/"
    ask = {"desired_model": name, "question_text": "hi", "max_tokens": 5}
    seed = httpx.post(seed_url, json=ask, headers={"Authorization": f"Bearer {other_user[1]}"}, timeout=10)
    assert seed.status_code == 404
    assert seed.json()["errors"][0]["code"] == "model_not_found"
    public = httpx.get(f"{training_service.base_url}/api/v1/llm_models/all-models/", timeout=10).json()
    assert name not in [m["name"] for m in public["results"]]
    market = httpx.get(f"{training_service.base_url}/api/v1/models/", timeout=10).json()
    assert name not in [m["name"] for m in market["results"]]
