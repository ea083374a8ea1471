"""The rentals API over HTTP: rent, read, cancel, lifecycle jobs, bulk and inventory (API.md §6)."""

from datetime import timedelta
from decimal import Decimal

import pytest
import time_machine
from django.utils import timezone

from clients.models import Client, Hold
from llm_models.choices import NodeStatus
from llm_models.models import Node, NodeCommand
from rentals import services
from rentals.models import Rental
from tests.conftest import bearer
from tests.factories import make_client, make_node
from tests.llm_models.conftest import errors_of
from tests.rentals.conftest import INVENTORY_URL, RENTALS_URL, SSH_KEY, make_rentable_node


def make_operator_key(operator: Client) -> str:
    from clients.services import api_key_create

    return api_key_create(client=operator, name="statement")[1]


def rent(api_client, raw, **body):  # type: ignore[no-untyped-def]
    return api_client.post(RENTALS_URL, body, format="json", **bearer(raw))


def test_renting_a_live_node_answers_201_with_billing_and_access(api_client, node, renter):
    _client, raw = renter

    r = rent(api_client, raw, node_id=node.pk, hours=3, ssh_public_key=SSH_KEY)

    assert r.status_code == 201, r.json()
    body = r.json()
    assert (body["node_id"], body["status"], body["hours"]) == (node.pk, "active", 3)
    assert (body["price_per_hour"], body["total"]) == ("2.500000", "7.500000")
    assert body["charged"] is None and body["refunded"] is None
    assert 3 * 3600 - 5 <= body["time_remaining"] <= 3 * 3600
    assert body["access"] == {"ssh_host": "gpu-7.example.net", "ssh_port": 2222, "ssh_user": "renter"}
    assert Hold.objects.get(key=f"rental:{body['id']}").amount == Decimal("7.5")
    command = NodeCommand.objects.get(rental_id=body["id"])
    assert (command.action, command.params["ssh_public_key"]) == ("start", SSH_KEY)


@pytest.mark.parametrize(
    ("setup", "code"),
    [
        (lambda node: Node.objects.filter(pk=node.pk).update(status=NodeStatus.OFFLINE), "node_unavailable"),
        (lambda node: Node.objects.filter(pk=node.pk).update(gpu=None), "node_not_rentable"),
        (lambda node: node.gpu.__class__.objects.filter(pk=node.gpu_id).update(price_per_hour=0), "node_not_rentable"),
        (
            lambda node: Node.objects.filter(pk=node.pk).update(last_heartbeat_at=timezone.now() - timedelta(hours=1)),
            "node_unavailable",
        ),
    ],
)
def test_a_node_that_cannot_be_rented_is_a_409_with_its_code(api_client, node, renter, setup, code):
    setup(node)

    r = rent(api_client, renter[1], node_id=node.pk, hours=1)

    assert (r.status_code, errors_of(r)) == (409, [(code, None)])
    assert not Rental.objects.exists()


def test_an_already_rented_node_is_a_409(api_client, node, renter):
    rent(api_client, renter[1], node_id=node.pk, hours=1)
    other, raw = make_client()
    services_fund(other)

    r = rent(api_client, raw, node_id=node.pk, hours=1)

    assert (r.status_code, errors_of(r)) == (409, [("node_already_rented", None)])


def services_fund(client: Client) -> None:
    from tests.rentals.conftest import fund

    fund(client)


def test_renting_your_own_node_is_a_409(api_client, node, operator):
    _, _raw = make_client()
    own_node, _ = make_rentable_node(operator)
    from clients.services import api_key_create

    _, operator_key = api_key_create(client=operator, name="own")

    r = rent(api_client, operator_key, node_id=own_node.pk, hours=1)

    assert (r.status_code, errors_of(r)) == (409, [("own_node", None)])


def test_a_balance_too_low_is_a_402_and_books_nothing(api_client, node):
    _, raw = make_client()

    r = rent(api_client, raw, node_id=node.pk, hours=1)

    assert (r.status_code, errors_of(r)) == (402, [("insufficient_funds", None)])
    assert not Rental.objects.exists()


@pytest.mark.parametrize("hours", [0, 721, -1])
def test_hours_outside_1_to_720_are_a_400(api_client, node, renter, hours):
    r = rent(api_client, renter[1], node_id=node.pk, hours=hours)

    assert r.status_code == 400
    assert errors_of(r)[0][1] == "hours"


@pytest.mark.parametrize(
    "key",
    [
        "not a key",
        "ssh-dss AAAAB3NzaC1kc3MAAACBAP",
        "ssh-ed25519 !!!notbase64",
        "ssh-rsa AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl",  # body of another type
        SSH_KEY + "\nssh-ed25519 AAAA",
    ],
)
def test_a_malformed_ssh_key_is_a_400(api_client, node, renter, key):
    r = rent(api_client, renter[1], node_id=node.pk, hours=1, ssh_public_key=key)

    assert (r.status_code, errors_of(r)[0]) == (400, ("invalid_ssh_key", "ssh_public_key"))


def test_an_unknown_node_is_a_404(api_client, renter):
    r = rent(api_client, renter[1], node_id=999999, hours=1)

    assert (r.status_code, errors_of(r)) == (404, [("node_not_found", None)])


def test_renting_anonymously_is_a_401(api_client, node):
    r = api_client.post(RENTALS_URL, {"node_id": node.pk, "hours": 1}, format="json")

    assert r.status_code == 401


def test_an_idempotency_key_retry_returns_the_first_rental_and_charges_once(api_client, node, renter):
    client, raw = renter
    headers = {**bearer(raw), "HTTP_IDEMPOTENCY_KEY": "rent-1"}
    body = {"node_id": node.pk, "hours": 2}

    first = api_client.post(RENTALS_URL, body, format="json", **headers)
    second = api_client.post(RENTALS_URL, body, format="json", **headers)

    assert (first.status_code, second.status_code) == (201, 201)
    assert first.json() == second.json()
    assert second.headers["Idempotent-Replayed"] == "true"
    assert Rental.objects.count() == 1
    assert Client.objects.get(pk=client.pk).balance == Decimal("995")


def test_the_list_shows_own_rentals_with_filters_and_ordering(api_client, node, renter, operator):
    client, raw = renter
    first = services.rental_start(client=client, node_id=node.pk, hours=1)
    services.rental_cancel(rental=first)
    second_node, _ = make_rentable_node(operator)
    second = services.rental_start(client=client, node_id=second_node.pk, hours=2)
    stranger, _ = make_client()
    services_fund(stranger)
    services.rental_start(client=stranger, node_id=node.pk, hours=1)

    everything = api_client.get(RENTALS_URL, **bearer(raw)).json()
    active = api_client.get(RENTALS_URL, {"status": "active"}, **bearer(raw)).json()
    by_node = api_client.get(RENTALS_URL, {"node": node.pk, "ordering": "total"}, **bearer(raw)).json()

    assert [r["id"] for r in everything["results"]] == [second.pk, first.pk]
    assert [r["id"] for r in active["results"]] == [second.pk]
    assert [r["id"] for r in by_node["results"]] == [first.pk]
    assert everything["results"][1]["access"] is None
    assert everything["results"][1]["time_remaining"] == 0


def test_another_clients_rental_is_a_404(api_client, node, renter):
    rental = services.rental_start(client=renter[0], node_id=node.pk, hours=1)
    _, raw = make_client()

    assert api_client.get(f"{RENTALS_URL}{rental.pk}/", **bearer(raw)).status_code == 404
    assert api_client.delete(f"{RENTALS_URL}{rental.pk}/", **bearer(raw)).status_code == 404
    assert api_client.post(f"{RENTALS_URL}{rental.pk}/stop/", **bearer(raw)).status_code == 404
    assert api_client.get(f"{RENTALS_URL}{rental.pk}/", **bearer(renter[1])).status_code == 200


def test_cancel_refunds_unused_minutes(api_client, node, renter):
    start = timezone.now()
    with time_machine.travel(start, tick=False):
        rental = services.rental_start(client=renter[0], node_id=node.pk, hours=4)
    with time_machine.travel(start + timedelta(minutes=90), tick=False):
        r = api_client.delete(f"{RENTALS_URL}{rental.pk}/", **bearer(renter[1]))

    assert r.status_code == 200
    assert (r.json()["status"], r.json()["refunded"], r.json()["charged"]) == ("cancelled", "6.250000", "3.750000")
    again = api_client.delete(f"{RENTALS_URL}{rental.pk}/", **bearer(renter[1]))
    assert (again.status_code, errors_of(again)) == (409, [("rental_not_active", None)])


def test_the_renters_ledger_shows_the_rental_charged_up_front_and_the_refund_of_the_unused_part(
    api_client, node, renter, operator
):
    # API.md §10: what is paid up front shows as its charge and, on cancel, a refund, both with the rental's ref.
    start = timezone.now()
    with time_machine.travel(start, tick=False):
        rental = services.rental_start(client=renter[0], node_id=node.pk, hours=4)
    me = api_client.get(f"/api/v1/client/list/{renter[0].pk}/", **bearer(renter[1])).json()
    assert (me["balance"], me["held"]) == ("990.000000", "0.000000")  # paid, not held
    with time_machine.travel(start + timedelta(minutes=90), tick=False):
        api_client.delete(f"{RENTALS_URL}{rental.pk}/", **bearer(renter[1]))

    ref = f"rental:{rental.pk}"
    rows = api_client.get("/api/v1/client/ledger/", {"ref": ref, "ordering": "id"}, **bearer(renter[1])).json()
    assert [(e["kind"], e["amount"], e["ref"]) for e in rows["results"]] == [
        ("rental", "-10.000000", ref),
        ("refund", "6.250000", ref),
    ]
    earned = api_client.get("/api/v1/client/ledger/", {"ref": ref}, **bearer(make_operator_key(operator))).json()
    assert [(e["kind"], e["amount"]) for e in earned["results"]] == [("rental", "2.625000")]  # 70% of 3.75


@pytest.mark.parametrize("action", ["start", "stop", "reset"])
def test_a_lifecycle_action_answers_202_with_a_job_to_poll(api_client, node, renter, action):
    rental = services.rental_start(client=renter[0], node_id=node.pk, hours=1)

    r = api_client.post(f"{RENTALS_URL}{rental.pk}/{action}/", **bearer(renter[1]))

    assert r.status_code == 202
    job = r.json()
    assert (job["kind"], job["status"], job["result"], job["rental_id"]) == (action, "pending", "", rental.pk)
    polled = api_client.get(f"/api/v1/jobs/{job['id']}/", **bearer(renter[1]))
    assert polled.status_code == 200
    assert set(polled.json()) == {
        "id", "kind", "status", "result", "outcome", "rental_id", "created_at", "updated_at"
    }  # fmt: skip


def test_someone_elses_job_is_a_404(api_client, node, renter):
    rental = services.rental_start(client=renter[0], node_id=node.pk, hours=1)
    job = services.rental_command(rental=rental, action="stop")
    _, raw = make_client()

    assert api_client.get(f"/api/v1/jobs/{job.pk}/", **bearer(raw)).status_code == 404
    assert api_client.get(f"/api/v1/jobs/{job.pk}/").status_code == 401


def test_an_action_the_node_does_not_support_is_a_501(api_client, node, renter):
    rental = services.rental_start(client=renter[0], node_id=node.pk, hours=1)
    Node.objects.filter(pk=node.pk).update(unsupported_actions=["stop"])

    r = api_client.post(f"{RENTALS_URL}{rental.pk}/stop/", **bearer(renter[1]))

    assert (r.status_code, errors_of(r)) == (501, [("action_not_supported", None)])


def test_bulk_returns_a_result_per_id_for_valid_foreign_and_missing_ids(api_client, node, renter, operator):
    mine = services.rental_start(client=renter[0], node_id=node.pk, hours=1)
    ended_node, _ = make_rentable_node(operator)
    ended = services.rental_start(client=renter[0], node_id=ended_node.pk, hours=1)
    services.rental_cancel(rental=ended)
    stranger, _ = make_client()
    services_fund(stranger)
    foreign_node, _ = make_rentable_node(operator)
    foreign = services.rental_start(client=stranger, node_id=foreign_node.pk, hours=1)

    r = api_client.post(
        "/api/v1/rentals/bulk/stop/", {"ids": [mine.pk, foreign.pk, 999999, ended.pk]}, format="json",
        **bearer(renter[1]),
    )  # fmt: skip

    assert r.status_code == 200
    results = r.json()
    assert [(x["id"], x["ok"], x["status"]) for x in results] == [
        (mine.pk, True, 202),
        (foreign.pk, False, 404),
        (999999, False, 404),
        (ended.pk, False, 409),
    ]
    assert NodeCommand.objects.get(pk=results[0]["job_id"]).action == "stop"
    assert results[1]["error"]["code"] == results[2]["error"]["code"] == "not_found"
    assert results[3]["error"]["code"] == "rental_not_active"
    assert not NodeCommand.objects.filter(rental=foreign).exclude(action="start").exists()  # only its own start


def test_bulk_cancel_refunds_each_and_reports_the_end_job(api_client, node, renter, operator):
    other_node, _ = make_rentable_node(operator)
    a = services.rental_start(client=renter[0], node_id=node.pk, hours=1)
    b = services.rental_start(client=renter[0], node_id=other_node.pk, hours=1)

    r = api_client.post("/api/v1/rentals/bulk/cancel/", {"ids": [a.pk, b.pk]}, format="json", **bearer(renter[1]))

    assert r.status_code == 200
    assert [(x["ok"], x["status"]) for x in r.json()] == [(True, 200), (True, 200)]
    assert {NodeCommand.objects.get(pk=x["job_id"]).action for x in r.json()} == {"end"}
    assert set(Rental.objects.values_list("status", flat=True)) == {"cancelled"}


@pytest.mark.parametrize("body", [{"ids": []}, {"ids": list(range(1, 52))}, {"ids": "1"}, {"ids": [0]}, {}])
def test_bulk_refuses_a_bad_id_list(api_client, renter, body):
    r = api_client.post("/api/v1/rentals/bulk/reset/", body, format="json", **bearer(renter[1]))

    assert r.status_code == 400


def test_bulk_answers_a_repeated_id_once(api_client, node, renter):
    rental = services.rental_start(client=renter[0], node_id=node.pk, hours=1)

    r = api_client.post(
        "/api/v1/rentals/bulk/stop/", {"ids": [rental.pk, rental.pk]}, format="json", **bearer(renter[1])
    )

    assert [x["id"] for x in r.json()] == [rental.pk]
    assert NodeCommand.objects.filter(rental=rental, action="stop").count() == 1


def test_an_unknown_bulk_operation_is_a_404(api_client, renter):
    r = api_client.post("/api/v1/rentals/bulk/explode/", {"ids": [1]}, format="json", **bearer(renter[1]))

    assert r.status_code == 404


def test_inventory_counts_rentable_nodes_and_what_is_free(api_client, node, renter, operator):
    make_rentable_node(operator, price_per_hour=Decimal("3.000000"))
    make_rentable_node(operator, region="us-east")
    make_rentable_node(operator, status=NodeStatus.OFFLINE)  # not live: not counted
    make_node(owner=operator, status=NodeStatus.ONLINE, last_heartbeat_at=timezone.now())  # no GPU: not rentable
    services.rental_start(client=renter[0], node_id=node.pk, hours=1)

    r = api_client.get(INVENTORY_URL)  # public

    assert r.status_code == 200
    assert r.json()["results"] == [
        {"gpu_model": "H100", "region": "eu-west", "nodes_total": 2, "nodes_available": 1, "gpus_available": 8,
         "lowest_price_per_hour": "3.000000"},
        {"gpu_model": "H100", "region": "us-east", "nodes_total": 1, "nodes_available": 1, "gpus_available": 8,
         "lowest_price_per_hour": "2.500000"},
    ]  # fmt: skip
    filtered = api_client.get(INVENTORY_URL, {"region": "US-EAST", "gpu_model": "h100"}).json()["results"]
    assert [row["region"] for row in filtered] == ["us-east"]


@pytest.mark.parametrize("param", ["gpu_model", "region"])
def test_inventory_refuses_a_nul_in_a_filter_with_a_400_naming_it(api_client, node, param):
    r = api_client.get(INVENTORY_URL, {param: "H1\x0000"})

    assert r.status_code == 400
    assert errors_of(r) == [("null_characters_not_allowed", param)]


@pytest.mark.parametrize("value", ["9007199254740992.0", "1.0", "1e3", "0x1", "1.5"])
def test_the_node_filter_takes_digits_only(api_client, renter, value):
    r = api_client.get(RENTALS_URL, {"node": value}, **bearer(renter[1]))

    assert r.status_code == 400
    assert errors_of(r) == [("invalid", "node")]
