"""clients/ledger/ without HTTP: credits, holds, settlement and refunds, and their idempotency."""

from decimal import Decimal

import pytest

from clients import ledger
from clients.choices import HoldStatus, LedgerAccountKind, LedgerTransactionKind
from clients.models import Client, Hold, LedgerAccount, LedgerEntry, LedgerTransaction
from core.errors import DomainError
from tests.clients.ledger_helpers import account_sum, assert_books_balanced
from tests.factories import make_client

# --- split_revenue -------------------------------------------------------------------------------------------


def test_revenue_split_is_70_25_5_for_a_round_charge():
    assert ledger.split_revenue(Decimal("10")) == {
        "operator": Decimal("7.000000"),
        "platform": Decimal("2.500000"),
        "treasury": Decimal("0.500000"),
    }


def test_revenue_split_gives_the_rounding_remainder_to_the_platform():
    assert ledger.split_revenue(Decimal("0.000001")) == {
        "operator": Decimal("0"),
        "platform": Decimal("0.000001"),
        "treasury": Decimal("0"),
    }
    assert ledger.split_revenue(Decimal("0.000019")) == {
        "operator": Decimal("0.000013"),
        "platform": Decimal("0.000006"),
        "treasury": Decimal("0"),
    }


@pytest.mark.parametrize("bad", [Decimal("-1"), Decimal("0.0000001"), Decimal("NaN")])
def test_revenue_split_refuses_negative_or_sub_micro_totals(bad):
    with pytest.raises(ValueError):
        ledger.split_revenue(bad)


def test_amounts_are_never_floats(payer):
    with pytest.raises(TypeError):
        ledger.hold_place(client_id=payer.pk, amount=1.5, key="float")  # type: ignore[arg-type]


# --- credit --------------------------------------------------------------------------------------------------


def test_credit_moves_outside_money_to_the_client(db):
    client, _ = make_client()

    txn = ledger.credit(client_id=client.pk, amount=Decimal("12.5"), key="topup-1", memo="welcome")

    assert txn.kind == LedgerTransactionKind.CREDIT
    assert txn.memo == "welcome"
    assert list(txn.entries.values_list("kind", "ref")) == [("credit", None)] * 2
    assert ledger.balance_of(client_id=client.pk) == Decimal("12.5")
    assert account_sum(LedgerAccountKind.FUNDING) == Decimal("-12.5")
    assert_books_balanced()


def test_credit_with_a_used_key_credits_nothing_again(db):
    client, _ = make_client()
    first = ledger.credit(client_id=client.pk, amount=Decimal("5"), key="topup")

    again = ledger.credit(client_id=client.pk, amount=Decimal("5"), key="topup")

    assert again.pk == first.pk
    assert ledger.balance_of(client_id=client.pk) == Decimal("5")


def test_credit_with_a_used_key_and_another_amount_is_refused(db):
    client, _ = make_client()
    ledger.credit(client_id=client.pk, amount=Decimal("5"), key="topup")

    with pytest.raises(ledger.LedgerKeyReused):
        ledger.credit(client_id=client.pk, amount=Decimal("6"), key="topup")

    assert ledger.balance_of(client_id=client.pk) == Decimal("5")


@pytest.mark.parametrize("amount", [Decimal("0"), Decimal("-1"), Decimal("1.0000001")])
def test_credit_refuses_amounts_that_are_not_positive_micro_dollars(db, amount):
    client, _ = make_client()

    with pytest.raises(ValueError):
        ledger.credit(client_id=client.pk, amount=amount, key="bad")

    assert not LedgerTransaction.objects.exists()


# --- hold_place ----------------------------------------------------------------------------------------------


def test_hold_moves_money_from_the_client_to_escrow(payer):
    hold = ledger.hold_place(client_id=payer.pk, amount=Decimal("30"), key="job-1", memo="job 1")

    assert hold.status == HoldStatus.HELD
    assert hold.amount == Decimal("30")
    assert ledger.balance_of(client_id=payer.pk) == Decimal("70")
    assert ledger.held_of(client_id=payer.pk) == Decimal("30")
    assert account_sum(LedgerAccountKind.ESCROW) == Decimal("30")
    assert_books_balanced()


def test_hold_larger_than_the_balance_raises_insufficient_funds_and_moves_nothing(payer):
    with pytest.raises(ledger.InsufficientFunds) as exc:
        ledger.hold_place(client_id=payer.pk, amount=Decimal("100.000001"), key="too-much")

    assert exc.value.status == 402
    assert exc.value.code == "insufficient_funds"
    assert ledger.balance_of(client_id=payer.pk) == Decimal("100")
    assert not Hold.objects.exists()


def test_hold_of_the_whole_balance_is_allowed(payer):
    ledger.hold_place(client_id=payer.pk, amount=Decimal("100"), key="all")

    assert ledger.balance_of(client_id=payer.pk) == 0


def test_hold_with_a_used_key_returns_the_same_hold_without_moving_money(payer):
    first = ledger.hold_place(client_id=payer.pk, amount=Decimal("30"), key="job-1")

    again = ledger.hold_place(client_id=payer.pk, amount=Decimal("30"), key="job-1")

    assert again.pk == first.pk
    assert ledger.balance_of(client_id=payer.pk) == Decimal("70")
    assert LedgerTransaction.objects.filter(kind=LedgerTransactionKind.HOLD).count() == 1


def test_hold_with_a_used_key_for_another_client_is_refused(payer, operator):
    ledger.hold_place(client_id=payer.pk, amount=Decimal("30"), key="job-1")
    ledger.credit(client_id=operator.pk, amount=Decimal("50"), key="op")

    with pytest.raises(ledger.LedgerKeyReused):
        ledger.hold_place(client_id=operator.pk, amount=Decimal("30"), key="job-1")

    assert ledger.balance_of(client_id=operator.pk) == Decimal("50")


# --- hold_settle ---------------------------------------------------------------------------------------------


def test_settle_pays_the_operator_platform_and_treasury_and_refunds_the_rest(payer, operator):
    ledger.hold_place(client_id=payer.pk, amount=Decimal("30"), key="job-1")

    txn = ledger.hold_settle(key="job-1", charge=Decimal("10"), kind="inference", operator_id=operator.pk, memo="job 1")

    assert txn is not None and txn.kind == LedgerTransactionKind.SETTLE
    assert ledger.balance_of(client_id=payer.pk) == Decimal("90")
    assert ledger.balance_of(client_id=operator.pk) == Decimal("7")
    assert ledger.held_of(client_id=payer.pk) == 0
    assert account_sum(LedgerAccountKind.PLATFORM) == Decimal("2.5")
    assert account_sum(LedgerAccountKind.TREASURY) == Decimal("0.5")
    assert account_sum(LedgerAccountKind.ESCROW) == 0
    hold = Hold.objects.get(key="job-1")
    assert hold.status == HoldStatus.SETTLED
    assert hold.settled_at is not None
    assert_books_balanced()


def test_settle_is_one_transaction_showing_the_release_and_the_charge_apart(payer, operator):
    # API.md §10 (contract changed): the payer's charge is its own line of minus exactly the charge, beside the
    # release of the hold, instead of one netted refund line of +20.
    ledger.hold_place(client_id=payer.pk, amount=Decimal("30"), key="job-1", ref="inference:7")

    txn = ledger.hold_settle(key="job-1", charge=Decimal("10"), kind="inference", operator_id=operator.pk)

    lines = set(LedgerEntry.objects.filter(transaction=txn).values_list("account__kind", "kind", "ref", "amount"))
    assert lines == {
        ("escrow", "release", "inference:7", Decimal("-30")),
        ("client", "release", "inference:7", Decimal("30")),
        ("client", "inference", "inference:7", Decimal("-10")),
        ("client", "inference", "inference:7", Decimal("7")),
        ("platform", "inference", "inference:7", Decimal("2.5")),
        ("treasury", "inference", "inference:7", Decimal("0.5")),
    }


def test_settle_charges_at_most_the_held_amount(payer, operator):
    ledger.hold_place(client_id=payer.pk, amount=Decimal("30"), key="job-1")

    ledger.hold_settle(key="job-1", charge=Decimal("45"), kind="inference", operator_id=operator.pk)

    assert ledger.balance_of(client_id=payer.pk) == Decimal("70")
    assert ledger.balance_of(client_id=operator.pk) == Decimal("21")


def test_settle_with_zero_charge_refunds_everything(payer, operator):
    ledger.hold_place(client_id=payer.pk, amount=Decimal("30"), key="job-1")

    txn = ledger.hold_settle(key="job-1", charge=Decimal("0"), kind="inference", operator_id=operator.pk)

    assert txn is not None
    assert ledger.balance_of(client_id=payer.pk) == Decimal("100")
    assert ledger.balance_of(client_id=operator.pk) == 0
    assert txn.entries.count() == 2


def test_settle_rounds_a_charge_with_more_places_half_up(payer, operator):
    ledger.hold_place(client_id=payer.pk, amount=Decimal("1"), key="job-1")

    ledger.hold_settle(key="job-1", charge=Decimal("0.1234565"), kind="inference", operator_id=operator.pk)

    assert ledger.balance_of(client_id=payer.pk) == Decimal("99") + Decimal("1") - Decimal("0.123457")


def test_settle_by_an_operator_paying_itself_shows_its_release_charge_and_earnings_apart(payer):
    # Contract changed (issue 11): an operator's settle line no longer nets its own refund with its earnings.
    ledger.hold_place(client_id=payer.pk, amount=Decimal("30"), key="job-1")

    txn = ledger.hold_settle(key="job-1", charge=Decimal("10"), kind="inference", operator_id=payer.pk)

    assert ledger.balance_of(client_id=payer.pk) == Decimal("97")
    own = sorted(txn.entries.filter(account__client=payer).values_list("kind", "amount"))
    assert own == [("inference", Decimal("-10")), ("inference", Decimal("7")), ("release", Decimal("30"))]


def test_settle_twice_settles_once_and_returns_the_first_settlement(payer, operator):
    # The one idempotency rule (issue 12): a retry returns the existing transaction (it used to return None).
    ledger.hold_place(client_id=payer.pk, amount=Decimal("30"), key="job-1")
    first = ledger.hold_settle(key="job-1", charge=Decimal("10"), kind="inference", operator_id=operator.pk)

    again = ledger.hold_settle(key="job-1", charge=Decimal("10"), kind="inference", operator_id=operator.pk)

    assert again is not None and again.pk == first.pk
    assert ledger.balance_of(client_id=operator.pk) == Decimal("7")


def test_settle_again_with_another_charge_is_refused(payer, operator):
    ledger.hold_place(client_id=payer.pk, amount=Decimal("30"), key="job-1")
    ledger.hold_settle(key="job-1", charge=Decimal("10"), kind="inference", operator_id=operator.pk)

    with pytest.raises(ledger.LedgerKeyReused) as exc:
        ledger.hold_settle(key="job-1", charge=Decimal("11"), kind="inference", operator_id=operator.pk)

    assert (exc.value.status, exc.value.code) == (409, "ledger_key_reused")
    assert ledger.balance_of(client_id=operator.pk) == Decimal("7")


def test_settle_after_release_is_refused_as_closed_and_moves_nothing(payer, operator):
    ledger.hold_place(client_id=payer.pk, amount=Decimal("30"), key="job-1")
    ledger.hold_release(key="job-1")

    with pytest.raises(ledger.HoldClosed) as exc:
        ledger.hold_settle(key="job-1", charge=Decimal("10"), kind="inference", operator_id=operator.pk)

    assert (exc.value.status, exc.value.code) == (409, "hold_closed")
    assert ledger.balance_of(client_id=payer.pk) == Decimal("100")
    assert ledger.balance_of(client_id=operator.pk) == 0


@pytest.mark.parametrize(
    "post",
    [
        lambda op: ledger.hold_settle(key="never-held", charge=Decimal("1"), kind="inference", operator_id=op),
        lambda op: ledger.hold_consume(
            key="never-held", use_key="u", charges=[ledger.Charge(Decimal("1"))], kind="inference", operator_id=op
        ),
        lambda op: ledger.hold_reduce(key="never-held", to=Decimal("1")),
        lambda op: ledger.hold_release(key="never-held"),
    ],
    ids=["settle", "consume", "reduce", "release"],
)
def test_every_hold_operation_refuses_an_unknown_key_alike(operator, post):
    # Issue 12: hold_release used to ignore an unknown key and hold_settle raised a LookupError (a 500).
    with pytest.raises(ledger.HoldNotFound) as exc:
        post(operator.pk)

    assert isinstance(exc.value, DomainError)
    assert (exc.value.status, exc.value.code) == (409, "hold_not_found")
    assert not LedgerTransaction.objects.filter(key__contains="never-held").exists()


@pytest.mark.parametrize("kind", ["release", "refund", "hold", "topup", "payout", "x402", "no-such-kind"])
def test_a_charge_must_name_a_kind_callers_may_post(payer, operator, kind):
    ledger.hold_place(client_id=payer.pk, amount=Decimal("30"), key="job-1")

    with pytest.raises(ValueError):
        ledger.hold_settle(key="job-1", charge=Decimal("1"), kind=kind, operator_id=operator.pk)

    assert Hold.objects.get(key="job-1").status == HoldStatus.HELD


def test_settle_refuses_a_negative_charge(payer, operator):
    ledger.hold_place(client_id=payer.pk, amount=Decimal("30"), key="job-1")

    with pytest.raises(ValueError):
        ledger.hold_settle(key="job-1", charge=Decimal("-1"), kind="inference", operator_id=operator.pk)

    assert Hold.objects.get(key="job-1").status == HoldStatus.HELD


# --- hold_release --------------------------------------------------------------------------------------------


def test_release_refunds_the_whole_hold(payer):
    ledger.hold_place(client_id=payer.pk, amount=Decimal("30"), key="job-1")

    ledger.hold_release(key="job-1")

    assert ledger.balance_of(client_id=payer.pk) == Decimal("100")
    assert Hold.objects.get(key="job-1").status == HoldStatus.RELEASED
    assert account_sum(LedgerAccountKind.ESCROW) == 0
    assert_books_balanced()


def test_release_twice_returns_the_first_release(payer):
    ledger.hold_place(client_id=payer.pk, amount=Decimal("30"), key="job-1")
    first = ledger.hold_release(key="job-1")

    again = ledger.hold_release(key="job-1")

    assert again is not None and again.pk == first.pk
    assert ledger.balance_of(client_id=payer.pk) == Decimal("100")


def test_release_after_settle_is_refused_as_closed(payer, operator):
    # Contract changed (issue 12): releasing a settled hold used to be silently ignored.
    ledger.hold_place(client_id=payer.pk, amount=Decimal("30"), key="job-1")
    ledger.hold_settle(key="job-1", charge=Decimal("10"), kind="inference", operator_id=operator.pk)

    with pytest.raises(ledger.HoldClosed):
        ledger.hold_release(key="job-1")

    assert ledger.balance_of(client_id=payer.pk) == Decimal("90")
    assert not LedgerTransaction.objects.filter(kind=LedgerTransactionKind.RELEASE).exists()


# --- paid up front (a hold of a charge's kind) ---------------------------------------------------------------


def test_a_hold_of_a_charges_kind_is_the_charge_and_its_settle_refunds_the_unused_part(payer, operator):
    ledger.hold_place(client_id=payer.pk, amount=Decimal("30"), key="rental:3", kind="rental", ref="rental:3")
    assert ledger.held_of(client_id=payer.pk) == 0  # paid, not held

    ledger.hold_settle(key="rental:3", charge=Decimal("10"), kind="rental", operator_id=operator.pk)

    lines = list(
        LedgerEntry.objects.filter(account__client=payer, kind__in=["rental", "refund"])
        .order_by("id")
        .values_list("kind", "ref", "amount")
    )
    assert lines == [("rental", "rental:3", Decimal("-30")), ("refund", "rental:3", Decimal("20"))]
    assert ledger.balance_of(client_id=payer.pk) == Decimal("90")
    assert ledger.balance_of(client_id=operator.pk) == Decimal("7")
    assert set(LedgerEntry.objects.filter(account__client=operator).values_list("kind", "ref")) == {
        ("rental", "rental:3")
    }
    assert_books_balanced()


def test_a_hold_placed_again_with_another_kind_or_ref_is_refused(payer):
    ledger.hold_place(client_id=payer.pk, amount=Decimal("30"), key="job-1", ref="inference:1")

    with pytest.raises(ledger.LedgerKeyReused):
        ledger.hold_place(client_id=payer.pk, amount=Decimal("30"), key="job-1", ref="inference:2")
    with pytest.raises(ledger.LedgerKeyReused):
        ledger.hold_place(client_id=payer.pk, amount=Decimal("30"), key="job-1", kind="rental", ref="inference:1")

    assert ledger.balance_of(client_id=payer.pk) == Decimal("70")


def test_a_credit_retried_with_another_kind_or_ref_is_refused(payer):
    ledger.credit(client_id=payer.pk, amount=Decimal("5"), key="gift")

    with pytest.raises(ledger.LedgerKeyReused):
        ledger.credit(client_id=payer.pk, amount=Decimal("5"), key="gift", ref="inference:1")

    assert ledger.balance_of(client_id=payer.pk) == Decimal("105")


# --- the cache and the books -----------------------------------------------------------------------------------


def test_a_full_save_of_a_stale_client_keeps_the_ledgers_balance(payer):
    stale = Client.objects.get(pk=payer.pk)
    ledger.credit(client_id=payer.pk, amount=Decimal("1"), key="more")

    stale.phone_no = "555"
    stale.save()

    assert ledger.balance_of(client_id=payer.pk) == Decimal("101")
    assert ledger.reconcile() == []


def test_saving_the_balance_by_hand_is_refused(payer):
    payer.balance = Decimal("1000")

    with pytest.raises(ValueError):
        payer.save(update_fields=["balance"])


def test_reconcile_is_empty_for_consistent_books(payer, operator):
    ledger.hold_place(client_id=payer.pk, amount=Decimal("30"), key="job-1")
    ledger.hold_place(client_id=payer.pk, amount=Decimal("5"), key="job-2")
    ledger.hold_settle(key="job-1", charge=Decimal("10"), kind="inference", operator_id=operator.pk)

    assert ledger.reconcile() == []


def test_reconcile_reports_a_tampered_client_balance(payer):
    Client.objects.filter(pk=payer.pk).update(balance=Decimal("150"))

    assert ledger.reconcile() == [
        ledger.BalanceMismatch(f"client:{payer.pk}", payer.pk, Decimal("150"), Decimal("100"))
    ]


def test_reconcile_reports_escrow_that_does_not_match_the_open_holds(payer):
    ledger.hold_place(client_id=payer.pk, amount=Decimal("30"), key="job-1")
    Hold.objects.filter(key="job-1").update(amount=Decimal("31"))

    assert ledger.reconcile() == [ledger.BalanceMismatch("escrow", None, Decimal("31"), Decimal("30"))]


def test_system_accounts_are_one_row_per_kind(payer, operator):
    for n in range(3):
        ledger.hold_place(client_id=payer.pk, amount=Decimal("1"), key=f"job-{n}")
        ledger.hold_settle(key=f"job-{n}", charge=Decimal("1"), kind="inference", operator_id=operator.pk)

    kinds = list(LedgerAccount.objects.filter(client=None).values_list("kind", flat=True))
    assert sorted(kinds) == sorted(["escrow", "funding", "platform", "treasury"])
