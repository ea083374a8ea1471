"""Fixtures for inference: live nodes backed by real stub servers, and helpers to read SSE."""

import json
from collections.abc import Callable
from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from core.crypto import encrypt
from llm_models.choices import NodeStatus
from llm_models.models import LlmModel, Node, NodeModel
from tests.factories import make_node

MODEL = "stub/model"
NODE_KEY = "sk-node-backend-secret-0123456789"


def live_node(
    *,
    owner,  # type: ignore[no-untyped-def]
    stub=None,  # type: ignore[no-untyped-def]
    model: str = MODEL,
    input_price: str = "1.00",
    output_price: str = "2.00",
    endpoint_url: str | None = None,
    api_key: str = NODE_KEY,
    **fields: object,
) -> Node:
    """An online node owned by `owner`, heard from now, serving `model` at these prices, answering at `stub`."""
    node, _ = make_node(
        owner=owner,
        status=NodeStatus.ONLINE,
        last_heartbeat_at=timezone.now(),
        endpoint_url=endpoint_url or (stub.base_url if stub else "http://127.0.0.1:9/v1"),
        backend_api_key_encrypted=encrypt(api_key),
        **fields,
    )
    llm, _ = LlmModel.objects.get_or_create(name=model)
    NodeModel.objects.create(
        node=node,
        model=llm,
        input_price_per_million=Decimal(input_price),
        output_price_per_million=Decimal(output_price),
    )
    return node


@pytest.fixture
def node_on(provider, private_endpoints, stub_node_factory) -> Callable:  # type: ignore[no-untyped-def]
    """Start a stub server and register a live node on it: `node, stub = node_on(name, **fields)`."""

    def make(name: str = "stub", **fields: object):  # type: ignore[no-untyped-def]
        stub = stub_node_factory(name)
        return live_node(owner=fields.pop("owner", provider[0]), stub=stub, name=name, **fields), stub

    return make


def stale(node: Node) -> None:
    Node.objects.filter(pk=node.pk).update(last_heartbeat_at=timezone.now() - timedelta(hours=1))


def sse_events(raw: str) -> list[tuple[str | None, str]]:
    """(event name, data) of each server-sent event in `raw`."""
    events = []
    for block in raw.split("\n\n"):
        name, data = None, []
        for line in block.splitlines():
            if line.startswith("event:"):
                name = line[6:].strip()
            elif line.startswith("data:"):
                data.append(line[5:].strip())
        if data:
            events.append((name, "\n".join(data)))
    return events


def sse_json(raw: str) -> list[dict]:
    return [json.loads(d) for _, d in sse_events(raw) if d != "[DONE]"]
