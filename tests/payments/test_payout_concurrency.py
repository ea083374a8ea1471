"""Two payout requests at once on real PostgreSQL connections cannot hold more than the provider has."""

from decimal import Decimal

import pytest

from clients import ledger
from clients.choices import ClientRole
from core.errors import DomainError
from payments import services
from payments.models import Payout
from tests.clients.ledger_helpers import assert_books_balanced
from tests.clients.test_ledger_concurrency import race
from tests.factories import make_client

pytestmark = pytest.mark.django_db(transaction=True)


def test_two_concurrent_payouts_cannot_exceed_the_available_balance():
    provider, _ = make_client(role=ClientRole.GPU_PROVIDER, approved=True)
    ledger.credit(client_id=provider.pk, amount=Decimal("15"), key="earned")

    results = race(2, lambda i: services.payout_request(client=provider, amount=Decimal("10")))

    assert sorted(type(r).__name__ for r in results) == ["Payout", "PayoutAmountInvalid"]
    assert all(isinstance(r, Payout | DomainError) for r in results)
    assert Payout.objects.count() == 1
    assert ledger.balance_of(client_id=provider.pk) == Decimal("5")
    assert_books_balanced()


def test_many_concurrent_payouts_hold_at_most_the_balance():
    provider, _ = make_client(role=ClientRole.GPU_PROVIDER, approved=True)
    ledger.credit(client_id=provider.pk, amount=Decimal("55"), key="earned")

    results = race(8, lambda i: services.payout_request(client=provider, amount=Decimal("10")))

    assert sum(isinstance(r, Payout) for r in results) == 5
    assert ledger.balance_of(client_id=provider.pk) == Decimal("5")
    assert_books_balanced()
