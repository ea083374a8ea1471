"""Fixtures of the ledger tests: a client with money to spend, and an operator to pay."""

from decimal import Decimal

import pytest

from clients import ledger
from tests.factories import make_client


@pytest.fixture
def payer_funds() -> Decimal:
    """What `payer` is credited (a test module may override it)."""
    return Decimal("100")


@pytest.fixture
def payer(db, payer_funds):  # type: ignore[no-untyped-def]
    client, _ = make_client()
    ledger.credit(client_id=client.pk, amount=payer_funds, key="seed")
    return client


@pytest.fixture
def operator(db):  # type: ignore[no-untyped-def]
    client, _ = make_client()
    return client
