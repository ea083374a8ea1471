"""`POST /v1/completions` and `POST /v1/embeddings` (API.md §11 "More endpoints") with the official `openai` SDK
against a real uvicorn process (the Django door of the one /v1 pipeline), with real stub nodes."""

import base64
import struct
from decimal import Decimal

import httpx
import openai
import pytest
import redis
from django.conf import settings

from clients.services import api_key_create
from inference.models import InferenceRequest
from llm_models.models import Node
from tests.inference.conftest import MODEL, balance, fund, settle_usage

pytestmark = [
    pytest.mark.live_server,
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("usage_journal_clean"),
]


@pytest.fixture(autouse=True)
def _fresh_key_counters():  # type: ignore[no-untyped-def]
    client = redis.Redis.from_url(settings.KEY_LIMITS_REDIS_URL)
    for name in client.scan_iter("gm:keylim:*"):
        client.delete(name)
    yield
    client.close()


def sdk(live_service, key: str) -> openai.OpenAI:  # type: ignore[no-untyped-def]
    return openai.OpenAI(base_url=f"{live_service.base_url}/v1", api_key=key, max_retries=0, timeout=30)


def sent_to(stub, operation: str) -> list:  # type: ignore[no-untyped-def]
    return [r for r in stub.requests if r.method == "POST" and r.path == f"/v1/{operation}"]


# --- /v1/completions ----------------------------------------------------------------------------------------------


def test_a_text_completion_has_openais_shape_our_id_and_is_billed_as_the_ledger_charges(
    live_service, user_client, node_on
):
    client, key = user_client
    fund(client, "1.00")
    node, stub = node_on(input_price="1000.00", output_price="2000.00")
    stub.behaviour.answer = "once upon a time"
    stub.behaviour.prompt_tokens = 5

    reply = sdk(live_service, key).completions.create(
        model=MODEL, prompt="Tell me a story", max_tokens=40, temperature=0.3, extra_body={"top_k": 5}
    )

    assert reply.object == "text_completion" and reply.choices[0].text == "once upon a time"
    assert reply.choices[0].finish_reason == "stop"
    assert (reply.usage.prompt_tokens, reply.usage.completion_tokens, reply.usage.total_tokens) == (5, 4, 9)
    sent = sent_to(stub, "completions")
    assert len(sent) == 1 and stub.chat_requests == []
    assert (sent[0].body["prompt"], sent[0].body["max_tokens"], sent[0].body["temperature"]) == (
        "Tell me a story",
        40,
        0.3,
    )
    settle_usage()
    record = InferenceRequest.objects.get()
    assert reply.id == f"cmpl-{record.request_key}"
    assert (record.endpoint, record.status, record.node_id, record.question_text) == (
        "completions",
        "completed",
        node.pk,
        "Tell me a story",
    )
    # 5 prompt tokens at $1000/M + 4 completion tokens at $2000/M
    assert record.cost == Decimal("0.013") and balance(client) == Decimal("1.00") - Decimal("0.013")


def test_a_streamed_text_completion_carries_our_id_on_every_chunk_and_the_usage_chunk(
    live_service, user_client, node_on, api_client
):
    client, key = user_client
    fund(client, "1.00")
    _, stub = node_on()
    stub.behaviour.answer = "one two three"

    chunks = list(
        sdk(live_service, key).completions.create(
            model=MODEL, prompt="Count", stream=True, stream_options={"include_usage": True}
        )
    )

    assert "".join(c.choices[0].text for c in chunks if c.choices) == "one two three"
    assert {c.object for c in chunks} == {"text_completion"}
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 3
    settle_usage()
    record = InferenceRequest.objects.get()
    assert {c.id for c in chunks} == {f"cmpl-{record.request_key}"}
    assert record.answer_text == "one two three" and record.completion_tokens == 3
    assert balance(client) == Decimal("1.00") - record.cost and record.cost > 0
    found = api_client.get("/api/v1/generation/", {"id": chunks[0].id}, HTTP_AUTHORIZATION=f"Bearer {key}")
    assert found.status_code == 200
    assert (found.json()["id"], found.json()["endpoint"]) == (chunks[0].id, "completions")


def test_several_prompts_in_one_text_completion_are_400_naming_prompt(live_service, user_client, node_on):
    client, key = user_client
    fund(client, "1.00")
    _, stub = node_on()

    with pytest.raises(openai.BadRequestError) as caught:
        sdk(live_service, key).completions.create(model=MODEL, prompt=["one", "two"])

    assert caught.value.body["param"] == "prompt"
    assert stub.requests == [] and InferenceRequest.objects.count() == 0


# --- /v1/embeddings -----------------------------------------------------------------------------------------------


def test_embeddings_have_openais_shape_and_bill_input_tokens_only(live_service, user_client, node_on, api_client):
    client, key = user_client
    fund(client, "1.00")
    node, stub = node_on(input_price="1000.00", output_price="9000.00")
    stub.behaviour.prompt_tokens = 7

    reply = sdk(live_service, key).embeddings.create(model=MODEL, input=["first text", "second text"], dimensions=3)

    assert [d.index for d in reply.data] == [0, 1]
    assert reply.data[1].embedding == [1.0, 1.25, 1.5]  # sent as base64 (the SDK's default) and decoded by it
    assert (reply.usage.prompt_tokens, reply.usage.total_tokens) == (7, 7)
    sent = sent_to(stub, "embeddings")[0].body
    assert (sent["input"], sent["dimensions"], sent["encoding_format"]) == (["first text", "second text"], 3, "base64")
    settle_usage()
    record = InferenceRequest.objects.get()
    assert (record.endpoint, record.node_id, record.prompt_tokens, record.completion_tokens) == (
        "embeddings",
        node.pk,
        7,
        0,
    )
    assert record.cost == Decimal("0.007") and balance(client) == Decimal("0.993")  # 7 tokens at $1000/M, no output
    raw = httpx.post(
        f"{live_service.base_url}/v1/embeddings",
        json={"model": MODEL, "input": [1, 2, 3], "encoding_format": "float"},
        headers={"Authorization": f"Bearer {key}"},
        timeout=30,
    ).json()
    assert raw["object"] == "list" and raw["model"] == MODEL and raw["data"][0]["embedding"][:2] == [0.5, 0.75]
    assert raw["id"].startswith("emb-") and "completion_tokens" not in raw["usage"]
    found = api_client.get("/api/v1/generation/", {"id": raw["id"]}, HTTP_AUTHORIZATION=f"Bearer {key}").json()
    assert (found["endpoint"], found["prompt_tokens"], found["completion_tokens"]) == ("embeddings", 7, 0)
    settle_usage()
    usage = api_client.get("/api/v1/client/usage/", {"group_by": "model"}, HTTP_AUTHORIZATION=f"Bearer {key}").json()
    assert [(row["model"], row["requests"], row["prompt_tokens"], row["completion_tokens"]) for row in usage] == [
        (MODEL, 2, 14, 0)
    ]
    assert Decimal(usage[0]["cost"]) == Decimal("0.014") == Decimal("1.00") - balance(client)
    listed = api_client.get("/api/v1/inference/", {"endpoint": "embeddings"}, HTTP_AUTHORIZATION=f"Bearer {key}")
    assert [r["endpoint"] for r in listed.json()["results"]] == ["embeddings", "embeddings"]
    assert (
        api_client.get("/api/v1/inference/", {"endpoint": "chat"}, HTTP_AUTHORIZATION=f"Bearer {key}").json()["results"]
        == []
    )


def test_base64_embeddings_pass_through_as_the_node_encoded_them(live_service, user_client, node_on):
    client, key = user_client
    fund(client, "1.00")
    node_on()

    reply = sdk(live_service, key).embeddings.create(model=MODEL, input="hello", encoding_format="base64")

    assert struct.unpack("<4f", base64.b64decode(reply.data[0].embedding)) == (0.5, 0.75, 1.0, 1.25)


def test_a_node_over_reporting_embedding_tokens_is_billed_at_most_the_input_cap(live_service, user_client, node_on):
    client, key = user_client
    fund(client, "1.00")
    _, stub = node_on(input_price="1000.00")
    stub.behaviour.usage = {"prompt_tokens": 1_000_000, "completion_tokens": 500, "total_tokens": 1_000_500}

    reply = sdk(live_service, key).embeddings.create(model=MODEL, input="abcd")

    # 4 bytes + 16 for the one input + 64: the most prompt tokens believed (metering.PromptSize.cap)
    assert reply.usage.prompt_tokens == 84
    settle_usage()
    record = InferenceRequest.objects.get()
    assert (record.completion_tokens, record.usage_estimated, record.cost) == (0, True, Decimal("0.084"))
    assert balance(client) == Decimal("1.00") - Decimal("0.084")


def test_embeddings_bad_input_is_400_naming_the_parameter(live_service, user_client, node_on):
    client, key = user_client
    fund(client, "1.00")
    _, stub = node_on()

    for bad, param in (({"input": []}, "input"), ({"input": "x", "encoding_format": "int8"}, "encoding_format")):
        r = httpx.post(
            f"{live_service.base_url}/v1/embeddings",
            json={"model": MODEL, **bad},
            headers={"Authorization": f"Bearer {key}"},
            timeout=30,
        )
        assert r.status_code == 400 and r.json()["error"]["param"] == param
    assert stub.requests == []


# --- money, limits, nodes -----------------------------------------------------------------------------------------


def test_no_money_is_402_on_both_and_no_node_is_asked(live_service, user_client, node_on):
    _, key = user_client
    _, stub = node_on()

    with pytest.raises(openai.APIStatusError) as embedding:
        sdk(live_service, key).embeddings.create(model=MODEL, input="hi")
    with pytest.raises(openai.APIStatusError) as completion:
        sdk(live_service, key).completions.create(model=MODEL, prompt="hi")

    assert embedding.value.status_code == completion.value.status_code == 402
    assert stub.requests == [] and InferenceRequest.objects.count() == 0


def test_a_keys_limits_apply(live_service, user_client, node_on):
    client, _ = user_client
    fund(client, "1.00")
    _, stub = node_on()
    _, narrow = api_key_create(client=client, name="narrow", allowed_models=["other/model"])
    _, capped = api_key_create(client=client, name="capped", rpm=1)

    with pytest.raises(openai.PermissionDeniedError):
        sdk(live_service, narrow).embeddings.create(model=MODEL, input="hi")
    sdk(live_service, capped).embeddings.create(model=MODEL, input="hi")
    with pytest.raises(openai.RateLimitError):
        sdk(live_service, capped).completions.create(model=MODEL, prompt="hi")

    assert len(sent_to(stub, "embeddings")) == 1 and sent_to(stub, "completions") == []


def test_a_node_without_the_endpoint_is_skipped_for_one_that_has_it_and_not_cooled_down(
    live_service, user_client, node_on
):
    client, key = user_client
    fund(client, "1.00")
    # The cheaper node ranks first and lacks /v1/embeddings, as a chat-only server does.
    chat_only, bare = node_on("bare", input_price="0.50", output_price="0.50")
    full, stub = node_on("full", input_price="1.00", output_price="1.00")
    bare.behaviour.serves = ("chat/completions",)

    reply = sdk(live_service, key).embeddings.create(model=MODEL, input="hi")

    assert len(reply.data) == 1
    assert len(sent_to(bare, "embeddings")) == len(sent_to(stub, "embeddings")) == 1  # asked first, then skipped
    settle_usage()
    assert InferenceRequest.objects.get().node_id == full.pk
    chat_only.refresh_from_db()
    assert chat_only.consecutive_failures == 0  # not at fault: it answers chat as before


def test_no_node_with_the_endpoint_is_400_endpoint_not_served_and_nothing_is_charged(
    live_service, user_client, node_on
):
    client, key = user_client
    fund(client, "1.00")
    node, stub = node_on()
    stub.behaviour.serves = ("chat/completions", "completions")

    with pytest.raises(openai.BadRequestError) as caught:
        sdk(live_service, key).embeddings.create(model=MODEL, input="hi")

    assert caught.value.code == "endpoint_not_served" and len(sent_to(stub, "embeddings")) == 1
    settle_usage()
    record = InferenceRequest.objects.get()
    assert (record.status, record.cost, record.error_code) == ("failed", Decimal("0"), "endpoint_not_served")
    assert balance(client) == Decimal("1.00")
    assert Node.objects.get(pk=node.pk).consecutive_failures == 0


def test_a_streamed_text_completion_skips_a_node_without_the_path(live_service, user_client, node_on):
    client, key = user_client
    fund(client, "1.00")
    _, bare = node_on("bare", input_price="0.50", output_price="0.50")
    full, stub = node_on("full", input_price="1.00", output_price="1.00")
    bare.behaviour.serves = ("chat/completions", "embeddings")
    stub.behaviour.answer = "all good"

    chunks = list(sdk(live_service, key).completions.create(model=MODEL, prompt="Say", stream=True))

    assert "".join(c.choices[0].text for c in chunks if c.choices) == "all good"
    assert len(sent_to(bare, "completions")) == len(sent_to(stub, "completions")) == 1
    settle_usage()
    assert InferenceRequest.objects.get().node_id == full.pk
