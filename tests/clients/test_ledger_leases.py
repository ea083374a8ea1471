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
    lease = ledger.hold_place(client_id=payer.pk, amount=Decimal("25"), minimum=Decimal("1"), key="lease:a")
    assert lease.amount == Decimal("10") and ledger.balance_of(client_id=payer.pk) == 0

    with pytest.raises(ledger.InsufficientFunds):
        ledger.hold_place(client_id=payer.pk, amount=Decimal("25"), minimum=Decimal("0.01"), key="lease:b")
    assert not Hold.objects.filter(key="lease:b").exists()
    assert_books_balanced()


def test_a_lease_placed_again_with_its_key_holds_nothing_more(payer):
    first = ledger.hold_place(client_id=payer.pk, amount=Decimal("4"), minimum=Decimal("1"), key="lease:a")
    again = ledger.hold_place(client_id=payer.pk, amount=Decimal("4"), minimum=Decimal("1"), key="lease:a")
    assert again.pk == first.pk and ledger.balance_of(client_id=payer.pk) == Decimal("6")


def test_consuming_charges_the_split_and_keeps_the_hold_open(payer, operator):
    ledger.hold_place(client_id=payer.pk, amount=Decimal("4"), key="lease:a")

    ledger.hold_consume(
        key="lease:a", use_key="u1", charges=[ledger.Charge(Decimal("1"))], kind="inference", operator_id=operator.pk
    )
    ledger.hold_consume(
        key="lease:a", use_key="u2", charges=[ledger.Charge(Decimal("0.5"))], kind="inference", operator_id=operator.pk
    )

    hold = Hold.objects.get(key="lease:a")
    assert (hold.status, hold.consumed) == (HoldStatus.HELD, Decimal("1.5"))
    assert ledger.balance_of(client_id=operator.pk) == Decimal("1.05")  # 70% of 1.5
    assert account_sum(LedgerAccountKind.PLATFORM) == Decimal("0.375")
    assert account_sum(LedgerAccountKind.TREASURY) == Decimal("0.075")
    assert account_sum(LedgerAccountKind.ESCROW) == Decimal("2.5")
    assert ledger.reconcile() == []
    assert_books_balanced()


def test_a_consume_retried_with_its_key_charges_nothing_more(payer, operator):
    ledger.hold_place(client_id=payer.pk, amount=Decimal("4"), key="lease:a")
    first = ledger.hold_consume(
        key="lease:a", use_key="u1", charges=[ledger.Charge(Decimal("1"))], kind="inference", operator_id=operator.pk
    )
    again = ledger.hold_consume(
        key="lease:a", use_key="u1", charges=[ledger.Charge(Decimal("1"))], kind="inference", operator_id=operator.pk
    )
    assert again.pk == first.pk
    assert Hold.objects.get(key="lease:a").consumed == Decimal("1")
    assert LedgerTransaction.objects.filter(kind=LedgerTransactionKind.USAGE).count() == 1


def test_consuming_never_takes_more_than_is_still_held(payer, operator):
    ledger.hold_place(client_id=payer.pk, amount=Decimal("2"), key="lease:a")
    ledger.hold_consume(
        key="lease:a", use_key="u1", charges=[ledger.Charge(Decimal("1.5"))], kind="inference", operator_id=operator.pk
    )
    ledger.hold_consume(
        key="lease:a", use_key="u2", charges=[ledger.Charge(Decimal("1.5"))], kind="inference", operator_id=operator.pk
    )
    assert Hold.objects.get(key="lease:a").consumed == Decimal("2")
    assert ledger.balance_of(client_id=payer.pk) == Decimal("8")
    assert_books_balanced()


def test_releasing_a_lease_gives_back_what_was_not_consumed(payer, operator):
    ledger.hold_place(client_id=payer.pk, amount=Decimal("4"), key="lease:a")
    ledger.hold_consume(
        key="lease:a", use_key="u1", charges=[ledger.Charge(Decimal("1.25"))], kind="inference", operator_id=operator.pk
    )

    ledger.hold_release(key="lease:a")
    ledger.hold_release(key="lease:a")

    assert Hold.objects.get(key="lease:a").status == HoldStatus.RELEASED
    assert ledger.balance_of(client_id=payer.pk) == Decimal("8.75")
    assert account_sum(LedgerAccountKind.ESCROW) == 0
    assert_books_balanced()


def test_a_lease_used_to_the_last_cent_closes_as_released_with_nothing_given_back(payer, operator):
    # Contract changed (issue 12): it used to close as "settled", which a retried release could not tell apart
    # from a settlement; a release of it again now returns None like any retried release with nothing to give.
    ledger.hold_place(client_id=payer.pk, amount=Decimal("1"), key="lease:a")
    ledger.hold_consume(
        key="lease:a", use_key="u1", charges=[ledger.Charge(Decimal("1"))], kind="inference", operator_id=operator.pk
    )
    assert ledger.hold_release(key="lease:a") is None
    assert ledger.hold_release(key="lease:a") is None
    assert Hold.objects.get(key="lease:a").status == HoldStatus.RELEASED
    assert_books_balanced()


def test_settling_a_partly_consumed_hold_refunds_only_what_is_left(payer, operator):
    ledger.hold_place(client_id=payer.pk, amount=Decimal("4"), key="lease:a")
    ledger.hold_consume(
        key="lease:a", use_key="u1", charges=[ledger.Charge(Decimal("1"))], kind="inference", operator_id=operator.pk
    )
    ledger.hold_settle(key="lease:a", charge=Decimal("5"), kind="inference", operator_id=operator.pk)
    assert ledger.balance_of(client_id=payer.pk) == Decimal("6")  # 1 consumed + 3 settled (capped at what was left)
    assert_books_balanced()


def test_usage_after_the_lease_was_released_is_refused_unless_the_caller_asks_for_the_balance(payer, operator):
    # Issue 12: what to do with a closed lease is the caller's policy (inference/usage.py asks for the balance).
    ledger.hold_place(client_id=payer.pk, amount=Decimal("4"), key="lease:a")
    ledger.hold_release(key="lease:a")
    ledger.hold_place(client_id=payer.pk, amount=Decimal("9.5"), key="other")  # leaves 0.5 available
    late = [ledger.Charge(Decimal("2"), "inference:1")]

    with pytest.raises(ledger.HoldClosed):
        ledger.hold_consume(key="lease:a", use_key="late", charges=late, kind="inference", operator_id=operator.pk)
    ledger.hold_consume(
        key="lease:a",
        use_key="late",
        charges=late,
        kind="inference",
        operator_id=operator.pk,
        from_balance_if_closed=True,
    )

    assert ledger.balance_of(client_id=payer.pk) == 0
    assert ledger.balance_of(client_id=operator.pk) == Decimal("0.35")
    later = [ledger.Charge(Decimal("1"), "inference:2")]
    assert (
        ledger.hold_consume(
            key="lease:a",
            use_key="later",
            charges=later,
            kind="inference",
            operator_id=operator.pk,
            from_balance_if_closed=True,
        )
        is None
    )
    assert_books_balanced()


def test_a_batch_shows_one_line_per_charge_with_its_ref_after_one_release(payer, operator):
    ledger.hold_place(client_id=payer.pk, amount=Decimal("4"), key="lease:a")
    charges = [ledger.Charge(Decimal("0.25"), "inference:1"), ledger.Charge(Decimal("0.5"), "inference:2")]

    txn = ledger.hold_consume(key="lease:a", use_key="u1", charges=charges, kind="inference", operator_id=operator.pk)

    payer_lines = list(txn.entries.filter(account__client=payer).order_by("id").values_list("kind", "ref", "amount"))
    assert payer_lines == [
        ("release", None, Decimal("0.75")),
        ("inference", "inference:1", Decimal("-0.25")),
        ("inference", "inference:2", Decimal("-0.5")),
    ]
    assert ledger.held_of(client_id=payer.pk) == Decimal("3.25")
    assert ledger.balance_of(client_id=payer.pk) == Decimal("6")
    assert_books_balanced()


def test_a_reduced_lease_gives_back_all_but_what_is_still_to_be_charged(payer, operator):
    ledger.hold_place(client_id=payer.pk, amount=Decimal("4"), key="lease:a")
    ledger.hold_consume(
        key="lease:a", use_key="u1", charges=[ledger.Charge(Decimal("1"))], kind="inference", operator_id=operator.pk
    )

    ledger.hold_reduce(key="lease:a", to=Decimal("1.5"))  # 0.5 more is on its way
    again = ledger.hold_reduce(key="lease:a", to=Decimal("1.5"))

    assert again is not None
    assert ledger.balance_of(client_id=payer.pk) == Decimal("8.5")
    assert ledger.held_of(client_id=payer.pk) == Decimal("0.5")
    with pytest.raises(ledger.LedgerKeyReused):
        ledger.hold_reduce(key="lease:a", to=Decimal("2"))
    ledger.hold_consume(
        key="lease:a", use_key="u2", charges=[ledger.Charge(Decimal("0.5"))], kind="inference", operator_id=operator.pk
    )
    assert ledger.hold_release(key="lease:a") is None  # nothing left to give back
    assert ledger.balance_of(client_id=payer.pk) == Decimal("8.5")
    assert ledger.held_of(client_id=payer.pk) == 0
    assert_books_balanced()
