"""Issue 13's request side through both /v1 doors (API.md §11): routing controls, fallback models, sticky
sessions, the forwarded body and the hold's sizing. The lean door runs under a live uvicorn server and is called
with the official SDK (`extra_body`) or raw HTTP; the web door is the Django view, called in process."""

import base64
from decimal import Decimal

import httpx
import openai
import pytest

from clients.models import LedgerEntry
from inference.models import InferenceRequest
from inference.v1.params import user_hash
from llm_models.models import LlmModel
from tests.conftest import bearer
from tests.inference.conftest import MODEL, balance, fund, settle_usage
from tests.inference.test_prompt_parts import png

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("usage_journal_clean")]
URL = "/v1/chat/completions"
MESSAGES = [{"role": "user", "content": "Say something nice"}]


@pytest.fixture(params=["lean", "web"])
def door(request, api_client, user_client):  # type: ignore[no-untyped-def]
    """`post(body) -> (status, json)` through one door, as the funded `user_client`."""
    client, key = user_client
    fund(client, "1.00")
    if request.param == "lean":
        service = request.getfixturevalue("live_service")

        def post(body: dict) -> tuple[int, dict]:
            r = httpx.post(
                f"{service.base_url}{URL}", json=body, headers={"Authorization": f"Bearer {key}"}, timeout=30
            )
            return r.status_code, r.json()

    else:

        def post(body: dict) -> tuple[int, dict]:
            r = api_client.post(URL, body, format="json", **bearer(key))
            return r.status_code, r.json()

    post.door = request.param  # type: ignore[attr-defined]
    return post


def sdk(live_service, key: str) -> openai.OpenAI:  # type: ignore[no-untyped-def]
    return openai.OpenAI(base_url=f"{live_service.base_url}/v1", api_key=key, max_retries=0, timeout=30)


def test_provider_only_naming_the_broken_node_is_503_and_the_healthy_node_gets_nothing(door, node_on):
    _, broken = node_on("broken")
    _, healthy = node_on("healthy")
    broken.behaviour.status = 500

    status, body = door({"model": MODEL, "messages": MESSAGES, "provider": {"only": ["broken"]}})

    assert (status, body["error"]["code"]) == (503, "no_capacity")
    assert len(broken.chat_requests) >= 1 and healthy.chat_requests == []


def test_max_price_below_every_node_is_400_and_nothing_is_held(door, node_on, user_client):
    node_on("a", input_price="1.00", output_price="2.00")
    node_on("b", input_price="3.00", output_price="1.00")
    before, entries = balance(user_client[0]), LedgerEntry.objects.count()

    status, body = door(
        {"model": MODEL, "messages": MESSAGES, "provider": {"max_price": {"prompt": 0.5, "completion": 0.5}}}
    )

    assert (status, body["error"]["code"], body["error"]["param"]) == (
        400,
        "no_node_within_price",
        "provider.max_price",
    )
    assert InferenceRequest.objects.count() == 0 and balance(user_client[0]) == before
    assert LedgerEntry.objects.count() == entries  # no hold, no lease


def test_six_requests_of_one_session_land_on_one_node_of_three_and_move_when_it_fails(door, node_on):
    stubs = {name: node_on(name, input_price=price)[1] for name, price in (("n0", "1"), ("n1", "1"), ("n2", "5"))}

    def ask(**extra: object) -> None:
        status, body = door({"model": MODEL, "messages": MESSAGES, "session_id": "chat-1", **extra})
        assert status == 200, body

    ask(provider={"order": ["n2"]})  # the dearest node answers first: the session is remembered there
    for _ in range(5):
        ask()
    assert [len(stubs[n].chat_requests) for n in ("n0", "n1", "n2")] == [0, 0, 6]

    stubs["n2"].behaviour.status = 500
    ask()
    moved = [n for n in ("n0", "n1") if stubs[n].chat_requests]
    assert len(moved) == 1
    stubs["n2"].behaviour.status = 200
    ask()
    assert len(stubs[moved[0]].chat_requests) == 2  # the session stays where it moved


def test_unknown_parameters_reach_the_node_unchanged_and_user_arrives_hashed(live_service, user_client, node_on):
    client, key = user_client
    fund(client, "1.00")
    _, stub = node_on()

    sdk(live_service, key).chat.completions.create(
        model=MODEL,
        messages=MESSAGES,
        seed=7,
        user="alice@example.com",
        extra_body={
            "top_k": 20,
            "chat_template_kwargs": {"enable_thinking": False},
            "provider": {"sort": "price"},
            "session_id": "s-1",
        },
    )

    sent = stub.chat_requests[0].body
    assert (sent["top_k"], sent["seed"], sent["chat_template_kwargs"]) == (20, 7, {"enable_thinking": False})
    assert sent["user"] == user_hash("alice@example.com") != "alice@example.com"
    assert not {"provider", "models", "session_id", "max_tokens"} & sent.keys()


def test_a_fallback_model_answers_and_is_billed_at_its_own_price(door, node_on, user_client):
    _, first = node_on("first", model="stub/first", input_price="1.00", output_price="1.00")
    _, second = node_on("second", input_price="1000.00", output_price="1000.00")
    first.behaviour.status = 500
    second.behaviour.answer = "You are great"
    second.behaviour.prompt_tokens = 6

    status, body = door({"model": "stub/first", "models": [MODEL], "messages": MESSAGES, "max_tokens": 50})

    assert status == 200, body
    assert body["model"] == MODEL
    assert first.chat_requests[0].body["model"] == "stub/first" and second.chat_requests[0].body["model"] == MODEL
    settle_usage()
    row = InferenceRequest.objects.get()
    assert row.cost == Decimal("0.009")  # (6 + 3) tokens at the answering model's 1000 per 1M
    assert row.desired_model == MODEL  # recorded as the model that answered (generation/ shows it)


def test_an_image_part_sizes_the_hold_and_its_tokens_are_billed(door, node_on):
    _, stub = node_on(input_price="1000.00", output_price="1000.00")
    stub.behaviour.prompt_tokens = 700  # a 1024x1024 image is 765 tokens: far more than the text's bytes
    image = "data:image/png;base64," + base64.b64encode(png(1024, 1024)).decode()
    content = [{"type": "text", "text": "What is this?"}, {"type": "image_url", "image_url": {"url": image}}]

    status, body = door({"model": MODEL, "messages": [{"role": "user", "content": content}], "max_tokens": 10})

    assert status == 200, body
    assert body["usage"]["prompt_tokens"] == 700  # not cut to a text-only cap
    settle_usage()
    row = InferenceRequest.objects.get()
    if door.door == "web":  # its row holds the request's own hold (the lean door's comes from a lease)
        assert row.held_amount >= Decimal(765 + 10) * Decimal("0.001")


def test_an_omitted_max_tokens_is_the_nodes_default_held_for_the_context_window(door, node_on):
    _, stub = node_on()
    LlmModel.objects.filter(name=MODEL).update(context_window=1000)

    status, body = door({"model": MODEL, "messages": MESSAGES})

    assert status == 200, body
    assert "max_tokens" not in stub.chat_requests[0].body
    settle_usage()
    row = InferenceRequest.objects.get()
    assert 900 < row.max_tokens < 1000  # the window less the prompt's estimate, not INFERENCE_DEFAULT_MAX_TOKENS
