"""A client can read what it paid (API.md §10): every inference charge is its own ledger line of minus exactly the
charge, kind `inference`, ref `inference:<id>`, on every path that is served in-process (the seed resource's
wait, stream and batch, and the Django /v1 view). The lean /v1 path is in test_balance_after_requests.py."""

import json
from decimal import Decimal

import pytest

from inference.models import InferenceRequest
from tests.conftest import bearer
from tests.inference.conftest import MODEL, balance, fund, sse_events, streamed

pytestmark = pytest.mark.django_db(transaction=True)

LEDGER_URL = "/api/v1/client/ledger/"


def lines_of(api_client, key: str, ref: str) -> list[tuple[str, Decimal]]:  # type: ignore[no-untyped-def]
    """(kind, amount) of the caller's ledger lines naming `ref`, oldest first."""
    r = api_client.get(LEDGER_URL, {"ref": ref, "ordering": "id"}, **bearer(key))
    assert r.status_code == 200
    assert {e["ref"] for e in r.json()["results"]} <= {ref}
    return [(e["kind"], Decimal(e["amount"])) for e in r.json()["results"]]


def assert_charged_once(api_client, key: str, request_id: int, cost: Decimal) -> None:  # type: ignore[no-untyped-def]
    """The request reads as hold, release, charge: the charge a line of minus exactly its cost."""
    held = InferenceRequest.objects.get(pk=request_id).held_amount
    assert cost > 0
    assert lines_of(api_client, key, f"inference:{request_id}") == [
        ("hold", -held),
        ("release", held),
        ("inference", -cost),
    ]


def test_a_seed_question_shows_its_charge_as_one_line(api_client, user_client, node_on, provider):
    client, key = user_client
    fund(client, "5.00")
    _, stub = node_on(input_price="1000.00", output_price="2000.00")
    stub.behaviour.answer = "Four."
    stub.behaviour.prompt_tokens = 10

    r = api_client.post(
        "/api/v1/inference/", {"question_text": "2 + 2?", "desired_model": MODEL}, format="json", **bearer(key)
    )

    assert r.status_code == 201, r.content
    record = r.json()
    assert Decimal(record["cost"]) == Decimal("0.012000")
    assert_charged_once(api_client, key, record["id"], Decimal("0.012000"))
    assert lines_of(api_client, provider[1], f"inference:{record['id']}") == [("inference", Decimal("0.008400"))]
    assert balance(client) == Decimal("4.988000")


def test_a_seed_stream_shows_its_charge_as_one_line(api_client, user_client, node_on):
    client, key = user_client
    fund(client, "1.00")
    node_on(input_price="1000.00", output_price="1000.00")

    r = api_client.post(
        "/api/v1/inference/stream/", {"question_text": "hi", "desired_model": MODEL}, format="json", **bearer(key)
    )

    record = json.loads(sse_events(streamed(r))[-2][1])
    assert_charged_once(api_client, key, record["id"], Decimal(record["cost"]))


def test_each_batch_item_shows_its_own_charge(api_client, user_client, node_on):
    client, key = user_client
    fund(client, "1.00")
    node_on(input_price="1000.00", output_price="1000.00")

    r = api_client.post(
        "/api/v1/inference/batch/", {"model": MODEL, "prompts": ["a", "bb"], "max_tokens": 8}, **bearer(key)
    )

    items = api_client.get(f"/api/v1/inference/batch/{r.json()['id']}/", **bearer(key)).json()["items"]
    for item in items:
        assert_charged_once(api_client, key, item["id"], Decimal(item["cost"]))
    assert balance(client) == Decimal("1.00") - sum(Decimal(i["cost"]) for i in items)


def test_a_chat_completion_through_the_django_view_shows_its_charge_as_one_line(api_client, user_client, node_on):
    client, key = user_client
    fund(client, "1.00")
    node_on(input_price="1000.00", output_price="1000.00")

    body = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 50}  # held for 50
    r = api_client.post("/v1/chat/completions", body, **bearer(key))

    assert r.status_code == 200, r.content
    record = InferenceRequest.objects.get()
    assert_charged_once(api_client, key, record.pk, record.cost)
    assert balance(client) == Decimal("1.00") - record.cost


@pytest.mark.django_db  # no commit: the queued request is not run, so its hold stays
def test_the_client_shows_what_is_held_apart_from_its_balance(api_client, user_client, node_on):
    client, key = user_client
    fund(client, "1.00")
    node_on()

    r = api_client.post(
        "/api/v1/inference/",
        {"question_text": "hi", "desired_model": MODEL, "max_tokens": 100},
        format="json",
        HTTP_PREFER="respond-async",
        **bearer(key),
    )

    held = InferenceRequest.objects.get(pk=r.json()["id"]).held_amount
    me = api_client.get(f"/api/v1/client/list/{client.pk}/", **bearer(key)).json()
    assert (Decimal(me["balance"]), Decimal(me["held"])) == (Decimal("1.00") - held, held)
    listed = api_client.get("/api/v1/client/list/", **bearer(key)).json()["results"]
    assert Decimal(listed[0]["held"]) == held
