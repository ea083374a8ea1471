"""Races on real PostgreSQL connections: one thread per request, each with its own connection, all committing."""

import threading
from collections import Counter
from collections.abc import Callable
from decimal import Decimal

import pytest
from django.db import connection

from clients import ledger
from clients.choices import HoldStatus, LedgerTransactionKind
from clients.models import Client, Hold, LedgerTransaction
from tests.clients.ledger_helpers import assert_books_balanced
from tests.factories import make_client

pytestmark = pytest.mark.django_db(transaction=True)


def race(n: int, work: Callable[[int], object]) -> list[object]:
    """Run work(0..n-1) in n threads released together; returns each result or the exception it raised."""
    barrier = threading.Barrier(n)
    results: list[object] = [None] * n

    def run(i: int) -> None:
        try:
            barrier.wait()
            results[i] = work(i)
        except Exception as exc:
            results[i] = exc
        finally:
            connection.close()  # this thread's own connection

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads)
    return results


def outcome(result: object) -> str:
    return type(result).__name__


def test_forty_concurrent_holds_on_a_balance_for_ten_place_exactly_ten():
    client, _ = make_client()
    ledger.credit(client_id=client.pk, amount=Decimal("10") * Decimal("2.5"), key="fund")
    lowest: list[Decimal] = []
    done = threading.Event()

    def watch() -> None:  # samples the balance from yet another connection while the holds race
        try:
            while not done.is_set():
                lowest.append(Client.objects.values_list("balance", flat=True).get(pk=client.pk))
        finally:
            connection.close()

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        results = race(40, lambda i: ledger.hold_place(client_id=client.pk, amount=Decimal("2.5"), key=f"h{i}"))
    finally:
        done.set()
        watcher.join(timeout=30)

    assert Counter(outcome(r) for r in results) == {"Hold": 10, "InsufficientFunds": 30}
    assert ledger.balance_of(client_id=client.pk) == 0
    assert min(lowest) >= 0
    assert Hold.objects.filter(client=client, status=HoldStatus.HELD).count() == 10
    assert_books_balanced()
    assert ledger.reconcile() == []


def test_concurrent_retries_of_one_hold_place_it_once():
    client, _ = make_client()
    ledger.credit(client_id=client.pk, amount=Decimal("10"), key="fund")

    results = race(8, lambda i: ledger.hold_place(client_id=client.pk, amount=Decimal("3"), key="j"))

    assert {outcome(r) for r in results} == {"Hold"}
    assert len({r.pk for r in results}) == 1  # type: ignore[attr-defined]
    assert ledger.balance_of(client_id=client.pk) == Decimal("7")
    assert_books_balanced()


def test_a_hold_settled_twice_at_once_is_settled_once():
    client, _ = make_client()
    operator, _ = make_client()
    ledger.credit(client_id=client.pk, amount=Decimal("10"), key="fund")
    ledger.hold_place(client_id=client.pk, amount=Decimal("10"), key="job")

    results = race(
        2, lambda i: ledger.hold_settle(key="job", charge=Decimal("4"), kind="inference", operator_id=operator.pk)
    )

    # The second waits for the first, then finds its settlement: a retry, which returns it (issue 12's contract).
    assert [outcome(r) for r in results] == ["LedgerTransaction"] * 2
    assert results[0].pk == results[1].pk  # type: ignore[attr-defined]
    assert LedgerTransaction.objects.filter(kind=LedgerTransactionKind.SETTLE).count() == 1
    assert ledger.balance_of(client_id=client.pk) == Decimal("6")
    assert ledger.balance_of(client_id=operator.pk) == Decimal("2.8")
    assert_books_balanced()


def test_a_settle_racing_a_release_of_one_hold_acts_once():
    client, _ = make_client()
    operator, _ = make_client()
    ledger.credit(client_id=client.pk, amount=Decimal("10"), key="fund")
    ledger.hold_place(client_id=client.pk, amount=Decimal("10"), key="job")

    race(
        8,
        lambda i: (
            ledger.hold_settle(key="job", charge=Decimal("4"), kind="inference", operator_id=operator.pk)
            if i % 2
            else ledger.hold_release(key="job")
        ),
    )

    closing = LedgerTransaction.objects.filter(hold__key="job").exclude(kind=LedgerTransactionKind.HOLD)
    assert closing.count() == 1
    assert Hold.objects.get(key="job").status != HoldStatus.HELD
    assert_books_balanced()
    assert ledger.reconcile() == []
