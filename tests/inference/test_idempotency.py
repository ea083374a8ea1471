"""Idempotency-Key on the charging POSTs: a repeated key charges once (core/idempotency.py)."""

from decimal import Decimal

import pytest

from inference.models import InferenceBatch, InferenceRequest
from tests.conftest import bearer
from tests.inference.conftest import MODEL, balance, fund, streamed

pytestmark = pytest.mark.django_db(transaction=True)
URL = "/api/v1/inference/"


def test_a_repeated_key_replays_the_first_answer_and_charges_once(api_client, user_client, node_on):
    client, key = user_client
    fund(client, "1.00")
    _, stub = node_on()
    body = {"question_text": "once please", "desired_model": MODEL}

    first = api_client.post(URL, body, format="json", HTTP_IDEMPOTENCY_KEY="k-1", **bearer(key))
    again = api_client.post(URL, body, format="json", HTTP_IDEMPOTENCY_KEY="k-1", **bearer(key))
    other = api_client.post(
        URL, {**body, "question_text": "x"}, format="json", HTTP_IDEMPOTENCY_KEY="k-1", **bearer(key)
    )

    assert first.status_code == again.status_code == 201
    assert again.json() == first.json() and again["Idempotent-Replayed"] == "true"
    assert other.status_code == 422 and other.json()["errors"][0]["code"] == "idempotency_key_reused"
    assert InferenceRequest.objects.count() == 1 and len(stub.chat_requests) == 1
    assert balance(client) == Decimal("1.00") - Decimal(first.json()["cost"])


def test_a_repeated_batch_key_submits_one_batch(api_client, user_client, node_on):
    fund(user_client[0], "1.00")
    node_on()
    body = {"model": MODEL, "prompts": ["a", "b"]}

    first = api_client.post(f"{URL}batch/", body, format="json", HTTP_IDEMPOTENCY_KEY="b-1", **bearer(user_client[1]))
    again = api_client.post(f"{URL}batch/", body, format="json", HTTP_IDEMPOTENCY_KEY="b-1", **bearer(user_client[1]))

    assert first.status_code == again.status_code == 202
    assert again.json()["id"] == first.json()["id"]
    assert InferenceBatch.objects.count() == 1 and InferenceRequest.objects.count() == 2


def test_a_stream_sent_again_with_its_key_is_refused_and_charged_once(api_client, user_client, node_on):
    client, key = user_client
    fund(client, "1.00")
    _, stub = node_on()
    body = {"question_text": "stream once", "desired_model": MODEL}

    first = api_client.post(f"{URL}stream/", body, format="json", HTTP_IDEMPOTENCY_KEY="s-1", **bearer(key))
    streamed(first)
    again = api_client.post(f"{URL}stream/", body, format="json", HTTP_IDEMPOTENCY_KEY="s-1", **bearer(key))

    assert again.status_code == 409 and again.json()["errors"][0]["code"] == "stream_not_replayable"
    assert len(stub.chat_requests) == 1
    assert balance(client) == Decimal("1.00") - InferenceRequest.objects.get().cost


def test_a_repeated_key_on_v1_charges_once(api_client, user_client, node_on):
    client, key = user_client
    fund(client, "1.00")
    _, stub = node_on()
    body = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}]}

    first = api_client.post("/v1/chat/completions", body, format="json", HTTP_IDEMPOTENCY_KEY="v-1", **bearer(key))
    again = api_client.post("/v1/chat/completions", body, format="json", HTTP_IDEMPOTENCY_KEY="v-1", **bearer(key))

    assert first.status_code == again.status_code == 200
    assert again.json() == first.json()
    assert len(stub.chat_requests) == 1
    assert balance(client) == Decimal("1.00") - InferenceRequest.objects.get().cost
