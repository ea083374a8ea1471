"""The same signed webhook delivered ten times at once, over real HTTP to a live server: credited exactly once."""

import threading
from decimal import Decimal

import httpx
import pytest

from clients import ledger
from clients.choices import LedgerTransactionKind
from clients.models import LedgerTransaction
from payments import services
from payments.choices import TopUpStatus
from tests.clients.ledger_helpers import assert_books_balanced
from tests.factories import make_client
from tests.payments.conftest import WEBHOOK_SECRET
from tests.support.stub_stripe import event, sign

pytestmark = pytest.mark.django_db(transaction=True)


def test_ten_concurrent_deliveries_of_a_paid_session_credit_once(live_server, stub_stripe):
    client, _ = make_client()
    topup = services.topup_create(client=client, amount=Decimal("15.00"))
    session = stub_stripe.sessions[topup.stripe_session_id]
    payload = event("checkout.session.completed", session, status="complete", payment_status="paid")
    barrier = threading.Barrier(10)
    statuses: list[int] = []

    def deliver() -> None:
        barrier.wait()
        r = httpx.post(
            f"{live_server.url}/api/v1/payments/stripe/webhook/",
            content=payload,
            headers={"Stripe-Signature": sign(payload, WEBHOOK_SECRET), "Content-Type": "application/json"},
            timeout=30,
        )
        statuses.append(r.status_code)

    threads = [threading.Thread(target=deliver) for _ in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert statuses == [200] * 10
    topup.refresh_from_db()
    assert topup.status == TopUpStatus.SUCCEEDED
    assert ledger.balance_of(client_id=client.pk) == Decimal("15")
    assert LedgerTransaction.objects.filter(kind=LedgerTransactionKind.TOPUP).count() == 1
    assert_books_balanced()
