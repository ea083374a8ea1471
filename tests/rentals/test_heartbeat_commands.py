"""Commands reach the node in heartbeat replies until it reports their outcome (API.md §3)."""

from datetime import timedelta

from clients.choices import ClientRole
from llm_models.choices import NodeCommandStatus
from llm_models.models import Node, NodeCommand
from rentals import payg, services
from rentals.commands import rental_command
from tests.conftest import bearer
from tests.factories import make_client, make_node
from tests.llm_models.conftest import HEARTBEAT_URL
from tests.llm_models.test_heartbeat_fastpath import AGENT_BODY
from tests.llm_models.test_heartbeat_fastpath import post as fast_path_post
from tests.rentals.conftest import RENTALS_URL, SSH_KEY, fund, make_rentable_node


def beat(api_client, token, **body):  # type: ignore[no-untyped-def]
    return api_client.post(HEARTBEAT_URL, body, format="json", **bearer(token))


def test_a_rentals_commands_are_resent_until_their_outcome_arrives(api_client, operator, renter):
    node, token = make_rentable_node(operator)
    rental = services.rental_start(client=renter[0], node_id=node.pk, hours=1, ssh_public_key=SSH_KEY)
    start = rental_command(rental=rental, action="start")

    first = beat(api_client, token).json()["commands"]
    second = beat(api_client, token).json()["commands"]

    assert [c["action"] for c in first] == ["start", "start"]
    assert first == second
    assert first[0]["params"] == {
        "rental_id": rental.pk,
        "image": "",
        "env": {},
        "ports": [],
        "volumes": [],
        "jupyter": False,
        "snapshot_id": None,
        "ssh_public_key": SSH_KEY,
        "ssh_user": "renter",
    }
    assert NodeCommand.objects.get(pk=start.pk).status == NodeCommandStatus.RUNNING

    results = [
        {"id": first[0]["id"], "status": "succeeded", "output": "key installed"},
        {"id": start.pk, "status": "failed", "output": "exit 3"},
    ]
    third = beat(api_client, token, results=results).json()["commands"]

    assert third == []
    key_job, start_job = NodeCommand.objects.filter(rental=rental).order_by("id")
    assert (key_job.status, key_job.result) == ("succeeded", "key installed")
    assert (start_job.status, start_job.result) == ("failed", "exit 3")


def test_unsupported_fails_the_job_and_is_remembered_for_the_node(api_client, operator, renter):
    node, token = make_rentable_node(operator)
    rental = services.rental_start(client=renter[0], node_id=node.pk, hours=1)
    job = rental_command(rental=rental, action="reset")
    beat(api_client, token)

    beat(api_client, token, results=[{"id": job.pk, "status": "unsupported", "output": ""}])

    job.refresh_from_db()
    assert job.status == NodeCommandStatus.FAILED
    assert "does not support" in job.result
    assert Node.objects.get(pk=node.pk).unsupported_actions == ["reset"]
    r = api_client.post(f"/api/v1/rentals/{rental.pk}/reset/", **bearer(renter[1]))
    assert r.status_code == 501
    assert api_client.post(f"/api/v1/rentals/{rental.pk}/stop/", **bearer(renter[1])).status_code == 202


def test_results_for_another_nodes_commands_and_unknown_ids_are_ignored(api_client, operator, renter):
    _node, token = make_rentable_node(operator)
    other, _other_token = make_rentable_node(operator)
    rental = services.rental_start(client=renter[0], node_id=other.pk, hours=1)
    job = rental_command(rental=rental, action="stop")

    r = beat(api_client, token, results=[{"id": job.pk, "status": "succeeded"}, {"id": 987654, "status": "failed"}])

    assert r.status_code == 200
    assert NodeCommand.objects.get(pk=job.pk).status == NodeCommandStatus.PENDING


def test_a_late_result_for_a_closed_command_changes_nothing(api_client, operator, renter):
    node, token = make_rentable_node(operator)
    rental = services.rental_start(client=renter[0], node_id=node.pk, hours=1)
    job = rental_command(rental=rental, action="stop")
    beat(api_client, token, results=[{"id": job.pk, "status": "succeeded", "output": "ok"}])

    beat(api_client, token, results=[{"id": job.pk, "status": "failed", "output": "again"}])

    job.refresh_from_db()
    assert (job.status, job.result) == ("succeeded", "ok")


def test_a_node_without_commands_gets_an_empty_list(api_client, operator):
    _, token = make_node(owner=operator)

    assert beat(api_client, token).json()["commands"] == []


# --- A rental that ends takes its commands with it (API.md §10) ---------------------------------------------


def test_a_cancelled_rentals_unreported_commands_are_withdrawn_and_only_end_is_delivered(api_client, operator, renter):
    node, token = make_rentable_node(operator)
    rental = services.rental_start(client=renter[0], node_id=node.pk, hours=1, ssh_public_key=SSH_KEY)
    start = rental_command(rental=rental, action="start")
    sent = beat(api_client, token).json()["commands"]  # both sent once: running, not yet reported
    stop = rental_command(rental=rental, action="stop")  # queued, never sent
    assert [c["action"] for c in sent] == ["start", "start"]  # the rental's own first `start`, then the renter's

    assert api_client.delete(f"{RENTALS_URL}{rental.pk}/", **bearer(renter[1])).status_code == 200
    after = beat(api_client, token).json()["commands"]

    assert [c["action"] for c in after] == ["end"]
    assert beat(api_client, token).json()["commands"] == after  # `end` itself is re-sent until reported
    for job in (sent[0]["id"], start.pk, stop.pk):
        polled = api_client.get(f"/api/v1/jobs/{job}/", **bearer(renter[1]))
        assert (polled.status_code, polled.json()["status"]) == (200, "cancelled")
        assert "ended (cancelled)" in polled.json()["result"]


def test_a_cancelled_payg_rentals_unreported_commands_are_withdrawn_and_only_end_is_delivered(
    api_client, operator, renter
):
    """Pay as you go ends the same way (rentals/payg.py `payg_close`): the first `start`, sent but not reported,
    and a queued `reset` are withdrawn; the node gets `end` alone."""
    node, token = make_rentable_node(operator)
    rental = services.rental_start(client=renter[0], node_id=node.pk, billing="payg", ssh_public_key=SSH_KEY)
    sent = beat(api_client, token).json()["commands"]
    reset = rental_command(rental=rental, action="reset")
    assert [c["action"] for c in sent] == ["start"]

    assert api_client.delete(f"{RENTALS_URL}{rental.pk}/", **bearer(renter[1])).status_code == 200
    after = beat(api_client, token).json()["commands"]

    assert [c["action"] for c in after] == ["end"]
    for job in (sent[0]["id"], reset.pk):
        polled = api_client.get(f"/api/v1/jobs/{job}/", **bearer(renter[1])).json()
        assert polled["status"] == "cancelled" and "ended (cancelled)" in polled["result"], polled


def test_a_payg_rental_out_of_money_withdraws_its_commands_and_the_node_gets_stop_then_end(api_client, operator):
    """API.md §14 "the node is told to stop": `stop`, then `end`, in that order in one reply (the agent runs them
    in order); the unreported `start` is withdrawn."""
    node, token = make_rentable_node(operator)
    client, _ = make_client()
    fund(client, "2.50")  # exactly the hold: the first renewal fails
    rental = services.rental_start(client=client, node_id=node.pk, billing="payg")
    start = NodeCommand.objects.get(rental=rental, action="start")

    payg.rental_payg_charge(rental_id=rental.pk, now=rental.starts_at + timedelta(seconds=5))
    commands = beat(api_client, token).json()["commands"]

    assert [(c["action"], c["params"]) for c in commands] == [
        ("stop", {"rental_id": rental.pk}),
        ("end", {"rental_id": rental.pk}),
    ]
    assert NodeCommand.objects.get(pk=start.pk).status == NodeCommandStatus.CANCELLED
    assert "ended (ended_insufficient_funds)" in NodeCommand.objects.get(pk=start.pk).result


def test_a_completed_rentals_unreported_commands_are_withdrawn(api_client, operator, renter):
    node, token = make_rentable_node(operator)
    rental = services.rental_start(client=renter[0], node_id=node.pk, hours=1)
    reset = rental_command(rental=rental, action="reset")

    assert services.rentals_complete_ended(now=rental.ends_at + timedelta(seconds=1)) == 1
    commands = beat(api_client, token).json()["commands"]

    assert [c["action"] for c in commands] == ["end"]
    assert NodeCommand.objects.get(pk=reset.pk).status == NodeCommandStatus.CANCELLED


def test_a_withdrawn_command_the_node_had_received_still_records_its_real_outcome(api_client, operator, renter):
    node, token = make_rentable_node(operator)
    rental = services.rental_start(client=renter[0], node_id=node.pk, hours=1)
    start = rental_command(rental=rental, action="start")
    beat(api_client, token)
    services.rental_cancel(rental=rental)

    beat(api_client, token, results=[{"id": start.pk, "status": "succeeded", "output": "started"}])

    start.refresh_from_db()
    assert (start.status, start.result) == (NodeCommandStatus.SUCCEEDED, "started")


def test_a_withdrawn_command_is_never_sent_by_the_heartbeat_fast_path_either(transactional_db, api_client):
    """Parity: once `end` is reported, the SQL fast path answers (no commands), as the Django view does."""
    operator, _ = make_client(role=ClientRole.GPU_PROVIDER, approved=True)
    renter, _ = make_client()
    fund(renter)
    node, token = make_rentable_node(operator)
    rental = services.rental_start(client=renter, node_id=node.pk, hours=1)
    rental_command(rental=rental, action="start")
    services.rental_cancel(rental=rental)
    end = NodeCommand.objects.get(rental=rental, action="end")
    beat(api_client, token, results=[{"id": end.pk, "status": "succeeded", "output": ""}])

    fast, django_calls = fast_path_post(AGENT_BODY, token=token)
    via_django = beat(api_client, token)

    assert (fast.status_code, django_calls, fast.json()["commands"]) == (200, 0, [])
    assert via_django.json()["commands"] == []
