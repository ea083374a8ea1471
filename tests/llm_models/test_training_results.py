"""A `train` command's structured results in heartbeats (API.md §13, "structured outcomes"): `running` reports
with `progress` and `metrics`, then `succeeded` with `fine_tuned_model`, kept in the command's `outcome`; an
invalid value fails the command, a value of the wrong JSON type is a 400."""

import pytest

from llm_models.choices import NodeCommandStatus
from llm_models.models import NodeCommand
from tests.factories import make_node
from tests.llm_models.conftest import errors_of


@pytest.fixture
def train(provider):  # type: ignore[no-untyped-def]
    node, token = make_node(owner=provider[0], models=["org/a"])
    command = NodeCommand.objects.create(node=node, action="train", status=NodeCommandStatus.RUNNING)
    return command, token


def test_progress_reports_then_the_model_are_recorded(heartbeat, train):
    command, token = train
    running = {"id": command.pk, "status": "running", "progress": 0.5, "metrics": {"step": 10, "loss": 1.25}}

    assert heartbeat(token, {"results": [{**running, "output": "epoch 1"}]}).status_code == 200
    command.refresh_from_db()
    assert (command.status, command.result) == (NodeCommandStatus.RUNNING, "epoch 1")
    assert command.outcome == {"progress": 0.5, "metrics": {"step": 10.0, "loss": 1.25}}

    done = {"id": command.pk, "status": "succeeded", "fine_tuned_model": "ft:org/a:job:7"}
    assert heartbeat(token, {"results": [done]}).status_code == 200
    command.refresh_from_db()
    assert command.status == NodeCommandStatus.SUCCEEDED
    assert command.outcome == {**running_fields(running), "fine_tuned_model": "ft:org/a:job:7"}


def running_fields(result: dict) -> dict:
    return {"progress": result["progress"], "metrics": result["metrics"]}


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("progress", 1.5),
        ("metrics", {"loss": "low"}),
        ("metrics", {"loss": True}),
        ("metrics", {f"m{i}": i for i in range(33)}),
        ("fine_tuned_model", "ft:a; rm -rf /"),
    ],
)
def test_an_invalid_value_fails_the_command(heartbeat, train, field, value):
    command, token = train

    r = heartbeat(token, {"results": [{"id": command.pk, "status": "running", field: value}]})

    assert r.status_code == 200
    command.refresh_from_db()
    assert command.status == NodeCommandStatus.FAILED
    assert f"invalid {field}" in command.result
    assert command.outcome == {}


@pytest.mark.parametrize(("field", "value"), [("progress", "0.5"), ("metrics", [1]), ("fine_tuned_model", 3)])
def test_a_value_of_the_wrong_json_type_is_a_400(heartbeat, train, field, value):
    command, token = train

    r = heartbeat(token, {"results": [{"id": command.pk, "status": "running", field: value}]})

    assert r.status_code == 400
    assert errors_of(r)[0][1] == f"results.0.{field}"
