"""ledger.hold_top_up: more money into an open hold (a pay-as-you-go rental renewed, a fixed rental extended)."""

from decimal import Decimal

import pytest

from clients import ledger
from clients.choices import LedgerAccountKind
from clients.models import Hold, LedgerEntry


def test_a_top_up_moves_money_from_the_balance_into_the_hold(payer):
    ledger.hold_place(client_id=payer.pk, amount=Decimal("10"), key="rental:1")

    hold = ledger.hold_top_up(key="rental:1", amount=Decimal("2.5"), top_up_key="rental:1:topup:1")

    assert hold.amount == Decimal("12.5")
    assert ledger.balance_of(client_id=payer.pk) == Decimal("87.5")
    escrow = LedgerEntry.objects.filter(account__kind=LedgerAccountKind.ESCROW)
    assert sum(e.amount for e in escrow) == Decimal("12.5")
    assert ledger.reconcile() == []


def test_a_top_up_key_adds_once(payer):
    ledger.hold_place(client_id=payer.pk, amount=Decimal("10"), key="rental:1")

    for _ in range(2):
        ledger.hold_top_up(key="rental:1", amount=Decimal("1"), top_up_key="rental:1:topup:1")

    assert Hold.objects.get(key="rental:1").amount == Decimal("11")
    assert ledger.balance_of(client_id=payer.pk) == Decimal("89")


def test_a_top_up_beyond_the_balance_is_refused_and_moves_nothing(payer):
    ledger.hold_place(client_id=payer.pk, amount=Decimal("90"), key="rental:1")

    with pytest.raises(ledger.InsufficientFunds):
        ledger.hold_top_up(key="rental:1", amount=Decimal("10.000001"), top_up_key="rental:1:topup:1")

    assert Hold.objects.get(key="rental:1").amount == Decimal("90")
    assert ledger.balance_of(client_id=payer.pk) == Decimal("10")


def test_a_closed_hold_cannot_be_topped_up(payer):
    ledger.hold_place(client_id=payer.pk, amount=Decimal("10"), key="rental:1")
    ledger.hold_release(key="rental:1")

    with pytest.raises(ledger.HoldClosed):
        ledger.hold_top_up(key="rental:1", amount=Decimal("1"), top_up_key="rental:1:topup:1")
    with pytest.raises(ledger.HoldNotFound):
        ledger.hold_top_up(key="rental:404", amount=Decimal("1"), top_up_key="rental:404:topup:1")
    assert ledger.balance_of(client_id=payer.pk) == Decimal("100")


def test_a_top_up_key_reused_for_another_amount_is_refused(payer):
    ledger.hold_place(client_id=payer.pk, amount=Decimal("10"), key="rental:1")
    ledger.hold_top_up(key="rental:1", amount=Decimal("1"), top_up_key="rental:1:topup:1")

    with pytest.raises(ledger.LedgerKeyReused):
        ledger.hold_top_up(key="rental:1", amount=Decimal("2"), top_up_key="rental:1:topup:1")
    assert Hold.objects.get(key="rental:1").amount == Decimal("11")


def test_a_top_up_reads_as_its_hold_s_kind_and_ref(payer):
    """A reservation topped up reads `hold` again; a hold paid up front (a rental extended) reads a charge."""
    ledger.hold_place(client_id=payer.pk, amount=Decimal("10"), key="r:1", ref="rental:1")
    ledger.hold_place(client_id=payer.pk, amount=Decimal("10"), key="r:2", kind="rental", ref="rental:2")

    ledger.hold_top_up(key="r:1", amount=Decimal("1"), top_up_key="r:1:topup:1")
    ledger.hold_top_up(key="r:2", amount=Decimal("3"), top_up_key="r:2:extend:1")

    lines = LedgerEntry.objects.filter(account__client=payer).order_by("pk").values_list("kind", "ref", "amount")
    assert list(lines)[-2:] == [("hold", "rental:1", Decimal("-1")), ("rental", "rental:2", Decimal("-3"))]
    assert ledger.held_of(client_id=payer.pk) == Decimal("11")  # what was paid up front is not held
    assert ledger.reconcile() == []
