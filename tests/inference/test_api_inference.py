"""Seed 004's /api/v1/inference/: ask, wait or not, read your own, change while queued, delete when finished.

Tasks run eagerly here (a real worker runs them in test_worker.py); tests that need the task to run at commit use
a transactional database.
"""

import json
from decimal import Decimal

import pytest

from inference.choices import InferenceStatus
from inference.models import InferenceRequest
from llm_models.models import Node
from tests.conftest import bearer
from tests.inference.conftest import MODEL, balance, fund, live_node, sse_events, stale, streamed

URL = "/api/v1/inference/"
ASYNC = {"HTTP_PREFER": "respond-async"}


def ask(api_client, key, **body):  # type: ignore[no-untyped-def]
    payload = {"question_text": "What is 2 + 2?", "desired_model": MODEL, **body}
    return api_client.post(URL, payload, format="json", **bearer(key))


@pytest.mark.django_db(transaction=True)
def test_asking_waits_for_the_answer_and_charges_the_metered_cost(api_client, user_client, node_on, provider):
    client, key = user_client
    fund(client, "5.00")
    node, stub = node_on(input_price="1000.00", output_price="2000.00")
    stub.behaviour.answer = "Four."
    stub.behaviour.prompt_tokens = 10

    r = ask(api_client, key)

    assert r.status_code == 201, r.content
    body = r.json()
    assert (body["status"], body["answer_text"], body["node"]) == ("completed", "Four.", node.pk)
    assert (body["prompt_tokens"], body["completion_tokens"]) == (10, 1)
    # 10 x 1000/1M + 1 x 2000/1M
    assert Decimal(body["cost"]) == Decimal("0.012000")
    assert balance(client) == Decimal("4.988000")
    assert balance(provider[0]) == Decimal("0.008400")  # the operator's 70%
    assert stub.chat_requests[0].body["messages"] == [{"role": "user", "content": "What is 2 + 2?"}]


def test_respond_async_answers_202_with_the_queued_record_and_holds_the_maximum(api_client, user_client, node_on):
    client, key = user_client
    fund(client, "1.00")
    node_on()

    r = api_client.post(
        URL, {"question_text": "hi", "desired_model": MODEL, "max_tokens": 100}, format="json", **bearer(key), **ASYNC
    )

    assert r.status_code == 202
    assert r.json()["status"] == "queued"
    req = InferenceRequest.objects.get(pk=r.json()["id"])
    assert req.held_amount > 0
    assert balance(client) == Decimal("1.00") - req.held_amount


def test_an_unknown_model_is_404_model_not_found(api_client, user_client):
    r = ask(api_client, user_client[1], desired_model="nobody/has-this")

    assert r.status_code == 404
    assert r.json()["errors"][0]["code"] == "model_not_found"


def test_a_model_without_live_nodes_is_503_with_retry_after(api_client, user_client, provider):
    stale(live_node(owner=provider[0]))

    r = ask(api_client, user_client[1])

    assert r.status_code == 503
    assert r.json()["errors"][0]["code"] == "no_capacity"
    assert int(r["Retry-After"]) > 0
    assert not InferenceRequest.objects.exists()


def test_a_balance_too_low_is_402_and_leaves_nothing(api_client, user_client, node_on):
    node_on()

    r = ask(api_client, user_client[1])

    assert r.status_code == 402
    assert r.json()["errors"][0]["code"] == "insufficient_funds"
    assert not InferenceRequest.objects.exists()


def test_anonymous_is_401(api_client):
    assert api_client.post(URL, {"question_text": "x", "desired_model": MODEL}, format="json").status_code == 401


def test_asking_for_someone_else_is_400(api_client, user_client, other_user, node_on):
    node_on()

    r = ask(api_client, user_client[1], client=other_user[0].pk)

    assert r.status_code == 400
    assert r.json()["errors"][0]["attr"] == "client"
    assert r.json()["errors"][0]["code"] == "not_yours"


def test_the_schema_documents_not_yours_on_client(api_client):
    schema = api_client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()

    for operation in ("InferenceCreate", "InferenceStreamCreate"):
        error = schema["components"]["schemas"][f"{operation}ClientErrorComponent"]["properties"]
        assert error["attr"]["enum"] == ["client"]
        assert "not_yours" in error["code"]["enum"]


def test_bad_input_is_400_naming_the_field(api_client, user_client):
    r = ask(api_client, user_client[1], max_tokens=0)

    assert r.status_code == 400
    assert r.json()["errors"][0]["attr"] == "max_tokens"


def _queued(api_client, key):  # type: ignore[no-untyped-def]
    r = api_client.post(URL, {"question_text": "hi", "desired_model": MODEL}, format="json", **bearer(key), **ASYNC)
    assert r.status_code == 202, r.content
    return r.json()["id"]


def test_you_see_only_your_own_records(api_client, user_client, other_user, node_on):
    node_on()
    fund(user_client[0])
    fund(other_user[0])
    mine = _queued(api_client, user_client[1])
    theirs = _queued(api_client, other_user[1])

    listed = api_client.get(URL, **bearer(user_client[1])).json()
    assert [r["id"] for r in listed["results"]] == [mine]
    assert api_client.get(f"{URL}{theirs}/", **bearer(user_client[1])).status_code == 404
    assert api_client.get(f"{URL}{mine}/", **bearer(user_client[1])).status_code == 200
    assert api_client.get(f"{URL}?status=queued&search=hi&ordering=-cost", **bearer(user_client[1])).status_code == 200


def test_a_queued_request_can_be_changed_and_its_hold_follows(api_client, user_client, node_on):
    client, key = user_client
    node_on()
    fund(client, "1.00")
    pk = _queued(api_client, key)
    before = InferenceRequest.objects.get(pk=pk)

    r = api_client.patch(f"{URL}{pk}/", {"max_tokens": 2000}, format="json", **bearer(key))

    assert r.status_code == 200, r.content
    after = InferenceRequest.objects.get(pk=pk)
    assert after.max_tokens == 2000 and after.held_amount > before.held_amount
    assert balance(client) == Decimal("1.00") - after.held_amount


def test_a_finished_request_cannot_be_changed(api_client, user_client, node_on):
    node_on()
    fund(user_client[0])
    pk = _queued(api_client, user_client[1])
    InferenceRequest.objects.filter(pk=pk).update(status=InferenceStatus.COMPLETED)

    r = api_client.put(
        f"{URL}{pk}/", {"question_text": "x", "desired_model": MODEL}, format="json", **bearer(user_client[1])
    )

    assert r.status_code == 409
    assert r.json()["errors"][0]["code"] == "inference_not_editable"


def test_deleting_is_409_while_running_and_cancelling_a_queued_one_refunds_its_hold(api_client, user_client, node_on):
    client, key = user_client
    node_on()
    fund(client, "1.00")
    running, queued = _queued(api_client, key), _queued(api_client, key)
    InferenceRequest.objects.filter(pk=running).update(status=InferenceStatus.RUNNING)

    assert api_client.delete(f"{URL}{running}/", **bearer(key)).status_code == 409
    assert api_client.delete(f"{URL}{queued}/", **bearer(key)).status_code == 204
    assert balance(client) == Decimal("1.00") - InferenceRequest.objects.get(pk=running).held_amount


@pytest.mark.django_db(transaction=True)
def test_deleting_a_finished_record_keeps_the_ledger(api_client, user_client, node_on):
    client, key = user_client
    fund(client, "1.00")
    node_on()
    pk = ask(api_client, key).json()["id"]
    spent = Decimal("1.00") - balance(client)

    assert api_client.delete(f"{URL}{pk}/", **bearer(key)).status_code == 204
    assert balance(client) == Decimal("1.00") - spent
    assert spent > 0


@pytest.mark.django_db(transaction=True)
def test_failover_before_the_first_byte_answers_from_another_node_and_cools_the_failed_one(
    api_client, user_client, node_on
):
    client, key = user_client
    fund(client)
    broken, broken_stub = node_on("broken", latency_ewma_ms=5.0)
    good, good_stub = node_on("good", latency_ewma_ms=800.0)
    broken_stub.behaviour.status = 500
    good_stub.behaviour.answer = "from good"

    r = ask(api_client, key)

    assert r.status_code == 201
    assert (r.json()["node"], r.json()["answer_text"]) == (good.pk, "from good")
    broken.refresh_from_db()
    assert broken.consecutive_failures == 1 and broken.cooldown_until is not None


@pytest.mark.django_db(transaction=True)
def test_when_every_node_fails_the_request_fails_and_the_hold_is_released(api_client, user_client, node_on):
    client, key = user_client
    fund(client, "1.00")
    _, stub = node_on()
    stub.behaviour.status = 502

    r = ask(api_client, key)

    assert r.status_code == 201
    assert (r.json()["status"], r.json()["error_code"], r.json()["cost"]) == ("failed", "node_bad_status", "0.000000")
    assert balance(client) == Decimal("1.00")


@pytest.mark.django_db(transaction=True)
def test_a_stream_relays_chunks_then_the_record_then_done(api_client, user_client, node_on):
    client, key = user_client
    fund(client, "1.00")
    node, stub = node_on()
    stub.behaviour.answer = "streamed answer here"

    r = api_client.post(f"{URL}stream/", {"question_text": "hi", "desired_model": MODEL}, format="json", **bearer(key))

    assert r.status_code == 200 and r["Content-Type"].startswith("text/event-stream")
    events = sse_events(streamed(r))
    assert events[-1] == (None, "[DONE]")
    assert events[-2][0] == "inference"
    record = json.loads(events[-2][1])
    assert (record["status"], record["answer_text"], record["node"]) == ("completed", "streamed answer here", node.pk)
    text = "".join(
        c["choices"][0]["delta"].get("content") or "" for c in (json.loads(d) for n, d in events[:-2]) if c["choices"]
    )
    assert text == "streamed answer here"
    assert balance(client) == Decimal("1.00") - Decimal(record["cost"])


@pytest.mark.django_db(transaction=True)
def test_a_node_dying_mid_stream_ends_with_an_error_event_and_a_partial_charge(api_client, user_client, node_on):
    client, key = user_client
    fund(client, "1.00")
    node, stub = node_on(input_price="1000.00", output_price="1000.00")
    stub.behaviour.answer = "one two three four five six"
    stub.behaviour.die_after_chunks = 2

    r = api_client.post(f"{URL}stream/", {"question_text": "hi", "desired_model": MODEL}, format="json", **bearer(key))

    events = sse_events(streamed(r))
    assert "[DONE]" not in [d for _, d in events]
    assert events[-2][0] == "error" and json.loads(events[-2][1])["error"]["code"] == "node_broken_stream"
    record = json.loads(events[-1][1])
    assert (record["status"], record["answer_text"], record["completion_tokens"]) == ("failed", "one two ", 2)
    # Only the 2 delivered output tokens: 2 x 1000 / 1M; the prompt is not charged when the node fails.
    assert Decimal(record["cost"]) == Decimal("0.002000")
    assert balance(client) == Decimal("0.998000")
    node.refresh_from_db()
    assert node.consecutive_failures == 1


@pytest.mark.django_db(transaction=True)
def test_a_batch_runs_each_prompt_and_bills_each_on_its_own(api_client, user_client, node_on):
    client, key = user_client
    fund(client, "1.00")
    node_on()

    r = api_client.post(
        f"{URL}batch/", {"model": MODEL, "prompts": ["a", "b", "c"], "max_tokens": 32}, format="json", **bearer(key)
    )

    assert r.status_code == 202, r.content
    batch_id = r.json()["id"]
    got = api_client.get(f"{URL}batch/{batch_id}/", **bearer(key)).json()
    assert got["status"] == "completed"
    assert [i["question_text"] for i in got["items"]] == ["a", "b", "c"]
    costs = sum(Decimal(i["cost"]) for i in got["items"])
    assert costs > 0 and balance(client) == Decimal("1.00") - costs
    assert len({i["id"] for i in got["items"]}) == 3


def test_someone_elses_batch_is_404(api_client, user_client, other_user, node_on):
    node_on()
    fund(user_client[0])
    r = api_client.post(f"{URL}batch/", {"model": MODEL, "prompts": ["a"]}, format="json", **bearer(user_client[1]))

    assert api_client.get(f"{URL}batch/{r.json()['id']}/", **bearer(other_user[1])).status_code == 404


@pytest.mark.parametrize("prompts", [[1], ["a", 2.5], ["a", True], ["a", None]])
def test_a_batch_refuses_prompts_that_are_not_strings_naming_the_item(api_client, user_client, node_on, prompts):
    client, key = user_client
    fund(client)
    node_on()

    r = api_client.post(f"{URL}batch/", {"model": MODEL, "prompts": prompts}, format="json", **bearer(key))

    assert r.status_code == 400
    bad = next(i for i, p in enumerate(prompts) if not isinstance(p, str))
    assert r.json()["errors"][0]["attr"] == f"prompts.{bad}"
    assert not InferenceRequest.objects.exists()


def test_a_batch_needs_1_to_100_prompts(api_client, user_client):
    key = user_client[1]
    for prompts in ([], ["x"] * 101):
        r = api_client.post(f"{URL}batch/", {"model": MODEL, "prompts": prompts}, format="json", **bearer(key))
        assert r.status_code == 400
        assert r.json()["errors"][0]["attr"] == "prompts"


def test_revoked_and_offline_nodes_get_no_work(api_client, user_client, node_on, provider):
    fund(user_client[0])
    node, _ = node_on()
    Node.objects.filter(pk=node.pk).update(status="offline")

    assert ask(api_client, user_client[1]).status_code == 503


@pytest.mark.django_db(transaction=True)
def test_the_cheaper_faster_idler_node_gets_the_request_and_a_revoked_providers_node_none(
    api_client, user_client, node_on, provider
):
    from clients.choices import ClientRole
    from tests.factories import make_client

    client, key = user_client
    fund(client)
    revoked_owner, _ = make_client(role=ClientRole.GPU_PROVIDER, approved=False)
    _, revoked_stub = node_on("revoked", owner=revoked_owner, input_price="0", output_price="0", latency_ewma_ms=1.0)
    _, dear_stub = node_on("dear", input_price="5.00", output_price="9.00", latency_ewma_ms=900.0, active_requests=4)
    best, best_stub = node_on("best", input_price="0.50", output_price="1.00", latency_ewma_ms=100.0)

    r = ask(api_client, key)

    assert r.status_code == 201 and r.json()["node"] == best.pk
    assert (len(best_stub.chat_requests), len(dear_stub.chat_requests), len(revoked_stub.chat_requests)) == (1, 0, 0)
