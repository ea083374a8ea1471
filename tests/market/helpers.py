"""Building market data the way the system does: heartbeats through the real endpoint, inference rows as
inference.services.inference_finish leaves them, money through clients/ledger/."""

from datetime import datetime, timedelta
from decimal import Decimal
from itertools import count

import time_machine
from django.utils import timezone

from clients.models import Client
from inference.choices import InferenceStatus
from inference.models import InferenceRequest
from llm_models.choices import NodeStatus
from llm_models.models import Node, NodeModel
from tests.conftest import bearer
from tests.factories import GpuFactory, LlmModelFactory, make_node

HEARTBEAT_URL = "/api/v1/llm_models/heartbeat/"
_keys = count(1)


def live_node(owner: Client, *, gpu_model: str | None = None, gpu_count: int = 8, **fields: object) -> Node:
    """A node heard from just now, optionally on a GPU machine of `gpu_model`."""
    if gpu_model is not None:
        fields["gpu"] = GpuFactory(user=owner.user, gpu_model=gpu_model, gpu_count=gpu_count)
    fields.setdefault("last_heartbeat_at", timezone.now())
    return make_node(owner=owner, status=NodeStatus.ONLINE, **fields)[0]


def serve(node: Node, name: str, inp: str = "0.50", out: str = "1.50", context_window: int | None = 8192) -> NodeModel:
    return NodeModel.objects.create(
        node=node,
        model=LlmModelFactory(name=name),
        input_price_per_million=Decimal(inp),
        output_price_per_million=Decimal(out),
        context_window=context_window,
    )


def completed(
    node: Node,
    *,
    latency_ms: int,
    completion_tokens: int = 10,
    model: str = "org/llama",
    finished_at: datetime | None = None,
    status: str = InferenceStatus.COMPLETED,
    client: Client | None = None,
) -> InferenceRequest:
    """An inference request as inference_finish leaves it: node, tokens, latency, status and finish time."""
    finished_at = finished_at or timezone.now()
    return InferenceRequest.objects.create(
        client=client or node.owner,
        question_text="q",
        desired_model=model,
        answer_text="a",
        status=status,
        node=node,
        max_tokens=512,
        prompt_tokens=5,
        completion_tokens=completion_tokens,
        latency_ms=latency_ms,
        request_key=f"test-{next(_keys)}",
        deadline_at=finished_at + timedelta(minutes=5),
        finished_at=finished_at,
    )


def heartbeats(api_client, token: str, times: list[datetime]) -> None:  # type: ignore[no-untyped-def]
    """POST a heartbeat at each of `times` through the real endpoint."""
    for at in times:
        with time_machine.travel(at, tick=False):
            r = api_client.post(
                HEARTBEAT_URL,
                {"metrics": {"gpu_utilization": 50}, "active_requests": 1},
                format="json",
                **bearer(token),
            )
            assert r.status_code == 200, r.content


def every(start: datetime, end: datetime, seconds: float) -> list[datetime]:
    out, at = [], start
    while at < end:
        out.append(at)
        at += timedelta(seconds=seconds)
    return out
