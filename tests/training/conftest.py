"""Fixtures for fine-tuning: training-capable nodes on priced GPUs, funded clients, real heartbeats."""

import json
import uuid
from decimal import Decimal
from typing import Any

import pytest
from django.utils import timezone

from clients import ledger
from clients.models import Client
from core.crypto import encrypt
from llm_models.choices import NodeStatus
from llm_models.models import LlmModel, Node, NodeModel
from tests.factories import GpuFactory, make_node
from tests.node_agent.conftest import agent, fake_bin  # noqa: F401  (the real gpu-node agent, for test_end_to_end)

BASE_MODEL = "stub/base"
CHAT = {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}]}
JSONL = (json.dumps(CHAT) + "\n") * 3


def fund(client: Client, amount: str) -> None:
    ledger.credit(client_id=client.pk, amount=Decimal(amount), key=f"test-fund:{uuid.uuid4().hex}", memo="test top-up")


def balance(client: Client) -> Decimal:
    return ledger.balance_of(client_id=client.pk)


def training_node(
    *,
    owner: Client,
    price: str = "6.00",
    free_mb: float = 40000,
    stub: Any = None,
    capabilities: tuple[str, ...] = ("inference", "training"),
    **fields: object,
) -> tuple[Node, str]:
    """An online node of `owner` on a GPU at `price` per hour, declaring `capabilities`, serving BASE_MODEL."""
    gpu = GpuFactory(user=owner.user, price_per_hour=Decimal(price))
    node, token = make_node(
        owner=owner,
        status=NodeStatus.ONLINE,
        last_heartbeat_at=timezone.now(),
        gpu=gpu,
        capabilities=list(capabilities),
        latest_metrics={"gpu_memory_total_mb": 81920, "gpu_memory_used_mb": 81920 - free_mb},
        endpoint_url=stub.base_url if stub else "http://127.0.0.1:9/v1",
        backend_api_key_encrypted=encrypt("sk-node-backend"),
        **fields,
    )
    llm, _ = LlmModel.objects.get_or_create(name=BASE_MODEL)
    NodeModel.objects.create(
        node=node, model=llm, input_price_per_million=Decimal("1.00"), output_price_per_million=Decimal("2.00")
    )
    return node, token


def heartbeat(api_client: Any, token: str, **body: Any) -> dict:
    """A real heartbeat through the public URL; returns the reply (its `commands`)."""
    response = api_client.post(
        "/api/v1/llm_models/heartbeat/", body, format="json", HTTP_AUTHORIZATION=f"Bearer {token}"
    )
    assert response.status_code == 200, response.content
    return response.json()


@pytest.fixture
def media(settings, tmp_path):  # type: ignore[no-untyped-def]
    """Uploaded files go to a temporary folder (the default storage)."""
    settings.MEDIA_ROOT = str(tmp_path / "media")
    return tmp_path / "media"


@pytest.fixture(scope="module")
def training_service(django_db_setup, django_db_blocker, tmp_path_factory):  # type: ignore[no-untyped-def]
    """A real uvicorn process (tests/inference/conftest.py's start_service) keeping uploads in a temporary folder.
    Tests using it need `transactional_db`, so that what they write is visible to it."""
    from tests.inference.conftest import start_service
    from tests.llm_models.conftest import _stop

    folder = tmp_path_factory.mktemp("training-service")
    with django_db_blocker.unblock():
        process = start_service(folder / "server.log", MEDIA_ROOT=str(folder / "media"))
    try:
        yield process
    finally:
        _stop(process)
