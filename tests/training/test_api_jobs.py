"""The seed paths /api/v1/training/: create, list, retrieve, cancel, events; scheduling through real heartbeats."""

from datetime import timedelta
from decimal import Decimal

import pytest
import time_machine
from django.utils import timezone

from clients import ledger
from clients.choices import LedgerAccountKind
from clients.models import Hold, LedgerEntry
from llm_models.choices import NodeCommandAction, NodeCommandStatus
from llm_models.models import NodeCommand
from tests.conftest import bearer
from tests.training.conftest import BASE_MODEL, balance, fund, heartbeat, training_node
from training.models import TrainingEvent, TrainingJob

URL = "/api/v1/training/create/"
DATASET = "https://datasets.example.com/chat.jsonl"


def body(**over: object) -> dict:
    return {"model": BASE_MODEL, "dataset_url": DATASET, "epochs": 2, "learning_rate": 0.0002, "batch_size": 8,
            "max_hours": 2, **over}  # fmt: skip


def create(api_client, key: str, **over: object):  # type: ignore[no-untyped-def]
    return api_client.post(URL, body(**over), format="json", **bearer(key))


def test_create_holds_price_times_hours_and_sends_a_train_command(api_client, user_client, provider):
    client, key = user_client
    fund(client, "20.00")
    node, token = training_node(owner=provider[0], price="6.00")

    r = create(api_client, key, suffix="mine")

    assert r.status_code == 201, r.content
    job = r.json()
    assert (job["status"], job["node_id"], job["progress"], job["held_amount"]) == ("queued", node.pk, 0.0, "12.000000")
    assert balance(client) == Decimal("8.000000")
    assert Hold.objects.get(key=f"training:{job['id']}").amount == Decimal("12.000000")
    reply = heartbeat(api_client, token)
    [command] = [c for c in reply["commands"] if c["action"] == "train"]
    assert command["params"] == {
        "job_id": job["id"],
        "base_model": BASE_MODEL,
        "dataset_url": DATASET,
        "hyperparameters": {"n_epochs": 2, "batch_size": 8, "learning_rate": 0.0002},
        "output_model": f"ft:{BASE_MODEL}:mine:{job['id']}",
    }


def test_the_cheapest_free_node_with_training_gets_the_job(api_client, user_client, provider, other_provider):
    client, key = user_client
    fund(client, "100.00")
    training_node(owner=provider[0], price="9.00")
    cheap, _ = training_node(owner=other_provider[0], price="3.00")
    training_node(owner=other_provider[0], price="1.00", capabilities=("inference",))

    r = create(api_client, key)

    assert r.status_code == 201
    assert r.json()["node_id"] == cheap.pk


def test_a_short_balance_is_402_and_leaves_nothing(api_client, user_client, provider):
    client, key = user_client
    fund(client, "11.99")
    training_node(owner=provider[0], price="6.00")

    r = create(api_client, key)

    assert r.status_code == 402
    assert r.json()["errors"][0]["code"] == "insufficient_funds"
    assert not TrainingJob.objects.exists()
    assert balance(client) == Decimal("11.99")


def test_a_named_node_that_cannot_train_is_409(api_client, user_client, provider):
    client, key = user_client
    fund(client, "100")
    inference_only, _ = training_node(owner=provider[0], capabilities=("inference",))

    r = create(api_client, key, node_id=inference_only.pk)

    assert r.status_code == 409
    assert r.json()["errors"][0]["code"] == "node_unavailable"


def test_no_training_node_at_all_is_503(api_client, user_client):
    client, key = user_client
    fund(client, "100")

    r = create(api_client, key)

    assert r.status_code == 503
    assert r.json()["errors"][0]["code"] == "no_capacity"


@pytest.mark.parametrize(
    ("over", "attr"),
    [
        ({"epochs": 0}, "epochs"),
        ({"epochs": 101}, "epochs"),
        ({"batch_size": 1025}, "batch_size"),
        ({"max_hours": 73}, "max_hours"),
        ({"dataset_url": "http://datasets.example.com/x.jsonl"}, "dataset_url"),
        ({"dataset_url": "https://127.0.0.1/x.jsonl"}, "dataset_url"),
        ({"dataset_url": "https://169.254.169.254/latest"}, "dataset_url"),
        ({"dataset_url": "https://user:pw@example.com/x"}, "dataset_url"),
        ({"file_id": "file-1"}, "dataset_url"),
        ({"suffix": "bad suffix!"}, "suffix"),
    ],
)
def test_bad_input_is_400_naming_the_field(api_client, user_client, provider, over, attr):
    client, key = user_client
    fund(client, "100")
    training_node(owner=provider[0])

    r = create(api_client, key, **over)

    assert r.status_code == 400, r.content
    assert r.json()["errors"][0]["attr"] == attr
    assert not TrainingJob.objects.exists()


def test_anonymous_is_401(api_client):
    assert api_client.post(URL, body(), format="json").status_code == 401
    assert api_client.get("/api/v1/training/jobs/").status_code == 401


def test_jobs_are_the_owners_only(api_client, user_client, other_user, provider):
    client, key = user_client
    fund(client, "100")
    training_node(owner=provider[0])
    job_id = create(api_client, key).json()["id"]
    _, other_key = other_user

    assert api_client.get(f"/api/v1/training/jobs/{job_id}/", **bearer(key)).status_code == 200
    assert api_client.get(f"/api/v1/training/jobs/{job_id}/", **bearer(other_key)).status_code == 404
    assert api_client.get(f"/api/v1/training/jobs/{job_id}/events/", **bearer(other_key)).status_code == 404
    assert api_client.delete(f"/api/v1/training/jobs/{job_id}/", **bearer(other_key)).status_code == 404
    assert api_client.get("/api/v1/training/jobs/", **bearer(other_key)).json()["count"] == 0
    listed = api_client.get("/api/v1/training/jobs/?status=queued", **bearer(key)).json()
    assert [j["id"] for j in listed["results"]] == [job_id]
    assert api_client.get("/api/v1/training/jobs/?status=running", **bearer(key)).json()["count"] == 0
    assert api_client.get("/api/v1/training/jobs/?status=bogus", **bearer(key)).status_code == 400


def _train_command(node) -> NodeCommand:  # type: ignore[no-untyped-def]
    return NodeCommand.objects.get(node=node, action=NodeCommandAction.TRAIN)


def test_progress_reports_move_the_job_and_become_events(api_client, user_client, provider):
    client, key = user_client
    fund(client, "100")
    _node, token = training_node(owner=provider[0])
    job_id = create(api_client, key).json()["id"]
    command = heartbeat(api_client, token)["commands"][0]

    for step, loss in ((10, 2.5), (20, 1.75)):
        heartbeat(api_client, token, results=[{
            "id": command["id"], "status": "running", "output": f"step {step}", "progress": step / 40,
            "metrics": {"step": step, "epoch": 1, "loss": loss},
        }])  # fmt: skip

    job = api_client.get(f"/api/v1/training/jobs/{job_id}/", **bearer(key)).json()
    assert (job["status"], job["progress"], job["metrics"]) == ("running", 0.5, {"step": 20, "epoch": 1, "loss": 1.75})
    events = api_client.get(f"/api/v1/training/jobs/{job_id}/events/", **bearer(key)).json()["results"]
    points = [(e["step"], e["epoch"], e["loss"]) for e in events if e["step"] is not None]
    assert points == [(10, 1.0, 2.5), (20, 1.0, 1.75)]
    assert all(set(e) >= {"created_at", "step", "epoch", "loss", "message"} for e in events)


def test_an_invalid_progress_report_fails_the_command_and_the_job(api_client, user_client, provider):
    client, key = user_client
    fund(client, "100")
    _node, token = training_node(owner=provider[0])
    job_id = create(api_client, key).json()["id"]
    command = heartbeat(api_client, token)["commands"][0]

    heartbeat(api_client, token, results=[{"id": command["id"], "status": "running", "progress": 7}])

    job = TrainingJob.objects.get(pk=job_id)
    assert (job.status, job.error_code) == ("failed", "training_failed")
    assert balance(client) == Decimal("100")


def test_success_charges_the_started_minutes_70_25_5_and_serves_the_model_for_its_owner(
    api_client, user_client, provider
):
    client, key = user_client
    fund(client, "100")
    node, token = training_node(owner=provider[0], price="6.00")
    job_id = create(api_client, key, suffix="v1").json()["id"]
    command = heartbeat(api_client, token)["commands"][0]
    start = timezone.now()
    with time_machine.travel(start, tick=False):
        heartbeat(api_client, token, results=[{"id": command["id"], "status": "running", "progress": 0.1}])
    with time_machine.travel(start + timedelta(minutes=2, seconds=1), tick=False):
        heartbeat(api_client, token, results=[{
            "id": command["id"], "status": "succeeded", "fine_tuned_model": f"ft:{BASE_MODEL}:v1:{job_id}",
        }])  # fmt: skip

    job = TrainingJob.objects.get(pk=job_id)
    name = f"ft:{BASE_MODEL}:v1:{job_id}"
    assert (job.status, job.progress, job.fine_tuned_model, job.charged) == ("succeeded", 1.0, name, Decimal("0.3"))
    assert balance(client) == Decimal("99.700000")
    assert balance(provider[0]) == Decimal("0.210000")
    charges = LedgerEntry.objects.filter(transaction__key=f"settle:training:{job_id}")
    assert sum(e.amount for e in charges) == 0
    shares = {kind: sum(e.amount for e in charges if e.account.kind == kind) for kind in LedgerAccountKind.values}
    assert shares[LedgerAccountKind.PLATFORM] == Decimal("0.075000")  # 25% of 0.30
    assert shares[LedgerAccountKind.TREASURY] == Decimal("0.015000")  # 5%
    lines = api_client.get("/api/v1/client/ledger/?page_size=100", **bearer(key)).json()["results"]
    training_lines = [line for line in lines if line["kind"] == "training"]
    assert [(line["ref"], Decimal(line["amount"])) for line in training_lines] == [
        (f"training:{job_id}", Decimal("-0.3"))
    ]
    assert ledger.reconcile() == []
    assert node.node_models.filter(model__name=name, model__owner=client).exists()
    # The node is free again: a later report changes nothing.
    heartbeat(api_client, token, results=[{"id": command["id"], "status": "failed", "output": "late"}])
    assert TrainingJob.objects.get(pk=job_id).status == "succeeded"


def test_a_training_node_serves_no_public_inference_and_cannot_be_rented(api_client, user_client, provider):
    from inference import routing
    from inference.errors import NoCapacity

    client, key = user_client
    fund(client, "100")
    node, _token = training_node(owner=provider[0])
    routing.route(model=BASE_MODEL)  # routable before
    create(api_client, key)

    with pytest.raises(NoCapacity):
        routing.route(model=BASE_MODEL)
    r = api_client.post("/api/v1/rentals/", {"node_id": node.pk, "hours": 1}, format="json", **bearer(key))
    assert r.status_code == 409


def test_cancel_while_queued_releases_everything(api_client, user_client, provider):
    client, key = user_client
    fund(client, "100")
    _node, token = training_node(owner=provider[0], price="6.00")
    heartbeat(api_client, token)
    # Busy with another client's job: ours waits without a node.
    other_job = create(api_client, key).json()
    job = create(api_client, key).json()
    assert (job["status"], job["node_id"]) == ("queued", None)

    r = api_client.delete(f"/api/v1/training/jobs/{job['id']}/", **bearer(key))

    assert r.status_code == 200
    assert (r.json()["status"], r.json()["charged"]) == ("cancelled", "0.000000")
    assert balance(client) == Decimal("100") - Decimal(other_job["held_amount"])
    assert api_client.delete(f"/api/v1/training/jobs/{job['id']}/", **bearer(key)).status_code == 409
    assert ledger.reconcile() == []


def test_cancel_while_running_charges_started_minutes_and_tells_the_node(api_client, user_client, provider):
    client, key = user_client
    fund(client, "100")
    node, token = training_node(owner=provider[0], price="6.00")
    job_id = create(api_client, key).json()["id"]
    command = heartbeat(api_client, token)["commands"][0]
    start = timezone.now()
    with time_machine.travel(start, tick=False):
        heartbeat(api_client, token, results=[{"id": command["id"], "status": "running", "progress": 0.1}])
    with time_machine.travel(start + timedelta(minutes=4, seconds=30), tick=False):
        r = api_client.delete(f"/api/v1/training/jobs/{job_id}/", **bearer(key))

    assert r.status_code == 200
    assert (r.json()["status"], r.json()["charged"]) == ("cancelled", "0.500000")
    assert balance(client) == Decimal("99.500000")
    assert balance(provider[0]) == Decimal("0.350000")
    reply = heartbeat(api_client, token)
    assert [(c["action"], c["params"]) for c in reply["commands"]] == [("train_cancel", {"job_id": job_id})]
    assert _train_command(node).status == NodeCommandStatus.CANCELLED
    assert ledger.reconcile() == []


def test_a_job_past_max_hours_is_stopped_as_time_limit(api_client, user_client, provider):
    from training.services import training_sweep

    client, key = user_client
    fund(client, "100")
    node, token = training_node(owner=provider[0], price="6.00")
    job_id = create(api_client, key, max_hours=1).json()["id"]
    command = heartbeat(api_client, token)["commands"][0]
    start = timezone.now()
    with time_machine.travel(start, tick=False):
        heartbeat(api_client, token, results=[{"id": command["id"], "status": "running"}])
    with time_machine.travel(start + timedelta(hours=1, minutes=1), tick=False):
        heartbeat(api_client, token)
        training_sweep()
        training_sweep()  # twice: changes nothing more

    job = TrainingJob.objects.get(pk=job_id)
    assert (job.status, job.error_code, job.charged) == ("failed", "time_limit", Decimal("6.000000"))
    assert balance(client) == Decimal("94.000000")
    assert NodeCommand.objects.filter(node=node, action="train_cancel", params={"job_id": job_id}).exists()
    assert ledger.reconcile() == []


def test_a_node_that_dies_mid_job_fails_it_and_settles(api_client, user_client, provider):
    from llm_models.services import node_mark_stale_offline
    from training.services import training_sweep

    client, key = user_client
    fund(client, "100")
    _node, token = training_node(owner=provider[0], price="6.00")
    job_id = create(api_client, key).json()["id"]
    command = heartbeat(api_client, token)["commands"][0]
    start = timezone.now()
    with time_machine.travel(start, tick=False):
        heartbeat(api_client, token, results=[{"id": command["id"], "status": "running"}])
    with time_machine.travel(start + timedelta(seconds=90), tick=False):
        heartbeat(api_client, token)  # its last sign of life
    with time_machine.travel(start + timedelta(minutes=30), tick=False):
        node_mark_stale_offline()
        training_sweep()

    job = TrainingJob.objects.get(pk=job_id)
    assert (job.status, job.error_code, job.charged) == ("failed", "node_lost", Decimal("0.200000"))
    assert balance(client) == Decimal("99.800000")
    assert not Hold.objects.filter(key=f"training:{job_id}", status="held").exists()
    assert ledger.reconcile() == []
    # The node comes back, still training that job: it is told to stop, and its late reports change nothing.
    reply = heartbeat(api_client, token, results=[{"id": command["id"], "status": "running", "progress": 0.5}])
    assert [(c["action"], c["params"]) for c in reply["commands"]] == [("train_cancel", {"job_id": job_id})]
    heartbeat(api_client, token, results=[{"id": command["id"], "status": "succeeded"}])
    job.refresh_from_db()
    assert (job.status, job.charged, job.fine_tuned_model) == ("failed", Decimal("0.200000"), "")
    assert balance(client) == Decimal("99.800000")


def test_a_started_report_without_progress_makes_the_job_running_so_the_queue_timeout_spares_it(
    api_client, user_client, provider, settings
):
    from training.services import training_sweep

    settings.TRAINING_QUEUE_TIMEOUT_S = 600
    client, key = user_client
    fund(client, "100")
    _node, token = training_node(owner=provider[0], price="6.00")
    job_id = create(api_client, key).json()["id"]
    command = heartbeat(api_client, token)["commands"][0]
    started = {"id": command["id"], "status": "running", "output": "started gpu-node-train (pid 42)"}
    heartbeat(api_client, token, results=[started])  # what the agent sends when the hook starts, before any line
    with time_machine.travel(timezone.now() + timedelta(seconds=601), tick=False):
        heartbeat(api_client, token)
        training_sweep()

    job = TrainingJob.objects.get(pk=job_id)
    assert (job.status, job.error_code) == ("running", "")
    assert job.started_at is not None
    assert job.events.filter(message="started gpu-node-train (pid 42)").exists()


def test_a_job_no_node_takes_fails_after_the_queue_timeout_with_everything_released(
    api_client, user_client, provider, settings
):
    from training.services import training_sweep

    settings.TRAINING_QUEUE_TIMEOUT_S = 600
    client, key = user_client
    fund(client, "100")
    _node, token = training_node(owner=provider[0], price="6.00")
    create(api_client, key)  # takes the only node
    waiting = create(api_client, key).json()
    with time_machine.travel(timezone.now() + timedelta(seconds=601), tick=False):
        heartbeat(api_client, token)
        training_sweep()

    job = TrainingJob.objects.get(pk=waiting["id"])
    assert (job.status, job.error_code, job.charged) == ("failed", "queue_timeout", Decimal("0"))
    assert Hold.objects.get(key=f"training:{job.pk}").status == "released"


def test_a_waiting_job_is_dispatched_by_the_sweep_when_a_node_frees_up(api_client, user_client, provider):
    from training.services import training_sweep

    client, key = user_client
    fund(client, "100")
    node, token = training_node(owner=provider[0], price="6.00")
    first = create(api_client, key).json()
    second = create(api_client, key).json()
    assert second["node_id"] is None
    api_client.delete(f"/api/v1/training/jobs/{first['id']}/", **bearer(key))
    heartbeat(
        api_client,
        token,
        results=[{"id": c["id"], "status": "succeeded"} for c in heartbeat(api_client, token)["commands"]],
    )  # fmt: skip  (the node acknowledges train_cancel)

    assert training_sweep()["dispatched"] == 1
    job = TrainingJob.objects.get(pk=second["id"])
    assert job.node_id == node.pk
    assert TrainingEvent.objects.filter(job=job, message__startswith="Sent to node").exists()
