"""Request bodies are read one way on every path (API.md §0, §10): a body that cannot be parsed is a 400 in the
mount's shape, never a crash; a chunked body (no Content-Length) is read within MAX_REQUEST_BODY_BYTES, or
refused with 413, the same on the Django path and the lean /v1 path."""

import json

import httpx
import pytest
from django.conf import settings

from clients.models import ApiKey
from core.parsers import MAX_DEPTH, MalformedJson, json_loads
from tests.conftest import bearer
from tests.inference.conftest import MODEL, fund, settle_usage

NESTED = "[" * 100_000 + "]" * 100_000  # 200 KB, 100,000 levels: past Python's recursion limit
CHAT = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}]}


def nested(depth: int) -> str:
    return '{"a":' * depth + "1" + "}" * depth


def test_json_loads_bounds_depth_whatever_the_stack():
    assert json_loads(nested(MAX_DEPTH)) is not None
    for body in (nested(MAX_DEPTH + 1), nested(900), NESTED, b"[" * 5000 + b"]" * 5000):
        with pytest.raises(MalformedJson, match="nested more than"):
            json_loads(body)


@pytest.mark.parametrize("raw", [b"{", b"NaN", b'{"a": Infinity}', b"\xff\xfe\x00", b""])
def test_json_loads_refuses_what_is_not_json(raw):
    with pytest.raises(MalformedJson):
        json_loads(raw)


# --- Deeply nested JSON on the Django path -----------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("body", [NESTED, nested(900), nested(MAX_DEPTH + 1)], ids=["100000", "900", "65"])
@pytest.mark.parametrize(
    ("path", "auth"),
    [
        ("/api/v1/client/register/", False),
        ("/api/v1/inference/", True),
        ("/api/v1/inference/batch/", True),
        ("/api/v1/rentals/", True),
        ("/api/v1/client/keys/", True),
    ],
)
def test_deeply_nested_json_under_api_is_a_400_parse_error(api_client, user_client, path, auth, body):
    fund(user_client[0])
    headers = bearer(user_client[1]) if auth else {}

    r = api_client.post(path, body, content_type="application/json", **headers)

    assert r.status_code == 400
    error = r.json()["errors"][0]
    assert error["code"] == "parse_error" and "nested more than" in error["detail"]


@pytest.mark.django_db
def test_deeply_nested_json_on_the_django_v1_path_is_an_openai_400(api_client, user_client):
    fund(user_client[0])

    r = api_client.post("/v1/chat/completions", NESTED, content_type="application/json", **bearer(user_client[1]))

    assert r.status_code == 400
    assert r.json()["error"]["code"] == "parse_error"
    assert r.json()["error"]["type"] == "invalid_request_error"


# --- Over real HTTP: the lean /v1 path, and chunked bodies ---------------------------------------------------


def chunks(data: bytes, size: int = 7):  # type: ignore[no-untyped-def]
    """An iterator body: httpx sends it with `Transfer-Encoding: chunked` and no Content-Length."""
    for i in range(0, len(data), size):
        yield data[i : i + size]


@pytest.mark.parametrize("body", [NESTED, nested(900)], ids=["100000", "900"])
@pytest.mark.live_server
@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("usage_journal_clean")
def test_deeply_nested_json_on_the_lean_v1_path_is_an_openai_400(live_service, user_client, node_on, body):
    fund(user_client[0])
    node_on()

    r = httpx.post(
        f"{live_service.base_url}/v1/chat/completions",
        content=body,
        headers={"Authorization": f"Bearer {user_client[1]}", "Content-Type": "application/json"},
        timeout=30,
    )

    assert r.status_code == 400, r.text[:300]
    assert r.json()["error"]["code"] == "parse_error"


@pytest.mark.live_server
@pytest.mark.django_db(transaction=True)
def test_a_chunked_body_is_read_on_the_django_path(live_service, user_client):
    client, raw = user_client

    r = httpx.post(
        f"{live_service.base_url}/api/v1/client/keys/",
        content=chunks(json.dumps({"name": "chunked-key"}).encode()),
        headers={"Authorization": f"Bearer {raw}", "Content-Type": "application/json"},
        timeout=30,
    )

    assert r.status_code == 201, r.text[:300]
    assert r.json()["name"] == "chunked-key"
    assert ApiKey.objects.filter(client=client, name="chunked-key").exists()


@pytest.mark.parametrize("path", ["/api/v1/client/keys/", "/v1/chat/completions"])
@pytest.mark.live_server
@pytest.mark.django_db(transaction=True)
def test_a_chunked_body_over_the_limit_is_413_in_the_mounts_shape(live_service, user_client, path):
    client, raw = user_client
    data = json.dumps({"name": "x" * settings.MAX_REQUEST_BODY_BYTES}).encode()

    r = httpx.post(
        f"{live_service.base_url}{path}",
        content=chunks(data, 64 * 1024),
        headers={"Authorization": f"Bearer {raw}", "Content-Type": "application/json"},
        timeout=30,
    )

    assert r.status_code == 413
    error = r.json()["error"] if path.startswith("/v1/") else r.json()["errors"][0]
    assert error["code"] == "payload_too_large"
    # Sending it again unchanged cannot succeed: /v1 says so to OpenAI's SDKs (API.md §11).
    assert r.headers.get("x-should-retry") == ("false" if path.startswith("/v1/") else None)
    assert not ApiKey.objects.filter(client=client).exclude(name="test").exists()


@pytest.mark.parametrize("idempotency_key", [None, "chunked-1"], ids=["lean-path", "django-path"])
@pytest.mark.live_server
@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("usage_journal_clean")
def test_a_chunked_chat_completion_is_served_on_either_v1_path(live_service, user_client, node_on, idempotency_key):
    fund(user_client[0])
    _, stub = node_on()
    stub.behaviour.answer = "chunked fine"
    headers = {"Authorization": f"Bearer {user_client[1]}", "Content-Type": "application/json"}
    if idempotency_key:  # the lean path hands requests with an Idempotency-Key to Django
        headers["Idempotency-Key"] = idempotency_key

    r = httpx.post(
        f"{live_service.base_url}/v1/chat/completions",
        content=chunks(json.dumps(CHAT).encode()),
        headers=headers,
        timeout=30,
    )

    assert r.status_code == 200, r.text[:300]
    assert r.json()["choices"][0]["message"]["content"] == "chunked fine"
    settle_usage()
