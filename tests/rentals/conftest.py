"""Fixtures for rentals: a live, rentable node (an H100 at 2.50/h) and a renter with money."""

from decimal import Decimal

import pytest
from django.utils import timezone

from clients import ledger
from clients.choices import ClientRole
from clients.models import Client
from llm_models.choices import NodeStatus
from llm_models.models import Node
from tests.factories import GpuFactory, make_client, make_node

RENTALS_URL = "/api/v1/rentals/"
INVENTORY_URL = "/api/v1/rentals/inventory/"
PRICE = Decimal("2.500000")
SSH_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl renter@laptop"


def make_rentable_node(owner: Client, **fields: object) -> tuple[Node, str]:
    """A live node of `owner` with a GPU record priced PRICE per hour."""
    gpu = GpuFactory(user=owner.user, price_per_hour=fields.pop("price_per_hour", PRICE))
    defaults: dict = {"status": NodeStatus.ONLINE, "last_heartbeat_at": timezone.now(), "gpu": gpu}
    defaults.update(fields)
    return make_node(owner=owner, ssh_host="gpu-7.example.net", ssh_port=2222, ssh_user="renter", **defaults)


def fund(client: Client, amount: str = "1000") -> None:
    ledger.credit(client_id=client.pk, amount=Decimal(amount), key=f"test-fund:{client.pk}:{amount}")


@pytest.fixture
def operator(db):  # type: ignore[no-untyped-def]
    return make_client(role=ClientRole.GPU_PROVIDER, approved=True)[0]


@pytest.fixture
def node(operator):  # type: ignore[no-untyped-def]
    return make_rentable_node(operator)[0]


@pytest.fixture
def renter(db):  # type: ignore[no-untyped-def]
    """(client, raw API key) of a user with 1000 in its balance."""
    client, raw = make_client()
    fund(client)
    return client, raw
