"""POST /v1/files (multipart, JSONL checked line by line) and the assigned node's download of a job's dataset."""

import json

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from tests.conftest import bearer
from tests.training.conftest import BASE_MODEL, CHAT, JSONL, fund, heartbeat, training_node
from training.models import TrainingFile

pytestmark = pytest.mark.usefixtures("media")


def upload(api_client, key: str, content: bytes, purpose: str = "fine-tune"):  # type: ignore[no-untyped-def]
    data = {"file": SimpleUploadedFile("chat.jsonl", content, content_type="application/jsonl"), "purpose": purpose}
    return api_client.post("/v1/files", data, format="multipart", **bearer(key))


def test_a_valid_jsonl_file_is_stored_and_described(api_client, user_client, media):
    _, key = user_client

    r = upload(api_client, key, JSONL.encode())

    assert r.status_code == 200, r.content
    body = r.json()
    row = TrainingFile.objects.get()
    assert body == {
        "id": f"file-{row.pk}", "object": "file", "bytes": len(JSONL), "created_at": body["created_at"],
        "filename": "chat.jsonl", "purpose": "fine-tune", "status": "processed", "status_details": None,
    }  # fmt: skip
    assert row.lines == 3
    with row.file.open("rb") as stored:
        assert stored.read() == JSONL.encode()
    assert (media / row.file.name).exists()


@pytest.mark.parametrize(
    ("line2", "why"),
    [
        ("{not json", "not valid JSON"),
        ('{"messages": []}', "non-empty list"),
        ('{"messages": [{"role": "robot", "content": "x"}]}', "role"),
        ("[1, 2]", "not a JSON object"),
    ],
)
def test_a_bad_line_is_a_400_naming_it(api_client, user_client, line2, why):
    _, key = user_client
    content = f"{json.dumps(CHAT)}\n{line2}\n{json.dumps(CHAT)}\n".encode()

    r = upload(api_client, key, content)

    assert r.status_code == 400
    error = r.json()["error"]
    assert error["message"].startswith("Line 2:") and why in error["message"]
    assert (error["code"], error["param"]) == ("invalid_file", "file")
    assert not TrainingFile.objects.exists()


def test_a_file_over_the_cap_is_413(api_client, user_client, settings):
    settings.TRAINING_FILE_MAX_BYTES = 100
    _, key = user_client

    r = upload(api_client, key, JSONL.encode())

    assert r.status_code == 413
    assert r.json()["error"]["code"] == "file_too_large"


def test_another_purpose_is_400(api_client, user_client):
    _, key = user_client
    r = upload(api_client, key, JSONL.encode(), purpose="assistants")
    assert r.status_code == 400
    assert r.json()["error"]["param"] == "purpose"


def test_files_are_their_owners_only(api_client, user_client, other_user):
    _, key = user_client
    _, other_key = other_user
    file_id = upload(api_client, key, JSONL.encode()).json()["id"]

    assert api_client.get(f"/v1/files/{file_id}", **bearer(key)).status_code == 200
    assert api_client.get(f"/v1/files/{file_id}", **bearer(other_key)).status_code == 404
    assert api_client.get("/v1/files", **bearer(other_key)).json()["data"] == []
    assert api_client.get("/v1/files").status_code == 401
    assert api_client.get("/v1/files/nonsense", **bearer(key)).status_code == 404


def test_only_the_assigned_node_downloads_the_dataset(api_client, user_client, provider, other_provider):
    client, key = user_client
    fund(client, "100")
    _node, token = training_node(owner=provider[0])
    _, other_token = training_node(owner=other_provider[0], price="9.00")
    file_id = upload(api_client, key, JSONL.encode()).json()["id"]
    r = api_client.post("/api/v1/training/create/", {
        "model": BASE_MODEL, "file_id": file_id, "epochs": 1, "learning_rate": 0.001, "batch_size": 4,
    }, format="json", **bearer(key))  # fmt: skip
    assert r.status_code == 201, r.content
    number = file_id.removeprefix("file-")
    [command] = heartbeat(api_client, token)["commands"]
    url = f"http://testserver/api/v1/llm_models/files/{number}/"
    assert command["params"]["dataset_url"] == url

    mine = api_client.get(url, HTTP_AUTHORIZATION=f"Bearer {token}")
    assert mine.status_code == 200
    assert b"".join(mine.streaming_content) == JSONL.encode()
    assert api_client.get(url, HTTP_AUTHORIZATION=f"Bearer {other_token}").status_code == 404
    assert api_client.get(url, **bearer(key)).status_code == 401
    assert api_client.get(url).status_code == 401


def test_a_job_naming_another_clients_file_is_404(api_client, user_client, other_user, provider):
    client, key = user_client
    fund(client, "100")
    training_node(owner=provider[0])
    _, other_key = other_user
    file_id = upload(api_client, other_key, JSONL.encode()).json()["id"]

    r = api_client.post("/api/v1/training/create/", {
        "model": BASE_MODEL, "file_id": file_id, "epochs": 1, "learning_rate": 0.001, "batch_size": 4,
    }, format="json", **bearer(key))  # fmt: skip

    assert r.status_code == 404
