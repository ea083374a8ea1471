"""Money entering from outside and leaving to outside (deposit, withdraw, hold_pay_out): balanced, one line per
charge with its kind and ref, once per key (the ledger's one contract)."""

from decimal import Decimal

import pytest

from clients import ledger
from clients.choices import HoldStatus, LedgerAccountKind, LedgerEntryKind, LedgerTransactionKind
from clients.models import Hold, LedgerEntry, LedgerTransaction
from tests.clients.ledger_helpers import account_sum, assert_books_balanced
from tests.factories import make_client

TOPUP, X402, PAYOUT = LedgerEntryKind.TOPUP, LedgerEntryKind.X402, LedgerEntryKind.PAYOUT
STRIPE, CHAIN = LedgerAccountKind.STRIPE_CLEARING, LedgerAccountKind.X402_CLEARING


@pytest.fixture
def client(db):  # type: ignore[no-untyped-def]
    return make_client()[0]


def _client_lines(client) -> list[tuple[str, str | None, Decimal]]:  # type: ignore[no-untyped-def]
    entries = LedgerEntry.objects.filter(account__client=client).order_by("pk")
    return [(e.kind, e.ref, e.amount) for e in entries]


def test_deposit_credits_from_a_clearing_account_once_per_key(client):
    txns = [
        ledger.deposit(
            client_id=client.pk, amount=Decimal("12.5"), key="topup:1", kind=TOPUP, ref="topup:1", source=STRIPE
        )
        for _ in range(3)
    ]

    assert len({t.pk for t in txns}) == 1
    assert ledger.balance_of(client_id=client.pk) == Decimal("12.5")
    assert account_sum(STRIPE) == Decimal("-12.5")
    txn = LedgerTransaction.objects.get(kind=LedgerTransactionKind.TOPUP)
    assert txn.key == "topup:topup:1"
    assert _client_lines(client) == [("topup", "topup:1", Decimal("12.5"))]
    assert_books_balanced()


@pytest.mark.parametrize(
    "change", [{"amount": Decimal("6")}, {"ref": "topup:9"}, {"source": CHAIN}], ids=["amount", "ref", "source"]
)
def test_deposit_key_reused_with_other_arguments_is_refused(client, change):
    args = {"client_id": client.pk, "amount": Decimal("5"), "key": "topup:2", "kind": TOPUP, "ref": "topup:2"}
    ledger.deposit(**args, source=STRIPE)

    with pytest.raises(ledger.LedgerKeyReused):
        ledger.deposit(**{**args, "source": STRIPE, **change})
    assert ledger.balance_of(client_id=client.pk) == Decimal("5")


def test_only_external_accounts_and_outside_kinds_can_be_deposited(client):
    with pytest.raises(ValueError, match="not an external account"):
        ledger.deposit(
            client_id=client.pk, amount=Decimal("5"), key="x", kind=TOPUP, ref=None, source=LedgerAccountKind.PLATFORM
        )
    with pytest.raises(ValueError, match="not a kind of money in or out"):
        ledger.deposit(client_id=client.pk, amount=Decimal("5"), key="x", kind="inference", ref=None, source=STRIPE)
    assert not LedgerTransaction.objects.exists()


def test_withdraw_takes_at_most_the_balance_once(client):
    ledger.deposit(client_id=client.pk, amount=Decimal("3"), key="x402:1", kind=X402, ref="x402:1", source=CHAIN)
    args = {"client_id": client.pk, "kind": X402, "ref": "x402:1", "destination": CHAIN}

    first = ledger.withdraw(amount=Decimal("5"), key="x402-reversal:1", **args)
    again = ledger.withdraw(amount=Decimal("5"), key="x402-reversal:1", **args)

    assert first == again and ledger.balance_of(client_id=client.pk) == 0 and account_sum(CHAIN) == 0
    assert _client_lines(client) == [("x402", "x402:1", Decimal("3")), ("x402", "x402:1", Decimal("-3"))]
    assert ledger.withdraw(amount=Decimal("1"), key="other", **args) is None
    with pytest.raises(ledger.LedgerKeyReused):
        ledger.withdraw(amount=Decimal("4"), key="x402-reversal:1", **args)
    assert_books_balanced()


def test_hold_pay_out_moves_the_held_amount_to_payouts_once(client):
    ledger.credit(client_id=client.pk, amount=Decimal("20"), key="earned")
    ledger.hold_place(client_id=client.pk, amount=Decimal("15"), key="payout:1", ref="payout:1")
    to = LedgerAccountKind.PAYOUTS

    first = ledger.hold_pay_out(key="payout:1", kind=PAYOUT, destination=to)
    assert first is not None
    assert ledger.hold_pay_out(key="payout:1", kind=PAYOUT, destination=to) == first  # a retry

    assert Hold.objects.get(key="payout:1").status == HoldStatus.SETTLED
    assert ledger.balance_of(client_id=client.pk) == Decimal("5")
    assert ledger.held_of(client_id=client.pk) == 0
    assert account_sum(LedgerAccountKind.PAYOUTS) == Decimal("15")
    assert _client_lines(client) == [
        ("credit", None, Decimal("20")),
        ("hold", "payout:1", Decimal("-15")),
        ("release", "payout:1", Decimal("15")),
        ("payout", "payout:1", Decimal("-15")),
    ]
    assert_books_balanced()


def test_hold_pay_out_of_a_hold_released_or_unknown_is_a_conflict(client):
    ledger.credit(client_id=client.pk, amount=Decimal("20"), key="earned")
    ledger.hold_place(client_id=client.pk, amount=Decimal("15"), key="payout:2")
    ledger.hold_release(key="payout:2")

    with pytest.raises(ledger.HoldClosed):
        ledger.hold_pay_out(key="payout:2", kind=PAYOUT, destination=LedgerAccountKind.PAYOUTS)
    with pytest.raises(ledger.HoldNotFound):
        ledger.hold_pay_out(key="payout:404", kind=PAYOUT, destination=LedgerAccountKind.PAYOUTS)
    assert account_sum(LedgerAccountKind.PAYOUTS) == 0 and ledger.balance_of(client_id=client.pk) == Decimal("20")
    assert_books_balanced()
