"""The heartbeat's lean path (llm_models/heartbeat_fastpath.py): same answers and same rows as the Django view.

The ASGI app is driven in-process over real HTTP semantics (httpx's ASGI transport) against the real database;
rows must be committed for the path's own connection pool to see them, hence `transactional_db`.
"""

import asyncio
import json
from datetime import timedelta
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clients.choices import ClientRole
from config.asgi import django_application
from llm_models import heartbeat_fastpath
from llm_models.choices import NodeCommandStatus, NodeStatus
from llm_models.heartbeat_fastpath import HeartbeatFastPath, parse_heartbeat
from llm_models.models import Node, NodeCommand, NodeMetricSample, NodeModel
from llm_models.serializers import HeartbeatIn
from tests.conftest import bearer
from tests.factories import make_client, make_node
from tests.llm_models.conftest import HEARTBEAT_URL, errors_of

AGENT_BODY = {
    "metrics": {
        "gpu_utilization": 37,
        "gpu_memory_used_mb": 20000,
        "gpu_memory_total_mb": 81920,
        "gpu_temperature_c": 61,
        "cpu_percent": 12.5,
        "ram_used_mb": 64000,
        "ram_total_mb": 512000,
        "gpus": [{"index": 0, "name": "NVIDIA H100 80GB HBM3", "utilization": 37, "memory_used_mb": 20000}],
        "a_metric_from_a_newer_agent": 1,
    },
    "active_requests": 3,
}


class Recorder:
    """The app behind the lean path: Django, counting what reaches it."""

    def __init__(self) -> None:
        self.calls = 0

    async def __call__(self, scope, receive, send) -> None:  # type: ignore[no-untyped-def]
        if scope["type"] == "http":
            self.calls += 1
        await django_application(scope, receive, send)


def post(body: Any, *, token: str | None, headers: dict[str, str] | None = None) -> tuple[httpx.Response, int]:
    """POST the heartbeat through the lean path; returns the response and how many requests reached Django."""
    django = Recorder()
    app = HeartbeatFastPath(django)
    all_headers = {"content-type": "application/json", **(headers or {})}
    if token:
        all_headers["authorization"] = f"Bearer {token}"
    content = body if isinstance(body, bytes) else json.dumps(body).encode()

    async def run() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        try:
            async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
                return await client.post(HEARTBEAT_URL, content=content, headers=all_headers)
        finally:
            await heartbeat_fastpath.close_pools()

    return asyncio.run(run()), django.calls


@pytest.fixture
def live_node(transactional_db):  # type: ignore[no-untyped-def]
    provider, _ = make_client(role=ClientRole.GPU_PROVIDER, approved=True)
    return make_node(owner=provider, models=["org/a"])


# --- Served by the lean path -----------------------------------------------------------------------------------


def test_a_common_heartbeat_is_answered_without_django(live_node):
    node, token = live_node

    response, django_calls = post(AGENT_BODY, token=token)

    assert response.status_code == 200
    assert response.json() == {"status": "online", "heartbeat_interval_s": 30, "commands": []}
    assert django_calls == 0
    node.refresh_from_db()
    assert node.status == NodeStatus.ONLINE
    assert node.active_requests == 3
    assert node.latest_metrics["gpu_utilization"] == 37.0
    assert node.latest_metrics["gpus"] == [
        {"index": 0, "name": "NVIDIA H100 80GB HBM3", "utilization": 37.0, "memory_used_mb": 20000.0}
    ]
    assert "a_metric_from_a_newer_agent" not in node.latest_metrics


def test_the_lean_path_stores_what_the_django_view_stores(live_node, api_client):
    node, token = live_node
    twin, twin_token = make_node(owner=node.owner, models=["org/a"])

    post(AGENT_BODY, token=token)
    api_client.post(HEARTBEAT_URL, AGENT_BODY, format="json", **bearer(twin_token))

    node.refresh_from_db()
    twin.refresh_from_db()
    assert (node.status, node.latest_metrics, node.active_requests) == (
        twin.status,
        twin.latest_metrics,
        twin.active_requests,
    )
    ours = NodeMetricSample.objects.get(node=node)
    theirs = NodeMetricSample.objects.get(node=twin)
    assert (ours.metrics, ours.active_requests) == (theirs.metrics, theirs.active_requests)


def test_a_sample_is_kept_once_per_sampling_interval(live_node):
    node, token = live_node

    post(AGENT_BODY, token=token)
    post(AGENT_BODY, token=token)
    assert NodeMetricSample.objects.filter(node=node).count() == 1

    Node.objects.filter(pk=node.pk).update(last_metrics_sample_at=node.registered_at - timedelta(minutes=5))
    post(AGENT_BODY, token=token)
    assert NodeMetricSample.objects.filter(node=node).count() == 2


def test_a_heartbeat_without_active_requests_keeps_the_last_count(live_node):
    node, token = live_node
    post(AGENT_BODY, token=token)

    post({"metrics": {"cpu_percent": 5}}, token=token)

    node.refresh_from_db()
    assert node.active_requests == 3
    assert node.latest_metrics == {"cpu_percent": 5.0}


# --- Handed to Django, which answers as it always does ------------------------------------------------------------


def test_an_unknown_token_is_refused_by_django(live_node):
    response, django_calls = post(AGENT_BODY, token="gmn_not-a-real-token")

    assert django_calls == 1
    assert response.status_code == 401
    assert errors_of(response) == [("invalid_node_token", None)]


def test_a_revoked_provider_node_is_refused_by_django(live_node):
    node, token = live_node
    node.owner.is_gpu_provider_approved = False
    node.owner.save()

    response, django_calls = post(AGENT_BODY, token=token)

    assert (response.status_code, django_calls) == (401, 1)
    assert errors_of(response) == [("provider_not_approved", None)]
    node.refresh_from_db()
    assert node.status == NodeStatus.OFFLINE


@pytest.mark.parametrize(
    ("approved", "staff", "active", "deregistered"),
    [
        (True, False, True, False),
        (False, True, True, False),  # staff need no approval
        (False, False, True, False),
        (True, False, False, False),
        (True, False, True, True),
    ],
)
def test_the_sql_serves_exactly_the_nodes_the_python_rule_lets_serve(
    transactional_db, approved, staff, active, deregistered
):  # type: ignore[no-untyped-def]
    """Parity: the fast path's WHERE clause and llm_models' rule (NodeTokenAuthentication over
    node_get_by_token_digest) decide alike whether a node may serve."""
    from rest_framework import exceptions
    from rest_framework.test import APIRequestFactory

    from llm_models.authentication import NodeTokenAuthentication

    provider, _ = make_client(role=ClientRole.GPU_PROVIDER, approved=approved, staff=staff, is_active=active)
    node, token = make_node(owner=provider, models=["org/a"])
    if deregistered:
        Node.objects.filter(pk=node.pk).update(status=NodeStatus.DEREGISTERED)
    try:
        request = APIRequestFactory().post(HEARTBEAT_URL, **bearer(token))
        python_allows = NodeTokenAuthentication().authenticate(request) is not None
    except exceptions.AuthenticationFailed:
        python_allows = False

    _, django_calls = post(AGENT_BODY, token=token)

    assert (django_calls == 0) == python_allows
    assert python_allows == (active and (approved or staff) and not deregistered)


def test_a_node_with_a_pending_command_gets_it_from_django(live_node):
    node, token = live_node
    command = NodeCommand.objects.create(node=node, action="start", params={"rental_id": 1})

    response, django_calls = post(AGENT_BODY, token=token)

    assert (response.status_code, django_calls) == (200, 1)
    assert response.json()["commands"] == [{"id": command.pk, "action": "start", "params": {"rental_id": 1}}]
    command.refresh_from_db()
    assert command.status == NodeCommandStatus.RUNNING


def test_a_command_sent_but_not_reported_is_sent_again_by_django(live_node):
    node, token = live_node
    command = NodeCommand.objects.create(node=node, action="stop", status=NodeCommandStatus.RUNNING)

    response, django_calls = post(AGENT_BODY, token=token)

    assert (response.status_code, django_calls) == (200, 1)
    assert [c["id"] for c in response.json()["commands"]] == [command.pk]


def test_once_its_commands_are_reported_a_node_takes_the_lean_path_again(live_node):
    node, token = live_node
    NodeCommand.objects.create(node=node, action="stop", status=NodeCommandStatus.SUCCEEDED)
    NodeCommand.objects.create(node=node, action="reset", status=NodeCommandStatus.FAILED)

    response, django_calls = post(AGENT_BODY, token=token)

    assert (response.status_code, django_calls) == (200, 0)
    assert response.json()["commands"] == []


def test_another_nodes_pending_command_does_not_divert_this_one(live_node):
    node, token = live_node
    other, _ = make_node(owner=node.owner)
    NodeCommand.objects.create(node=other, action="start")

    response, django_calls = post(AGENT_BODY, token=token)

    assert (response.status_code, django_calls) == (200, 0)


def test_a_deregistered_node_cannot_come_back(live_node):
    node, token = live_node
    Node.objects.filter(pk=node.pk).update(status=NodeStatus.DEREGISTERED)

    response, django_calls = post(AGENT_BODY, token=token)

    assert (response.status_code, django_calls) == (401, 1)
    node.refresh_from_db()
    assert node.status == NodeStatus.DEREGISTERED


def test_an_out_of_range_metric_is_a_400_from_django(live_node):
    node, token = live_node

    response, django_calls = post({"metrics": {"gpu_utilization": 101}}, token=token)

    assert (response.status_code, django_calls) == (400, 1)
    assert errors_of(response) == [("max_value", "metrics.gpu_utilization")]
    node.refresh_from_db()
    assert node.status == NodeStatus.OFFLINE


def test_a_changed_model_list_goes_to_django_which_syncs_it(live_node):
    node, token = live_node

    response, django_calls = post({"metrics": {}, "models": [{"name": "org/new"}]}, token=token)

    assert (response.status_code, django_calls) == (200, 1)
    assert list(NodeModel.objects.filter(node=node).values_list("model__name", flat=True)) == ["org/new"]


def test_an_unchanged_model_list_takes_the_lean_path(live_node):
    node, token = live_node
    models = [{"name": "org/new", "input_price_per_million": "0.20", "context_window": 8192}]
    post({"metrics": {}, "models": models}, token=token)  # synced by Django

    response, django_calls = post({"metrics": {"cpu_percent": 1}, "models": models}, token=token)

    assert (response.status_code, django_calls) == (200, 0)
    node.refresh_from_db()
    assert node.latest_metrics == {"cpu_percent": 1.0}
    served = NodeModel.objects.get(node=node)
    assert (served.model.name, str(served.input_price_per_million)) == ("org/new", "0.200000")


def test_an_invalid_model_list_never_takes_the_lean_path(live_node):
    _, token = live_node
    bad = [{"name": "org/x", "input_price_per_million": "-1"}]

    response, django_calls = post({"metrics": {}, "models": bad}, token=token)

    assert (response.status_code, django_calls) == (400, 1)


def test_a_body_that_is_not_json_is_a_400_from_django(live_node):
    _, token = live_node

    response, django_calls = post(b'{"metrics": {"cpu_percent": NaN}}', token=token)

    assert (response.status_code, django_calls) == (400, 1)


def test_a_host_django_does_not_serve_is_refused_by_django(live_node):
    node, token = live_node

    response, django_calls = post(AGENT_BODY, token=token, headers={"host": "evil.example.com"})

    assert (response.status_code, django_calls) == (400, 1)
    node.refresh_from_db()
    assert node.status == NodeStatus.OFFLINE


def test_an_oversized_body_is_a_413_and_stores_nothing(live_node, settings):  # type: ignore[no-untyped-def]
    node, token = live_node
    body = {"metrics": {"cpu_percent": 5, "padding": "x" * settings.MAX_REQUEST_BODY_BYTES}}

    response, django_calls = post(body, token=token)

    assert (response.status_code, django_calls) == (413, 1)
    node.refresh_from_db()
    assert node.latest_metrics == {}


# --- Parity of the validation with HeartbeatIn's ----------------------------------------------------------------

_numbers = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**12), max_value=10**12),
    st.floats(allow_nan=False, allow_infinity=False, width=64),
    st.text(max_size=5),
)
_gpu = st.dictionaries(
    st.sampled_from(["index", "name", "utilization", "memory_used_mb", "temperature_c", "other"]),
    st.one_of(_numbers, st.text(max_size=140)),
    max_size=6,
)
_metrics = st.dictionaries(
    st.sampled_from(
        [
            "gpu_utilization",
            "gpu_memory_used_mb",
            "gpu_memory_total_mb",
            "gpu_temperature_c",
            "cpu_percent",
            "ram_used_mb",
            "ram_total_mb",
            "unknown",
        ]
    ),
    _numbers,
    max_size=8,
) | st.fixed_dictionaries({"gpus": st.lists(_gpu, max_size=3)})
_bodies = st.dictionaries(
    st.sampled_from(["metrics", "active_requests", "models", "extra"]),
    st.one_of(_metrics, _numbers),
    max_size=3,
)


def _plain(value: Any) -> Any:
    return json.loads(json.dumps(value))


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(body=_bodies)
def test_the_lean_path_accepts_only_what_the_serializer_accepts_and_stores_the_same(body):
    fast = parse_heartbeat(json.dumps(body).encode())
    if fast is None:
        return  # handed to Django: always safe
    # `models` is taken only when it is byte for byte a list the server validated before (the SQL checks the
    # digest; test_an_invalid_model_list_never_takes_the_lean_path), so parity is about the rest of the body.
    serializer = HeartbeatIn(data={k: v for k, v in body.items() if k != "models"})
    assert serializer.is_valid(), (body, serializer.errors)
    validated = serializer.validated_data
    assert _plain(fast.metrics) == _plain(validated.get("metrics", {}))
    assert fast.active_requests == validated.get("active_requests")
    assert (fast.models_digest is None) == ("models" not in body)


def test_the_bodies_agents_send_take_the_lean_path():
    for body in (AGENT_BODY, {"metrics": {}}, {}, {"active_requests": 0}, {"metrics": {"gpu_utilization": None}}):
        assert parse_heartbeat(json.dumps(body).encode()) is not None, body


def test_results_with_structured_fields_and_capabilities_go_to_django_which_records_them(live_node):
    node, token = live_node
    command = NodeCommand.objects.create(node=node, action="stop", status=NodeCommandStatus.RUNNING)
    result = {"id": command.pk, "status": "succeeded", "output": "saved", "snapshot_ref": "snaps:rental-1"}

    response, django_calls = post({**AGENT_BODY, "results": [result], "capabilities": ["containers"]}, token=token)

    assert (response.status_code, django_calls) == (200, 1)
    command.refresh_from_db()
    assert (command.status, command.outcome) == (NodeCommandStatus.SUCCEEDED, {"snapshot_ref": "snaps:rental-1"})
    node.refresh_from_db()
    assert node.capabilities == ["containers"]
    assert post(AGENT_BODY, token=token)[1] == 0  # then the lean path again
