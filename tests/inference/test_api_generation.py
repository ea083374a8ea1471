"""`GET /api/v1/generation/?id=chatcmpl-...` (API.md §11): a request made through /v1, found by its id."""

from decimal import Decimal

import pytest
from rest_framework.test import APIClient

from inference.models import InferenceRequest
from tests.conftest import bearer
from tests.inference.conftest import MODEL, fund

URL = "/api/v1/generation/"
CHAT = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 20}


@pytest.fixture
def served(api_client, user_client, node_on) -> InferenceRequest:  # type: ignore[no-untyped-def]
    """A chat completion served through /v1 by a real stub node, and its record."""
    fund(user_client[0], "1.00")
    _, stub = node_on(input_price="1000.00", output_price="1000.00")
    stub.behaviour.answer = "You are great"
    stub.behaviour.prompt_tokens = 6

    r = api_client.post("/v1/chat/completions", CHAT, format="json", **bearer(user_client[1]))

    assert r.status_code == 200, r.content
    row = InferenceRequest.objects.get()
    assert r.json()["id"] == f"chatcmpl-{row.request_key}"  # the id the client got is the one that finds the row
    return row


@pytest.mark.django_db(transaction=True)
def test_the_owner_reads_a_request_by_its_completion_id(api_client, user_client, served):
    r = api_client.get(URL, {"id": f"chatcmpl-{served.request_key}"}, **bearer(user_client[1]))

    assert r.status_code == 200, r.content
    body = r.json()
    assert set(body) == {
        "id",
        "endpoint",
        "model",
        "node",
        "status",
        "prompt_tokens",
        "completion_tokens",
        "cost",
        "latency_ms",
        "created_at",
    }
    assert body["id"] == f"chatcmpl-{served.request_key}" and body["endpoint"] == "chat"
    # The key under another operation's prefix is not this request's id.
    assert api_client.get(URL, {"id": f"cmpl-{served.request_key}"}, **bearer(user_client[1])).status_code == 404
    assert (body["model"], body["node"], body["status"]) == (MODEL, served.node_id, "completed")
    assert (body["prompt_tokens"], body["completion_tokens"]) == (6, 3)
    assert Decimal(body["cost"]) == served.cost == Decimal("0.009")
    assert body["latency_ms"] == served.latency_ms is not None


@pytest.mark.django_db(transaction=True)
def test_another_clients_id_is_404(api_client, other_user, served):
    r = api_client.get(URL, {"id": f"chatcmpl-{served.request_key}"}, **bearer(other_user[1]))

    assert r.status_code == 404
    assert r.json()["errors"][0]["code"] == "not_found"


@pytest.mark.parametrize("bad_id", ["chatcmpl-", "chatcmpl-inference:nope", "inference:abc", "cmpl-1"])
def test_an_id_of_no_request_is_404(api_client, user_client, bad_id):
    r = api_client.get(URL, {"id": bad_id}, **bearer(user_client[1]))

    assert r.status_code == 404


def test_the_id_of_a_row_without_the_prefix_is_not_found(api_client, user_client, served):
    r = api_client.get(URL, {"id": served.request_key}, **bearer(user_client[1]))

    assert r.status_code == 404


@pytest.mark.parametrize("query", [{}, {"id": ""}, {"id": "x" * 200}])
def test_a_missing_or_overlong_id_is_400_naming_it(api_client, user_client, query):
    r = api_client.get(URL, query, **bearer(user_client[1]))

    assert r.status_code == 400
    error = r.json()["errors"][0]
    assert error["code"] == "invalid_generation_query" and "`id`" in error["detail"]


def test_anonymous_is_401(api_client):
    assert api_client.get(URL, {"id": "chatcmpl-x"}).status_code == 401


@pytest.mark.live_server
@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("usage_journal_clean")
def test_a_request_served_by_the_lean_path_is_found_by_its_row_key(live_service, user_client, node_on):
    import openai

    from tests.inference.conftest import settle_usage

    fund(user_client[0], "1.00")
    node, _ = node_on()
    sdk = openai.OpenAI(base_url=f"{live_service.base_url}/v1", api_key=user_client[1], max_retries=0, timeout=30)
    completion = sdk.chat.completions.create(**CHAT)
    settle_usage()
    row = InferenceRequest.objects.get()

    r = APIClient().get(URL, {"id": completion.id}, **bearer(user_client[1]))

    assert r.status_code == 200, r.content
    assert r.json()["id"] == completion.id
    assert (r.json()["node"], Decimal(r.json()["cost"])) == (node.pk, row.cost)
