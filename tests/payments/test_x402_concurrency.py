"""Two x402 requests of one address at once, on real PostgreSQL connections, when its credit covers only one: the
loser is served from its own payment (credited, then settled), never an error with its nonce burnt."""

import base64
import json
import threading
from decimal import Decimal

import pytest
from rest_framework.test import APIClient

from clients import ledger
from payments import services
from payments.choices import X402PaymentStatus
from payments.models import X402Payment
from tests.clients.ledger_helpers import assert_books_balanced
from tests.clients.test_ledger_concurrency import race
from tests.payments.test_x402 import BODY, PAYER, URL, node, pay, requirements  # noqa: F401 (node: a fixture)

pytestmark = pytest.mark.django_db(transaction=True)
USDC = Decimal(10) ** 6


def test_two_credit_paid_requests_at_once_with_credit_for_one_are_both_served(node, facilitator):  # noqa: F811
    required = requirements(APIClient())
    need = Decimal(required["maxAmountRequired"]) / USDC
    payer = services.x402_payer_get_or_create(address=PAYER)
    ledger.credit(client_id=payer.client_id, amount=need * Decimal("1.5"), key="earlier-credit")
    headers = [pay(required), pay(required)]
    facilitator.verify_barrier = threading.Barrier(2)  # both verified, then both look at the credit together
    node[1].behaviour.first_byte_delay_s = 0.3

    results = race(2, lambda i: APIClient().post(URL, BODY, format="json", HTTP_X_PAYMENT=headers[i]))

    assert [getattr(r, "status_code", r) for r in results] == [200, 200], [getattr(r, "content", r) for r in results]
    answers = sorted(
        json.loads(base64.b64decode(r["X-PAYMENT-RESPONSE"])).get("paidFromCredit", False) for r in results
    )
    assert answers == [False, True]  # one from the credit, the other from its own payment, settled
    assert len(facilitator.calls("/verify")) == 2 and len(facilitator.calls("/settle")) == 1
    statuses = sorted(X402Payment.objects.values_list("status", flat=True))
    assert statuses == sorted([X402PaymentStatus.SETTLED, X402PaymentStatus.UNUSED])
    paid = X402Payment.objects.get(status=X402PaymentStatus.SETTLED).amount
    assert ledger.balance_of(client_id=payer.client_id) == need * Decimal("1.5") + paid - 2 * Decimal("0.012")
    assert len(node[1].chat_requests) == 2
    assert_books_balanced()
