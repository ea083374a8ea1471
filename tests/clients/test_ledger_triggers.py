"""The database's own guard of the ledger (clients/migrations/0003_ledger_triggers.py; 0008 checks each ledger
transaction once per firing statement).

These commit for real (`transaction=True`): the balance trigger is deferred to commit, as Hordak's is.
"""

from decimal import Decimal

import pytest
from django.db import IntegrityError, connection, transaction

from clients import ledger
from clients.choices import LedgerAccountKind, LedgerTransactionKind
from clients.models import LedgerAccount, LedgerEntry, LedgerTransaction
from tests.factories import make_client

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def accounts():  # type: ignore[no-untyped-def]
    return (
        LedgerAccount.objects.create(kind=LedgerAccountKind.PLATFORM),
        LedgerAccount.objects.create(kind=LedgerAccountKind.TREASURY),
    )


def insert_entry(txn_id: int, account_id: int, amount: str) -> None:
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO clients_ledgerentry (transaction_id, account_id, amount) VALUES (%s, %s, %s)",
            [txn_id, account_id, Decimal(amount)],
        )


def new_transaction(key: str) -> LedgerTransaction:
    return LedgerTransaction.objects.create(key=key, kind=LedgerTransactionKind.CREDIT)


def test_an_unbalanced_raw_insert_is_accepted_inside_the_transaction_and_refused_at_commit(accounts):
    platform, treasury = accounts
    reached_commit = False

    with pytest.raises(IntegrityError, match="unbalanced"), transaction.atomic():
        txn = new_transaction("raw-unbalanced")
        insert_entry(txn.pk, platform.pk, "5")
        insert_entry(txn.pk, treasury.pk, "-4")
        reached_commit = True  # deferred: nothing was refused before the commit

    assert reached_commit
    assert not LedgerTransaction.objects.filter(key="raw-unbalanced").exists()
    assert not LedgerEntry.objects.exists()


def test_a_transaction_with_a_single_entry_is_refused_at_commit(accounts):
    platform, _ = accounts

    with pytest.raises(IntegrityError, match="unbalanced"), transaction.atomic():
        insert_entry(new_transaction("one-leg").pk, platform.pk, "5")

    assert not LedgerTransaction.objects.exists()


def test_a_transaction_without_entries_is_refused_at_commit():
    with pytest.raises(IntegrityError, match="unbalanced"):
        new_transaction("no-legs")  # autocommit: its own transaction commits at once

    assert not LedgerTransaction.objects.exists()


def test_a_balanced_raw_insert_commits(accounts):
    platform, treasury = accounts

    with transaction.atomic():
        txn = new_transaction("raw-balanced")
        insert_entry(txn.pk, platform.pk, "5")
        insert_entry(txn.pk, treasury.pk, "-5")

    assert LedgerEntry.objects.filter(transaction=txn).count() == 2


def test_a_zero_entry_is_refused_at_once(accounts):
    platform, _ = accounts

    with pytest.raises(IntegrityError), transaction.atomic():
        insert_entry(new_transaction("zero").pk, platform.pk, "0")


@pytest.fixture
def posted():  # type: ignore[no-untyped-def]
    client, _ = make_client()
    return ledger.credit(client_id=client.pk, amount=Decimal("10"), key="posted")


@pytest.mark.parametrize(
    "sql",
    [
        "UPDATE clients_ledgerentry SET amount = amount * 2 WHERE transaction_id = %s",
        "DELETE FROM clients_ledgerentry WHERE transaction_id = %s",
        "UPDATE clients_ledgertransaction SET memo = 'edited' WHERE id = %s",
        "DELETE FROM clients_ledgertransaction WHERE id = %s",
    ],
)
def test_entries_and_transactions_cannot_be_updated_or_deleted(posted, sql):
    with pytest.raises(IntegrityError, match="append-only"), connection.cursor() as cursor:
        cursor.execute(sql, [posted.pk])

    assert sorted(LedgerEntry.objects.filter(transaction=posted).values_list("amount", flat=True)) == [-10, 10]
    assert LedgerTransaction.objects.get(pk=posted.pk).memo == ""


def test_the_orm_cannot_delete_an_entry_either(posted):
    with pytest.raises(IntegrityError, match="append-only"):
        LedgerEntry.objects.filter(transaction=posted).delete()

    assert LedgerEntry.objects.filter(transaction=posted).count() == 2


def test_the_ledgers_own_postings_pass_the_triggers(posted):
    client = posted.entries.get(account__kind=LedgerAccountKind.CLIENT).account.client
    operator, _ = make_client()

    ledger.hold_place(client_id=client.pk, amount=Decimal("4"), key="job")
    ledger.hold_settle(key="job", charge=Decimal("3.333333"), kind="inference", operator_id=operator.pk)

    assert ledger.reconcile() == []
    assert LedgerTransaction.objects.count() == 3


def test_each_ledger_transaction_of_a_commit_is_checked(accounts):
    """The check runs once per ledger transaction (0008): a balanced one does not vouch for the next."""
    platform, treasury = accounts

    with pytest.raises(IntegrityError, match="unbalanced"), transaction.atomic():
        first, second = new_transaction("first"), new_transaction("second")
        insert_entry(first.pk, platform.pk, "5")
        insert_entry(first.pk, treasury.pk, "-5")
        insert_entry(second.pk, platform.pk, "5")
        insert_entry(second.pk, treasury.pk, "-4")

    assert not LedgerTransaction.objects.exists()


def test_a_line_added_after_a_forced_check_is_checked_at_commit(accounts):
    """A transaction checked early (SET CONSTRAINTS ... IMMEDIATE) is checked again at commit: the memo of 0008
    holds for one firing statement only."""
    platform, treasury = accounts

    with pytest.raises(IntegrityError, match="unbalanced"), transaction.atomic():
        txn = new_transaction("checked-early")
        insert_entry(txn.pk, platform.pk, "5")
        insert_entry(txn.pk, treasury.pk, "-5")
        with connection.cursor() as cursor:
            cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")  # balanced so far: passes
            cursor.execute("SET CONSTRAINTS ALL DEFERRED")
        insert_entry(txn.pk, platform.pk, "7")

    assert not LedgerTransaction.objects.exists()


def test_a_transaction_of_many_lines_commits_once_balanced(accounts):
    platform, treasury = accounts

    with transaction.atomic():
        txn = new_transaction("many-lines")
        LedgerEntry.objects.bulk_create(
            [LedgerEntry(transaction=txn, account=platform, amount=Decimal("500"))]
            + [LedgerEntry(transaction=txn, account=treasury, amount=Decimal("-1")) for _ in range(500)]
        )

    assert LedgerEntry.objects.filter(transaction=txn).count() == 501
