"""Holds used as leases: placed up to the balance (`minimum`), charged while open (`hold_consume`), released."""

from decimal import Decimal

import pytest

from clients import ledger
from clients.choices import HoldStatus, LedgerAccountKind, LedgerTransactionKind
from clients.models import Hold, LedgerTransaction
from tests.clients.ledger_helpers import account_sum, assert_books_balanced


@pytest.fixture
def payer_funds() -> Decimal:
    return Decimal("10")


def test_a_lease_is_placed_up_to_the_balance_but_never_below_the_minimum(payer):
    lease = ledger.hold_place(client=payer, amount=Decimal("25"), minimum=Decimal("1"), key="lease:a")
    assert lease.amount == Decimal("10") and ledger.balance_of(client=payer) == 0

    with pytest.raises(ledger.InsufficientFunds):
        ledger.hold_place(client=payer, amount=Decimal("25"), minimum=Decimal("0.01"), key="lease:b")
    assert not Hold.objects.filter(key="lease:b").exists()
    assert_books_balanced()


def test_a_lease_placed_again_with_its_key_holds_nothing_more(payer):
    first = ledger.hold_place(client=payer, amount=Decimal("4"), minimum=Decimal("1"), key="lease:a")
    again = ledger.hold_place(client=payer, amount=Decimal("4"), minimum=Decimal("1"), key="lease:a")
    assert again.pk == first.pk and ledger.balance_of(client=payer) == Decimal("6")


def test_consuming_charges_the_split_and_keeps_the_hold_open(payer, operator):
    ledger.hold_place(client=payer, amount=Decimal("4"), key="lease:a")

    ledger.hold_consume(key="lease:a", use_key="u1", charge=Decimal("1"), operator=operator)
    ledger.hold_consume(key="lease:a", use_key="u2", charge=Decimal("0.5"), operator=operator)

    hold = Hold.objects.get(key="lease:a")
    assert (hold.status, hold.consumed) == (HoldStatus.HELD, Decimal("1.5"))
    assert ledger.balance_of(client=operator) == Decimal("1.05")  # 70% of 1.5
    assert account_sum(LedgerAccountKind.PLATFORM) == Decimal("0.375")
    assert account_sum(LedgerAccountKind.TREASURY) == Decimal("0.075")
    assert account_sum(LedgerAccountKind.ESCROW) == Decimal("2.5")
    assert ledger.reconcile() == []
    assert_books_balanced()


def test_a_consume_retried_with_its_key_charges_nothing_more(payer, operator):
    ledger.hold_place(client=payer, amount=Decimal("4"), key="lease:a")
    first = ledger.hold_consume(key="lease:a", use_key="u1", charge=Decimal("1"), operator=operator)
    again = ledger.hold_consume(key="lease:a", use_key="u1", charge=Decimal("1"), operator=operator)
    assert again.pk == first.pk
    assert Hold.objects.get(key="lease:a").consumed == Decimal("1")
    assert LedgerTransaction.objects.filter(kind=LedgerTransactionKind.USAGE).count() == 1


def test_consuming_never_takes_more_than_is_still_held(payer, operator):
    ledger.hold_place(client=payer, amount=Decimal("2"), key="lease:a")
    ledger.hold_consume(key="lease:a", use_key="u1", charge=Decimal("1.5"), operator=operator)
    ledger.hold_consume(key="lease:a", use_key="u2", charge=Decimal("1.5"), operator=operator)
    assert Hold.objects.get(key="lease:a").consumed == Decimal("2")
    assert ledger.balance_of(client=payer) == Decimal("8")
    assert_books_balanced()


def test_releasing_a_lease_gives_back_what_was_not_consumed(payer, operator):
    ledger.hold_place(client=payer, amount=Decimal("4"), key="lease:a")
    ledger.hold_consume(key="lease:a", use_key="u1", charge=Decimal("1.25"), operator=operator)

    ledger.hold_release(key="lease:a")
    ledger.hold_release(key="lease:a")

    assert Hold.objects.get(key="lease:a").status == HoldStatus.RELEASED
    assert ledger.balance_of(client=payer) == Decimal("8.75")
    assert account_sum(LedgerAccountKind.ESCROW) == 0
    assert_books_balanced()


def test_a_lease_used_to_the_last_cent_closes_as_settled(payer, operator):
    ledger.hold_place(client=payer, amount=Decimal("1"), key="lease:a")
    ledger.hold_consume(key="lease:a", use_key="u1", charge=Decimal("1"), operator=operator)
    ledger.hold_release(key="lease:a")
    assert Hold.objects.get(key="lease:a").status == HoldStatus.SETTLED
    assert_books_balanced()


def test_settling_a_partly_consumed_hold_refunds_only_what_is_left(payer, operator):
    ledger.hold_place(client=payer, amount=Decimal("4"), key="lease:a")
    ledger.hold_consume(key="lease:a", use_key="u1", charge=Decimal("1"), operator=operator)
    ledger.hold_settle(key="lease:a", charge=Decimal("5"), operator=operator)
    assert ledger.balance_of(client=payer) == Decimal("6")  # 1 consumed + 3 settled (capped at what was left)
    assert_books_balanced()


def test_usage_after_the_lease_was_released_is_charged_from_the_balance_as_far_as_it_goes(payer, operator):
    ledger.hold_place(client=payer, amount=Decimal("4"), key="lease:a")
    ledger.hold_release(key="lease:a")
    ledger.hold_place(client=payer, amount=Decimal("9.5"), key="other")  # leaves 0.5 available

    ledger.hold_consume(key="lease:a", use_key="late", charge=Decimal("2"), operator=operator)

    assert ledger.balance_of(client=payer) == 0
    assert ledger.balance_of(client=operator) == Decimal("0.35")
    assert ledger.hold_consume(key="lease:a", use_key="later", charge=Decimal("1"), operator=operator) is None
    assert_books_balanced()
