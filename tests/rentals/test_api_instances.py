"""Instances over HTTP (API.md §14): the workload on rent, the start command, reported access, snapshots, extend."""

from decimal import Decimal

import pytest
import time_machine
from django.utils import timezone

from clients import ledger
from clients.models import Hold
from llm_models.choices import NodeCapability, NodeCommandStatus
from llm_models.models import NodeCommand
from rentals import services
from rentals.models import Rental, Snapshot
from tests.conftest import bearer
from tests.factories import make_client
from tests.llm_models.conftest import HEARTBEAT_URL, errors_of
from tests.rentals.conftest import RENTALS_URL, SSH_KEY, fund, make_rentable_node

SNAPSHOTS_URL = "/api/v1/snapshots/"
CONTAINERS = [NodeCapability.CONTAINERS.value, NodeCapability.INFERENCE.value]
WORKLOAD = {
    "image": "pytorch/pytorch:2.4.0-cuda12.1-cudnn9-runtime",
    "env": {"HF_TOKEN": "hf_abc", "MODE": ""},
    "ports": [8888, 6006],
    "volumes": [{"path": "/workspace", "size_gb": 100}],
    "jupyter": True,
}
ACCESS = {
    "ssh_host": "203.0.113.7",
    "ssh_port": 40022,
    "ssh_user": "root",
    "jupyter_url": "https://203.0.113.7:40888/?token=abc",
    "ports": {"8888": "203.0.113.7:40888", "6006": "203.0.113.7:40606"},
}


@pytest.fixture
def box(operator):  # type: ignore[no-untyped-def]
    """(node, node token) of a live node that runs containers."""
    return make_rentable_node(operator, capabilities=CONTAINERS)


def rent(api_client, raw, **body):  # type: ignore[no-untyped-def]
    return api_client.post(RENTALS_URL, body, format="json", **bearer(raw))


def beat(api_client, token, **body):  # type: ignore[no-untyped-def]
    return api_client.post(HEARTBEAT_URL, body, format="json", **bearer(token))


def test_renting_with_a_workload_queues_start_with_its_params_and_the_key(api_client, box, renter):
    node, _ = box

    r = rent(api_client, renter[1], node_id=node.pk, hours=2, ssh_public_key=SSH_KEY, **WORKLOAD)

    assert r.status_code == 201, r.json()
    body = r.json()
    assert {k: body[k] for k in WORKLOAD} == WORKLOAD
    assert (body["billing"], body["hours"], body["snapshot_id"]) == ("hourly", 2, None)
    (command,) = NodeCommand.objects.filter(rental_id=body["id"])
    assert command.action == "start"
    assert command.params == {
        "rental_id": body["id"],
        **WORKLOAD,
        "snapshot_id": None,
        "ssh_public_key": SSH_KEY,
        "ssh_user": "renter",
    }


def test_every_rental_starts_with_start_even_without_a_workload(api_client, node, renter):
    r = rent(api_client, renter[1], node_id=node.pk, hours=1)

    assert r.status_code == 201
    assert list(NodeCommand.objects.filter(rental_id=r.json()["id"]).values_list("action", flat=True)) == ["start"]


@pytest.mark.parametrize(
    ("field", "value", "code"),
    [
        ("image", "ubuntu; rm -rf /", "invalid"),
        ("image", "x" * 256, "max_length"),
        ("env", {"1BAD": "x"}, "invalid_env_name"),
        ("env", {"BAD-NAME": "x"}, "invalid_env_name"),
        ("env", {f"V{i}": "x" for i in range(51)}, "max_length"),
        ("env", {"N": 5}, "invalid"),
        ("env", ["A=1"], "not_a_dict"),
        ("ports", [0], "min_value"),
        ("ports", [65536], "max_value"),
        ("ports", list(range(1000, 1021)), "max_length"),
        ("ports", [22, 22], "duplicate_port"),
        ("volumes", [{"path": "data", "size_gb": 1}], "invalid"),
        ("volumes", [{"path": "/a/../etc", "size_gb": 1}], "invalid"),
        ("volumes", [{"path": "/data", "size_gb": 0}], "min_value"),
        ("volumes", [{"path": "/data", "size_gb": 10001}], "max_value"),
        ("volumes", [{"path": f"/v{i}", "size_gb": 1} for i in range(9)], "max_length"),
        ("volumes", [{"path": "/d", "size_gb": 1}, {"path": "/d/", "size_gb": 2}], "duplicate_volume"),
        ("jupyter", "yes", "invalid"),
        ("snapshot_id", 0, "min_value"),
        ("billing", "yearly", "invalid_choice"),
    ],
)
def test_each_workload_field_is_validated_with_a_400_naming_it(api_client, box, renter, field, value, code):
    node, _ = box

    r = rent(api_client, renter[1], node_id=node.pk, hours=1, **{field: value})

    assert r.status_code == 400
    codes = errors_of(r)
    assert any(attr is not None and attr.split(".")[0] == field and c == code for c, attr in codes), codes
    assert not Rental.objects.exists()


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"billing": "hourly"}, [("required", "hours")]),
        ({"billing": "daily"}, [("required", "periods")]),
        ({"billing": "weekly", "periods": 13}, [("max_value", "periods")]),
        ({"billing": "monthly", "periods": 1, "hours": 5}, [("not_allowed", "hours")]),
        ({"billing": "payg", "hours": 5}, [("not_allowed", "hours")]),
        ({"billing": "hourly", "hours": 1, "periods": 1}, [("not_allowed", "periods")]),
        ({"hours": 1, "image": "ubuntu", "snapshot_id": 5}, [("image_and_snapshot", "image")]),
    ],
)
def test_billing_needs_its_own_term_field_and_no_other(api_client, box, renter, body, expected):
    r = rent(api_client, renter[1], node_id=box[0].pk, **body)

    assert (r.status_code, errors_of(r)) == (400, expected)


def test_an_image_on_a_node_without_containers_is_a_409(api_client, node, renter):
    r = rent(api_client, renter[1], node_id=node.pk, hours=1, image="ubuntu:24.04")

    assert (r.status_code, errors_of(r)) == (409, [("node_lacks_capability", None)])


def test_the_access_the_node_reports_is_shown_on_the_rental(api_client, box, renter):
    node, token = box
    rental_id = rent(api_client, renter[1], node_id=node.pk, hours=1, **WORKLOAD).json()["id"]
    (command,) = beat(api_client, token).json()["commands"]

    r = beat(
        api_client, token, results=[{"id": command["id"], "status": "succeeded", "output": "up", "access": ACCESS}]
    )

    assert r.status_code == 200
    shown = api_client.get(f"{RENTALS_URL}{rental_id}/", **bearer(renter[1])).json()
    assert shown["access"] == ACCESS
    job = api_client.get(f"/api/v1/jobs/{command['id']}/", **bearer(renter[1])).json()
    assert (job["status"], job["outcome"]) == ("succeeded", {"access": ACCESS})


@pytest.mark.parametrize(
    "access",
    [
        {**ACCESS, "ssh_port": 70000},
        {**ACCESS, "jupyter_url": "javascript:alert(1)"},
        {**ACCESS, "ports": {"http": "203.0.113.7:80"}},
        {**ACCESS, "ssh_host": "bad host"},
        {**ACCESS, "extra": "x"},
        {},
    ],
)
def test_an_invalid_reported_access_fails_the_command_and_is_not_shown(api_client, box, renter, access):
    node, token = box
    rental_id = rent(api_client, renter[1], node_id=node.pk, hours=1).json()["id"]
    (command,) = beat(api_client, token).json()["commands"]

    r = beat(api_client, token, results=[{"id": command["id"], "status": "succeeded", "access": access}])

    assert r.status_code == 200  # the heartbeat is accepted; the bad field fails its command
    job = NodeCommand.objects.get(pk=command["id"])
    assert job.status == NodeCommandStatus.FAILED and "invalid access" in job.result
    assert Rental.objects.get(pk=rental_id).access is None
    shown = api_client.get(f"{RENTALS_URL}{rental_id}/", **bearer(renter[1])).json()
    assert shown["access"]["ssh_host"] == "gpu-7.example.net"  # the node's own details, as before


@pytest.mark.parametrize(("field", "value"), [("access", "ssh root@host"), ("snapshot_ref", ["img"])])
def test_a_structured_field_of_the_wrong_json_type_is_a_400(api_client, box, renter, field, value):
    node, token = box
    rent(api_client, renter[1], node_id=node.pk, hours=1)
    (command,) = beat(api_client, token).json()["commands"]

    r = beat(api_client, token, results=[{"id": command["id"], "status": "succeeded", field: value}])

    assert r.status_code == 400
    assert errors_of(r)[0][1] == f"results.0.{field}"


def test_an_invalid_snapshot_ref_fails_the_stop_and_records_nothing(api_client, box, renter):
    node, token = box
    rental = services.rental_start(client=renter[0], node_id=node.pk, hours=1)
    stop = services.rental_command(rental=rental, action="stop", snapshot=True)

    beat(api_client, token, results=[{"id": stop.pk, "status": "succeeded", "snapshot_ref": "img; rm -rf /"}])

    stop.refresh_from_db()
    assert stop.status == NodeCommandStatus.FAILED and "invalid snapshot_ref" in stop.result
    assert not Snapshot.objects.exists()


def test_a_running_report_keeps_the_command_open(api_client, box, renter):
    node, token = box
    rent(api_client, renter[1], node_id=node.pk, hours=1)
    (command,) = beat(api_client, token).json()["commands"]

    again = beat(api_client, token, results=[{"id": command["id"], "status": "running", "output": "pulling"}])

    assert [c["id"] for c in again.json()["commands"]] == [command["id"]]
    job = NodeCommand.objects.get(pk=command["id"])
    assert (job.status, job.result) == (NodeCommandStatus.RUNNING, "pulling")


def test_snapshot_round_trip_from_stop_to_a_new_rental_started_from_it(api_client, box, renter):
    node, token = box
    first = rent(api_client, renter[1], node_id=node.pk, hours=1, **WORKLOAD).json()
    beat(api_client, token)

    stop = api_client.post(f"{RENTALS_URL}{first['id']}/stop/", {"snapshot": True}, format="json", **bearer(renter[1]))

    assert stop.status_code == 202
    commands = beat(api_client, token).json()["commands"]
    stop_command = next(c for c in commands if c["action"] == "stop")
    assert stop_command["params"] == {"rental_id": first["id"], "snapshot": True}
    ref = "gpu-node/rental-1:snap-20261206"
    result = {"id": stop_command["id"], "status": "succeeded", "snapshot_ref": ref}
    beat(api_client, token, results=[result])
    beat(api_client, token, results=[result])  # reported twice: recorded once
    (snapshot,) = Snapshot.objects.all()
    assert (snapshot.rental_id, snapshot.image_ref, snapshot.client_id) == (first["id"], ref, renter[0].pk)

    listed = api_client.get(SNAPSHOTS_URL, **bearer(renter[1]))
    assert listed.status_code == 200
    assert [(s["id"], s["rental"], s["image_ref"]) for s in listed.json()["results"]] == [
        (snapshot.pk, first["id"], ref)
    ]

    api_client.delete(f"{RENTALS_URL}{first['id']}/", **bearer(renter[1]))
    second = rent(api_client, renter[1], node_id=node.pk, hours=1, snapshot_id=snapshot.pk, jupyter=True)

    assert second.status_code == 201, second.json()
    assert (second.json()["snapshot_id"], second.json()["image"]) == (snapshot.pk, ref)
    start = NodeCommand.objects.get(rental_id=second.json()["id"], action="start")
    assert (start.params["image"], start.params["snapshot_id"], start.params["jupyter"]) == (ref, snapshot.pk, True)


def test_another_clients_snapshot_is_a_404_everywhere(api_client, box, renter, operator):
    node, _ = box
    rental = services.rental_start(client=renter[0], node_id=node.pk, hours=1)
    snapshot = Snapshot.objects.create(client=renter[0], rental=rental, node=node, image_ref="img:1")
    stranger, raw = make_client()
    fund(stranger)
    other_node, _ = make_rentable_node(operator, capabilities=CONTAINERS)

    assert api_client.get(f"{SNAPSHOTS_URL}{snapshot.pk}/", **bearer(raw)).status_code == 404
    assert api_client.delete(f"{SNAPSHOTS_URL}{snapshot.pk}/", **bearer(raw)).status_code == 404
    assert api_client.get(SNAPSHOTS_URL, **bearer(raw)).json()["count"] == 0
    r = rent(api_client, raw, node_id=other_node.pk, hours=1, snapshot_id=snapshot.pk)
    assert (r.status_code, errors_of(r)) == (404, [("snapshot_not_found", None)])
    assert api_client.get(SNAPSHOTS_URL).status_code == 401
    assert Snapshot.objects.filter(pk=snapshot.pk).exists()


def test_the_owner_deletes_a_snapshot(api_client, box, renter):
    node, _ = box
    rental = services.rental_start(client=renter[0], node_id=node.pk, hours=1)
    snapshot = Snapshot.objects.create(client=renter[0], rental=rental, node=node, image_ref="img:1")

    r = api_client.delete(f"{SNAPSHOTS_URL}{snapshot.pk}/", **bearer(renter[1]))

    assert r.status_code == 204
    assert not Snapshot.objects.exists()


def test_a_snapshot_starts_only_on_the_node_that_keeps_it(api_client, box, renter, operator):
    node, _ = box
    rental = services.rental_start(client=renter[0], node_id=node.pk, hours=1)
    snapshot = Snapshot.objects.create(client=renter[0], rental=rental, node=node, image_ref="img:1")
    other_node, _ = make_rentable_node(operator, capabilities=CONTAINERS)

    r = rent(api_client, renter[1], node_id=other_node.pk, hours=1, snapshot_id=snapshot.pk)

    assert (r.status_code, errors_of(r)) == (400, [("snapshot_on_other_node", "snapshot_id")])


def test_stop_without_a_body_still_stops_without_a_snapshot(api_client, box, renter):
    rental = services.rental_start(client=renter[0], node_id=box[0].pk, hours=1)

    r = api_client.post(f"{RENTALS_URL}{rental.pk}/stop/", **bearer(renter[1]))

    assert r.status_code == 202
    assert NodeCommand.objects.get(pk=r.json()["id"]).params == {"rental_id": rental.pk}


# --- extend ----------------------------------------------------------------------------------------------------


def test_extend_adds_hours_and_charges_them_at_once(api_client, node, renter):
    rental = services.rental_start(client=renter[0], node_id=node.pk, hours=2)
    ends_at = rental.ends_at

    r = api_client.post(f"{RENTALS_URL}{rental.pk}/extend/", {"hours": 3}, format="json", **bearer(renter[1]))

    assert r.status_code == 200, r.json()
    assert (r.json()["hours"], r.json()["total"]) == (5, "12.500000")
    rental.refresh_from_db()
    assert rental.ends_at - ends_at == timezone.timedelta(hours=3)
    assert Hold.objects.get(key=f"rental:{rental.pk}").amount == Decimal("12.5")
    renter[0].refresh_from_db()
    assert renter[0].balance == Decimal("1000") - Decimal("12.5")


def test_extend_is_charged_up_front_and_its_unused_time_refunded_in_the_ledger(api_client, node, renter):
    """The renter's lines (ref rental:<id>): the term's charge, the extension's charge, then the refund."""
    start = timezone.now().replace(microsecond=0)
    with time_machine.travel(start, tick=False):
        rental = services.rental_start(client=renter[0], node_id=node.pk, hours=2)
        r = api_client.post(f"{RENTALS_URL}{rental.pk}/extend/", {"hours": 1}, format="json", **bearer(renter[1]))
        assert r.status_code == 200, r.json()
        again = api_client.post(f"{RENTALS_URL}{rental.pk}/extend/", {"hours": 1}, format="json", **bearer(renter[1]))
        assert again.status_code == 200
    with time_machine.travel(start + timezone.timedelta(minutes=30), tick=False):
        r = api_client.delete(f"{RENTALS_URL}{rental.pk}/", **bearer(renter[1]))
    assert (r.json()["charged"], r.json()["refunded"]) == ("1.250000", "8.750000")

    lines = api_client.get(f"/api/v1/client/ledger/?ref=rental:{rental.pk}&ordering=id", **bearer(renter[1]))

    assert lines.status_code == 200
    got = [(e["kind"], e["amount"], e["ref"]) for e in lines.json()["results"]]
    ref = f"rental:{rental.pk}"
    assert got == [
        ("rental", "-5.000000", ref),
        ("rental", "-2.500000", ref),
        ("rental", "-2.500000", ref),
        ("refund", "8.750000", ref),
    ]
    renter[0].refresh_from_db()
    assert renter[0].balance == Decimal("1000") - Decimal("1.25")
    assert ledger.held_of(client_id=renter[0].pk) == 0  # what is paid up front is never `held`


def test_extend_of_a_payg_or_ended_rental_is_a_409(api_client, node, renter, operator):
    payg = services.rental_start(client=renter[0], node_id=node.pk, billing="payg")
    other, _ = make_rentable_node(operator)
    ended = services.rental_start(client=renter[0], node_id=other.pk, hours=1)
    services.rental_cancel(rental=ended)

    for rental, code in ((payg, "rental_not_extendable"), (ended, "rental_not_active")):
        r = api_client.post(f"{RENTALS_URL}{rental.pk}/extend/", {"hours": 1}, format="json", **bearer(renter[1]))
        assert (r.status_code, errors_of(r)) == (409, [(code, None)])


def test_extend_past_its_end_time_is_a_409(api_client, node, renter):
    rental = services.rental_start(client=renter[0], node_id=node.pk, hours=1)

    with time_machine.travel(timezone.now() + timezone.timedelta(hours=2)):
        r = api_client.post(f"{RENTALS_URL}{rental.pk}/extend/", {"hours": 1}, format="json", **bearer(renter[1]))

    assert (r.status_code, errors_of(r)) == (409, [("rental_not_active", None)])


def test_extend_with_too_little_money_is_a_402_and_changes_nothing(api_client, node):
    poor, raw = make_client()
    fund(poor, "3")
    rental = services.rental_start(client=poor, node_id=node.pk, hours=1)

    r = api_client.post(f"{RENTALS_URL}{rental.pk}/extend/", {"hours": 1}, format="json", **bearer(raw))

    assert (r.status_code, errors_of(r)) == (402, [("insufficient_funds", None)])
    rental.refresh_from_db()
    assert (rental.hours, rental.total) == (1, Decimal("2.5"))
    poor.refresh_from_db()
    assert poor.balance == Decimal("0.5")


@pytest.mark.parametrize("body", [{"hours": 0}, {"hours": 721}, {"hours": "2"}, {}])
def test_extend_refuses_bad_hours(api_client, node, renter, body):
    rental = services.rental_start(client=renter[0], node_id=node.pk, hours=1)

    r = api_client.post(f"{RENTALS_URL}{rental.pk}/extend/", body, format="json", **bearer(renter[1]))

    assert r.status_code == 400 and errors_of(r)[0][1] == "hours"


def test_extend_past_twelve_months_is_a_400(api_client, node, renter):
    fund(renter[0], "100000")
    rental = services.rental_start(client=renter[0], node_id=node.pk, billing="monthly", periods=12)

    r = api_client.post(f"{RENTALS_URL}{rental.pk}/extend/", {"hours": 1}, format="json", **bearer(renter[1]))

    assert (r.status_code, errors_of(r)) == (400, [("term_too_long", "hours")])


def test_another_clients_rental_cannot_be_extended_or_stopped(api_client, node, renter):
    rental = services.rental_start(client=renter[0], node_id=node.pk, hours=1)
    _, raw = make_client()

    for action, body in (("extend", {"hours": 1}), ("stop", {"snapshot": True})):
        r = api_client.post(f"{RENTALS_URL}{rental.pk}/{action}/", body, format="json", **bearer(raw))
        assert r.status_code == 404
        assert api_client.post(f"{RENTALS_URL}{rental.pk}/{action}/", body, format="json").status_code == 401
    assert Rental.objects.get(pk=rental.pk).hours == 1
