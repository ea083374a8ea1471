"""Money entering from outside and leaving to outside (deposit, withdraw, hold_pay_out): balanced, once per key."""

from decimal import Decimal

import pytest

from clients import ledger
from clients.choices import HoldStatus, LedgerAccountKind, LedgerTransactionKind
from clients.models import Hold, LedgerTransaction
from tests.clients.ledger_helpers import account_sum, assert_books_balanced
from tests.factories import make_client

TOPUP, X402 = LedgerTransactionKind.TOPUP, LedgerTransactionKind.X402
STRIPE, CHAIN = LedgerAccountKind.STRIPE_CLEARING, LedgerAccountKind.X402_CLEARING


@pytest.fixture
def client(db):  # type: ignore[no-untyped-def]
    return make_client()[0]


def test_deposit_credits_from_a_clearing_account_once_per_key(client):
    for _ in range(3):
        ledger.deposit(client=client, amount=Decimal("12.5"), key="topup:1", kind=TOPUP, source=STRIPE)

    assert ledger.balance_of(client=client) == Decimal("12.5")
    assert account_sum(STRIPE) == Decimal("-12.5")
    assert LedgerTransaction.objects.get(kind=TOPUP).key == "topup:topup:1"
    assert_books_balanced()


def test_deposit_key_reused_for_another_amount_is_refused(client):
    ledger.deposit(client=client, amount=Decimal("5"), key="topup:2", kind=TOPUP, source=STRIPE)

    with pytest.raises(ledger.LedgerKeyReused):
        ledger.deposit(client=client, amount=Decimal("6"), key="topup:2", kind=TOPUP, source=STRIPE)


def test_only_external_accounts_can_be_a_source(client):
    with pytest.raises(ValueError, match="not an external account"):
        ledger.deposit(client=client, amount=Decimal("5"), key="x", kind=TOPUP, source=LedgerAccountKind.PLATFORM)


def test_withdraw_takes_at_most_the_balance_once(client):
    ledger.deposit(client=client, amount=Decimal("3"), key="x402:1", kind=X402, source=CHAIN)

    first = ledger.withdraw(client=client, amount=Decimal("5"), key="x402-reversal:1", kind=X402, destination=CHAIN)
    again = ledger.withdraw(client=client, amount=Decimal("5"), key="x402-reversal:1", kind=X402, destination=CHAIN)

    assert first == again and ledger.balance_of(client=client) == 0 and account_sum(CHAIN) == 0
    assert ledger.withdraw(client=client, amount=Decimal("1"), key="other", kind=X402, destination=CHAIN) is None
    assert_books_balanced()


def test_hold_pay_out_moves_the_held_amount_to_payouts_once(client):
    ledger.credit(client=client, amount=Decimal("20"), key="earned")
    ledger.hold_place(client=client, amount=Decimal("15"), key="payout:1")
    kind, to = LedgerTransactionKind.PAYOUT, LedgerAccountKind.PAYOUTS

    assert ledger.hold_pay_out(key="payout:1", kind=kind, destination=to) is not None
    assert ledger.hold_pay_out(key="payout:1", kind=kind, destination=to) is None

    assert Hold.objects.get(key="payout:1").status == HoldStatus.SETTLED
    assert ledger.balance_of(client=client) == Decimal("5")
    assert account_sum(LedgerAccountKind.PAYOUTS) == Decimal("15")
    assert_books_balanced()
