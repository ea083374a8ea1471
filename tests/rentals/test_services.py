"""Rental services without HTTP: money to the cent, no double booking under concurrency, expiry settles once."""

import threading
from datetime import timedelta
from decimal import Decimal

import pytest
import time_machine
from django.db import connection, connections
from django.db.models import Sum
from django.utils import timezone

from clients import ledger
from clients.choices import HoldStatus, LedgerAccountKind
from clients.models import Client, Hold, LedgerEntry
from clients.services import client_revoke_provider
from core.errors import DomainError
from llm_models.choices import NodeCommandStatus
from llm_models.models import Node, NodeCommand
from llm_models.services import node_deregister
from rentals import services
from rentals.choices import RentalStatus
from rentals.commands import rental_command
from rentals.errors import NodeAlreadyRented
from rentals.models import Rental
from tests.factories import make_client
from tests.rentals.conftest import PRICE, fund, make_rentable_node


def account_balance(kind: str, client: Client | None = None) -> Decimal:
    filters = {"account__kind": kind} if client is None else {"account__client": client}
    return LedgerEntry.objects.filter(**filters).aggregate(s=Sum("amount"))["s"] or Decimal(0)


def test_renting_holds_the_total_in_escrow(node, renter):
    client, _ = renter

    rental = services.rental_start(client=client, node_id=node.pk, hours=4)

    assert rental.total == PRICE * 4
    assert rental.ends_at - rental.starts_at == timedelta(hours=4)
    assert Hold.objects.get(key=f"rental:{rental.pk}").amount == Decimal("10")
    client.refresh_from_db()
    assert client.balance == Decimal("990")
    assert account_balance(LedgerAccountKind.ESCROW) == Decimal("10")


def test_the_exclusion_constraint_refuses_an_overlapping_active_rental_even_without_the_lock(node, renter):
    client, _ = renter
    rental = services.rental_start(client=client, node_id=node.pk, hours=2)

    with pytest.raises(Exception) as raised:
        Rental.objects.create(
            client=client, node=node, hours=1, price_per_hour=PRICE, total=PRICE,
            starts_at=rental.starts_at + timedelta(minutes=30), ends_at=rental.starts_at + timedelta(minutes=90),
        )  # fmt: skip

    assert "rental_no_double_booking" in str(raised.value)


def test_a_cancelled_rental_frees_its_node_for_the_next_renter(node, renter):
    client, _ = renter
    services.rental_cancel(rental=services.rental_start(client=client, node_id=node.pk, hours=2))

    again = services.rental_start(client=client, node_id=node.pk, hours=1)

    assert again.status == RentalStatus.ACTIVE


@pytest.mark.django_db(transaction=True)
def test_fifty_concurrent_rentals_of_one_node_make_exactly_one_booking():
    operator, _ = make_client(role="gpu_provider", approved=True)
    node, _ = make_rentable_node(operator)
    renters = [make_client()[0] for _ in range(50)]
    for renter in renters:
        fund(renter, "100")
    barrier = threading.Barrier(50)
    outcomes: list[str] = []
    lock = threading.Lock()

    def rent(renter: Client) -> None:
        try:
            barrier.wait()
            services.rental_start(client=renter, node_id=node.pk, hours=2)
            outcome = "ok"
        except NodeAlreadyRented:
            outcome = "409"
        except DomainError as err:
            outcome = err.code
        finally:
            connections.close_all()
        with lock:
            outcomes.append(outcome)

    threads = [threading.Thread(target=rent, args=(renter,)) for renter in renters]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert sorted(outcomes) == ["409"] * 49 + ["ok"]
    assert Rental.objects.filter(node=node).count() == 1
    assert Hold.objects.count() == 1
    assert LedgerEntry.objects.aggregate(s=Sum("amount"))["s"] == 0
    assert ledger.reconcile() == []


def test_cancel_after_90_of_240_minutes_refunds_150_240ths_and_splits_the_rest(node, renter):
    client, _ = renter
    start = timezone.now()
    with time_machine.travel(start, tick=False):
        rental = services.rental_start(client=client, node_id=node.pk, hours=4)
    operator = node.owner

    with time_machine.travel(start + timedelta(minutes=90), tick=False):
        services.rental_cancel(rental=rental)

    rental.refresh_from_db()
    total = PRICE * 4  # 10.000000
    assert rental.status == RentalStatus.CANCELLED
    assert rental.refunded == total * 150 / 240 == Decimal("6.25")
    assert rental.charged == Decimal("3.75")
    client.refresh_from_db()
    assert client.balance == Decimal("1000") - Decimal("3.75")
    assert account_balance(LedgerAccountKind.CLIENT, operator) == Decimal("2.625")  # 70%
    assert account_balance(LedgerAccountKind.PLATFORM) == Decimal("0.9375")  # 25%
    assert account_balance(LedgerAccountKind.TREASURY) == Decimal("0.1875")  # 5%
    assert account_balance(LedgerAccountKind.ESCROW) == 0
    assert LedgerEntry.objects.aggregate(s=Sum("amount"))["s"] == 0
    assert Hold.objects.get().status == HoldStatus.SETTLED
    assert NodeCommand.objects.filter(rental=rental, action="end").count() == 1


def test_a_started_minute_counts_in_full(node, renter):
    client, _ = renter
    start = timezone.now()
    with time_machine.travel(start, tick=False):
        rental = services.rental_start(client=client, node_id=node.pk, hours=1)
    with time_machine.travel(start + timedelta(minutes=10, seconds=1), tick=False):
        services.rental_cancel(rental=rental)

    rental.refresh_from_db()
    assert rental.charged == (PRICE * 11 / 60).quantize(Decimal("0.000001"))
    assert rental.charged + rental.refunded == rental.total


def test_cancelling_twice_is_a_conflict_and_moves_no_money_again(node, renter):
    client, _ = renter
    rental = services.rental_start(client=client, node_id=node.pk, hours=1)
    services.rental_cancel(rental=rental)
    balance = Client.objects.get(pk=client.pk).balance

    with pytest.raises(DomainError) as raised:
        services.rental_cancel(rental=rental)

    assert raised.value.code == "rental_not_active"
    assert Client.objects.get(pk=client.pk).balance == balance


def test_the_sweep_completes_ended_rentals_and_settles_them_in_full(node, renter):
    client, _ = renter
    rental = services.rental_start(client=client, node_id=node.pk, hours=2)

    with time_machine.travel(rental.ends_at + timedelta(seconds=1), tick=False):
        assert services.rentals_complete_ended() == 1
        assert services.rentals_complete_ended() == 0

    rental.refresh_from_db()
    assert (rental.status, rental.charged, rental.refunded) == (RentalStatus.COMPLETED, Decimal("5"), Decimal("0"))
    assert account_balance(LedgerAccountKind.CLIENT, node.owner) == Decimal("3.5")
    assert NodeCommand.objects.filter(rental=rental, action="end").count() == 1


def test_the_sweep_leaves_running_rentals_alone(node, renter):
    client, _ = renter
    services.rental_start(client=client, node_id=node.pk, hours=2)

    assert services.rentals_complete_ended() == 0


@pytest.mark.django_db(transaction=True)
def test_two_overlapping_sweeps_settle_each_rental_once():
    operator, _ = make_client(role="gpu_provider", approved=True)
    rentals = []
    for _ in range(5):
        node, _ = make_rentable_node(operator)
        renter, _ = make_client()
        fund(renter, "100")
        rentals.append(services.rental_start(client=renter, node_id=node.pk, hours=1))
    later = timezone.now() + timedelta(hours=1, minutes=1)
    barrier = threading.Barrier(2)
    counts: list[int] = []

    def sweep() -> None:
        try:
            barrier.wait()
            counts.append(services.rentals_complete_ended(now=later))
        finally:
            connection.close()

    threads = [threading.Thread(target=sweep) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert sum(counts) == 5
    assert Rental.objects.filter(status=RentalStatus.COMPLETED).count() == 5
    assert account_balance(LedgerAccountKind.CLIENT, operator) == Decimal("1.75") * 5  # 70% of 2.50, once each
    assert NodeCommand.objects.filter(action="end").count() == 5
    assert LedgerEntry.objects.aggregate(s=Sum("amount"))["s"] == 0
    assert ledger.reconcile() == []


def test_a_deregistered_node_ends_its_rental_with_a_refund_of_unused_time(node, renter):
    client, _ = renter
    start = timezone.now()
    with time_machine.travel(start, tick=False):
        rental = services.rental_start(client=client, node_id=node.pk, hours=4)
        rental_command(rental=rental, action="start")

    with time_machine.travel(start + timedelta(minutes=60), tick=False):
        node_deregister(node=Node.objects.get(pk=node.pk))

    rental.refresh_from_db()
    assert (rental.status, rental.charged, rental.refunded) == (RentalStatus.TERMINATED, Decimal("2.5"), Decimal("7.5"))
    assert not NodeCommand.objects.filter(node=node, status__in=["pending", "running"]).exists()
    assert ledger.reconcile() == []


def test_revoking_the_provider_ends_its_nodes_rentals_with_a_refund(node, renter):
    client, _ = renter
    rental = services.rental_start(client=client, node_id=node.pk, hours=4)

    client_revoke_provider(client=node.owner)

    rental.refresh_from_db()
    assert rental.status == RentalStatus.TERMINATED
    assert rental.refunded > Decimal("9.9")
    assert ledger.reconcile() == []


def test_unsupported_actions_are_refused_for_that_node_only(node, renter, operator):
    client, _ = renter
    rental = services.rental_start(client=client, node_id=node.pk, hours=1)
    Node.objects.filter(pk=node.pk).update(unsupported_actions=["reset"])
    other_node, _ = make_rentable_node(operator)
    other = services.rental_start(client=client, node_id=other_node.pk, hours=1)

    with pytest.raises(DomainError) as raised:
        rental_command(rental=rental, action="reset")

    assert (raised.value.status, raised.value.code) == (501, "action_not_supported")
    assert rental_command(rental=other, action="reset").status == NodeCommandStatus.PENDING
