"""Billing of instances (API.md §14): by period at the GPU's discounts, and pay as you go from a rolling hold."""

import os
import subprocess
import sys
import threading
import time
from datetime import timedelta
from decimal import Decimal

import pytest
import time_machine
from django.db import connections
from django.db.models import Sum
from django.utils import timezone

from clients import ledger
from clients.choices import HoldStatus, LedgerAccountKind, LedgerTransactionKind
from clients.models import Client, Hold, LedgerEntry, LedgerTransaction
from gpus.models import Gpu
from llm_models.models import Node, NodeCommand
from rentals import payg, services
from rentals.billing import payg_cost
from rentals.choices import RentalStatus
from rentals.models import Rental
from rentals.tasks import rentals_payg_charge as rentals_payg_charge_task
from tests.conftest import bearer
from tests.factories import make_client
from tests.rentals.conftest import PRICE, RENTALS_URL, fund, make_rentable_node

MINUTE = Decimal("0.041667")  # 2.50 / 60, rounded half up


def account_balance(kind: str, client: Client | None = None) -> Decimal:
    filters = {"account__kind": kind} if client is None else {"account__client": client}
    return LedgerEntry.objects.filter(**filters).aggregate(s=Sum("amount"))["s"] or Decimal(0)


def minute_charges(rental: Rental) -> list[Decimal]:
    keys = LedgerTransaction.objects.filter(key__startswith=f"usage:rental:{rental.pk}:minute:").values_list(
        "key", flat=True
    )
    return sorted(keys, key=lambda k: int(k.rsplit(":", 1)[1]))  # type: ignore[return-value]


def split_of(charges: list[Decimal]) -> dict[str, Decimal]:
    parts = [ledger.split_revenue(c) for c in charges]
    return {role: sum((p[role] for p in parts), Decimal(0)) for role in ("operator", "platform", "treasury")}


# --- By period ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("billing", "periods", "price", "discount", "hourly", "total"),
    [
        ("daily", 2, "2.500000", "0.100", "2.250000", "108.000000"),  # 48 h at 2.25
        ("weekly", 1, "2.500000", "0.200", "2.000000", "336.000000"),  # 168 h at 2.00
        ("monthly", 1, "2.500000", "0.333", "1.667500", "1200.600000"),  # 720 h at 1.6675
        ("daily", 1, "2.333333", "0.150", "1.983333", "47.599992"),  # 1.98333305 rounded half up, x 24
        ("monthly", 12, "0.010000", "0.500", "0.005000", "43.200000"),  # 8640 h: the longest term
    ],
)
def test_a_period_rental_is_charged_its_hours_at_the_discounted_price_up_front(
    api_client, operator, renter, billing, periods, price, discount, hourly, total
):
    node, _ = make_rentable_node(operator, price_per_hour=Decimal(price))
    Gpu.objects.filter(pk=node.gpu_id).update(**{f"discount_{billing}": Decimal(discount)})
    fund(renter[0], "5000")

    r = api_client.post(
        RENTALS_URL, {"node_id": node.pk, "billing": billing, "periods": periods}, format="json", **bearer(renter[1])
    )

    assert r.status_code == 201, r.json()
    body = r.json()
    hours = periods * {"daily": 24, "weekly": 168, "monthly": 720}[billing]
    assert (body["billing"], body["periods"], body["hours"]) == (billing, periods, hours)
    assert (body["discount"], body["price_per_hour"], body["total"]) == (discount, hourly, total)
    rental = Rental.objects.get(pk=body["id"])
    assert rental.ends_at - rental.starts_at == timedelta(hours=hours)
    assert Hold.objects.get(key=f"rental:{rental.pk}").amount == Decimal(total)
    renter[0].refresh_from_db()
    assert renter[0].balance == Decimal("6000") - Decimal(total)


def test_a_daily_rental_completes_settled_in_full_70_25_5(operator, renter):
    node, _ = make_rentable_node(operator)
    Gpu.objects.filter(pk=node.gpu_id).update(discount_daily=Decimal("0.1"))
    start = timezone.now()
    with time_machine.travel(start, tick=False):
        rental = services.rental_start(client=renter[0], node_id=node.pk, billing="daily", periods=1)

    assert services.rentals_complete_ended(now=start + timedelta(hours=24)) == 1

    rental.refresh_from_db()
    assert (rental.status, rental.charged, rental.refunded) == (RentalStatus.COMPLETED, Decimal("54"), 0)
    assert account_balance(LedgerAccountKind.CLIENT, operator) == Decimal("37.8")
    assert account_balance(LedgerAccountKind.PLATFORM) == Decimal("13.5")
    assert account_balance(LedgerAccountKind.TREASURY) == Decimal("2.7")
    assert ledger.reconcile() == []


# --- Pay as you go --------------------------------------------------------------------------------------------


def start_payg(node, client, at):  # type: ignore[no-untyped-def]
    with time_machine.travel(at, tick=False):
        return services.rental_start(client=client, node_id=node.pk, billing="payg")


def test_payg_holds_an_hour_of_price_and_has_no_end(api_client, node, renter):
    r = api_client.post(RENTALS_URL, {"node_id": node.pk, "billing": "payg"}, format="json", **bearer(renter[1]))

    assert r.status_code == 201, r.json()
    body = r.json()
    assert (body["billing"], body["hours"], body["ends_at"], body["time_remaining"]) == ("payg", None, None, None)
    assert (body["total"], body["status"]) == ("0.000000", "active")
    assert Hold.objects.get(key=f"rental:{body['id']}").amount == PRICE
    renter[0].refresh_from_db()
    assert renter[0].balance == Decimal("1000") - PRICE
    again = api_client.post(RENTALS_URL, {"node_id": node.pk, "hours": 1}, format="json", **bearer(renter[1]))
    assert again.status_code == 409  # an open-ended rental holds its node


def test_payg_hold_hours_follow_the_setting(node, renter, settings):
    settings.RENTAL_PAYG_HOLD_HOURS = Decimal("0.25")

    rental = services.rental_start(client=renter[0], node_id=node.pk, billing="payg")

    assert Hold.objects.get(key=rental.ledger_key).amount == Decimal("0.625")


def test_each_started_minute_is_charged_from_the_hold_and_the_hold_is_renewed(node, renter):
    client, _ = renter
    start = timezone.now().replace(microsecond=0)
    rental = start_payg(node, client, start)

    payg.rentals_payg_charge(now=start + timedelta(seconds=30))  # minute 1 has started
    rental.refresh_from_db()
    hold = Hold.objects.get(key=rental.ledger_key)
    assert (rental.payg_minutes_charged, rental.total) == (1, MINUTE)
    assert hold.amount - hold.consumed == PRICE  # topped back up to a full hour
    client.refresh_from_db()
    assert client.balance == Decimal("1000") - PRICE - MINUTE

    payg.rentals_payg_charge(now=start + timedelta(seconds=50))  # still minute 1: nothing more
    payg.rentals_payg_charge(now=start + timedelta(minutes=10))  # minutes 2..10
    rental.refresh_from_db()
    assert (rental.payg_minutes_charged, rental.total) == (10, payg_cost(PRICE, 10)) == (10, Decimal("0.416667"))
    client.refresh_from_db()
    assert client.balance == Decimal("1000") - PRICE - Decimal("0.416667")
    charges = [
        -LedgerEntry.objects.get(transaction__key=k, account__kind=LedgerAccountKind.ESCROW).amount
        for k in minute_charges(rental)
    ]
    assert len(charges) == 10 and sum(charges) == Decimal("0.416667")
    shares = split_of(charges)
    assert account_balance(LedgerAccountKind.CLIENT, node.owner) == shares["operator"]
    assert account_balance(LedgerAccountKind.PLATFORM) == shares["platform"]
    assert account_balance(LedgerAccountKind.TREASURY) == shares["treasury"]
    assert account_balance(LedgerAccountKind.ESCROW) == PRICE
    assert ledger.reconcile() == []


def test_payg_minutes_read_as_a_release_and_a_rental_line_each(api_client, node, renter):
    """GET client/ledger/?ref=rental:<id>: the hold, per minute a release and minus exactly its price (kind rental),
    the hold's top-up, and the release of what is left at the end."""
    client, raw = renter
    start = timezone.now().replace(microsecond=0)
    rental = start_payg(node, client, start)
    payg.rentals_payg_charge(now=start + timedelta(minutes=1, seconds=30))  # minutes 1 and 2
    payg.rentals_payg_charge(now=start + timedelta(minutes=1, seconds=40))  # a second beat: nothing more
    with time_machine.travel(start + timedelta(minutes=1, seconds=50), tick=False):
        assert api_client.delete(f"{RENTALS_URL}{rental.pk}/", **bearer(raw)).status_code == 200

    r = api_client.get(f"/api/v1/client/ledger/?ref=rental:{rental.pk}&ordering=id", **bearer(raw))

    assert r.status_code == 200
    got = [(e["kind"], Decimal(e["amount"])) for e in r.json()["results"]]
    second = payg_cost(PRICE, 2) - MINUTE
    assert got == [
        ("hold", -PRICE),
        ("release", MINUTE),
        ("rental", -MINUTE),
        ("release", second),
        ("rental", -second),
        ("hold", -(MINUTE + second)),  # the hold renewed to a full hour
        ("release", PRICE),
    ]
    mine = LedgerEntry.objects.filter(account__client=client, ref=f"rental:{rental.pk}")
    assert mine.aggregate(s=Sum("amount"))["s"] == -payg_cost(PRICE, 2)
    assert ledger.held_of(client_id=client.pk) == 0
    assert ledger.reconcile() == []


def test_cancelling_payg_charges_the_started_minutes_and_releases_the_hold(api_client, node, renter):
    client, raw = renter
    start = timezone.now().replace(microsecond=0)
    rental = start_payg(node, client, start)
    payg.rentals_payg_charge(now=start + timedelta(minutes=3))

    with time_machine.travel(start + timedelta(minutes=10, seconds=30), tick=False):
        r = api_client.delete(f"{RENTALS_URL}{rental.pk}/", **bearer(raw))

    assert r.status_code == 200
    body = r.json()
    # Minutes 4..11 came out of the renewed hold (0.333333); the rest of it is refunded.
    assert (body["status"], body["charged"], body["refunded"]) == ("cancelled", "0.458333", "2.166667")
    client.refresh_from_db()
    assert client.balance == Decimal("1000") - payg_cost(PRICE, 11)
    assert Hold.objects.get(key=rental.ledger_key).status == HoldStatus.RELEASED
    assert account_balance(LedgerAccountKind.ESCROW) == 0
    assert NodeCommand.objects.filter(rental=rental, action="end").count() == 1
    assert ledger.reconcile() == []


def test_payg_ends_for_insufficient_funds_when_the_hold_cannot_be_renewed(node):
    """The beat task itself (as beat calls it: no arguments) under a moved clock, a minute at a time."""
    client, _ = make_client()
    fund(client, "3")  # 2.50 held at start, 0.50 left: twelve minutes of renewals
    start = timezone.now().replace(microsecond=0)
    rental = start_payg(node, client, start)
    first_start = NodeCommand.objects.get(rental=rental, action="start")

    for minute in range(1, 13):
        with time_machine.travel(start + timedelta(minutes=minute - 1, seconds=1), tick=False):
            assert rentals_payg_charge_task() == 1
        assert Rental.objects.get(pk=rental.pk).status == RentalStatus.ACTIVE, minute
    client.refresh_from_db()
    assert client.balance == 0  # twelve minutes cost exactly 0.50, all taken to renew the hold

    with time_machine.travel(start + timedelta(minutes=12, seconds=1), tick=False):
        rentals_payg_charge_task()  # minute 13: no renewal possible

    rental.refresh_from_db()
    assert rental.status == RentalStatus.ENDED_INSUFFICIENT_FUNDS
    assert rental.ended_at == start + timedelta(minutes=12, seconds=1)
    assert (rental.payg_minutes_charged, rental.charged) == (13, payg_cost(PRICE, 13)) == (13, Decimal("0.541667"))
    assert rental.refunded == PRICE - MINUTE  # the hold less minute 13 comes back
    client.refresh_from_db()
    assert client.balance == Decimal("3") - Decimal("0.541667")
    assert Hold.objects.get(key=rental.ledger_key).status == HoldStatus.RELEASED
    # The start the node never reported on is withdrawn; the node is told to stop, then to end (API.md §9).
    commands = list(NodeCommand.objects.filter(rental=rental).order_by("id").values_list("action", "status"))
    assert commands == [("start", "cancelled"), ("stop", "pending"), ("end", "pending")]
    first_start.refresh_from_db()
    assert "Withdrawn: rental" in first_start.result
    with time_machine.travel(start + timedelta(minutes=20), tick=False):
        assert rentals_payg_charge_task() == 0  # ended: nothing more
    assert ledger.reconcile() == []


def test_payg_out_of_money_on_a_node_that_cannot_stop_gets_end_alone(node):
    """A node whose agent answered `unsupported` for stop is not sent one it cannot run: `end` alone."""
    Node.objects.filter(pk=node.pk).update(unsupported_actions=["stop"])
    client, _ = make_client()
    fund(client, "2.50")  # the hold at start and nothing more: minute 1 cannot renew it
    start = timezone.now().replace(microsecond=0)
    rental = start_payg(node, client, start)

    with time_machine.travel(start + timedelta(seconds=1), tick=False):
        rentals_payg_charge_task()

    rental.refresh_from_db()
    assert rental.status == RentalStatus.ENDED_INSUFFICIENT_FUNDS
    actions = list(NodeCommand.objects.filter(rental=rental).order_by("id").values_list("action", "status"))
    assert actions == [("start", "cancelled"), ("end", "pending")]


def test_a_cancelled_payg_rental_gets_end_without_stop(api_client, node, renter):
    """Only running out of money sends `stop` first; a renter's cancel ends as a fixed-term rental's does."""
    rental = start_payg(node, renter[0], timezone.now())

    assert api_client.delete(f"{RENTALS_URL}{rental.pk}/", **bearer(renter[1])).status_code == 200

    actions = list(NodeCommand.objects.filter(rental=rental).order_by("id").values_list("action", "status"))
    assert actions == [("start", "cancelled"), ("end", "pending")]


def test_a_payg_rental_of_a_node_that_leaves_is_charged_its_minutes_and_released(node, renter):
    from llm_models.services import node_deregister

    client, _ = renter
    start = timezone.now().replace(microsecond=0)
    rental = start_payg(node, client, start)

    node_deregister(node=node, now=start + timedelta(minutes=4, seconds=10))

    rental.refresh_from_db()
    assert (rental.status, rental.charged) == (RentalStatus.TERMINATED, payg_cost(PRICE, 5))
    client.refresh_from_db()
    assert client.balance == Decimal("1000") - payg_cost(PRICE, 5)
    assert ledger.reconcile() == []


@pytest.mark.django_db(transaction=True)
def test_two_beat_runs_racing_on_one_payg_rental_charge_each_minute_once():
    operator, _ = make_client(role="gpu_provider", approved=True)
    client, _ = make_client()
    fund(client)
    node, _ = make_rentable_node(operator)
    start = timezone.now().replace(microsecond=0)
    rental = start_payg(node, client, start)
    later = start + timedelta(minutes=5, seconds=1)  # six started minutes
    barrier = threading.Barrier(2)
    errors: list[BaseException] = []

    def run() -> None:
        try:
            barrier.wait()
            payg.rentals_payg_charge(now=later)
        except BaseException as exc:
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)

    assert errors == []
    rental.refresh_from_db()
    assert (rental.payg_minutes_charged, rental.total) == (6, payg_cost(PRICE, 6))
    assert len(minute_charges(rental)) == 6
    assert LedgerTransaction.objects.filter(kind=LedgerTransactionKind.USAGE).count() == 6
    client.refresh_from_db()
    assert client.balance == Decimal("1000") - PRICE - payg_cost(PRICE, 6)
    assert ledger.reconcile() == []


def test_payg_for_real_time_with_a_hold_of_seconds_runs_out_at_the_next_minute(node, settings):
    """No moved clock: the beat task itself, called as the beat would, while real time crosses a minute."""
    settings.RENTAL_PAYG_HOLD_HOURS = Decimal("0.002")  # 7.2 seconds of price: 0.005
    client, _ = make_client()
    fund(client, "0.05")
    rental = services.rental_start(client=client, node_id=node.pk, billing="payg")
    # Started 56 s ago, so real time reaches its second minute within the test (about 4 s from now).
    Rental.objects.filter(pk=rental.pk).update(starts_at=timezone.now() - timedelta(seconds=56))

    rentals_payg_charge_task()  # minute 1: the hold is short of it, topped up by the shortfall, then renewed
    rental.refresh_from_db()
    assert (rental.status, rental.payg_minutes_charged, rental.total) == ("active", 1, MINUTE)
    client.refresh_from_db()
    assert client.balance == Decimal("0.05") - MINUTE - Decimal("0.005")  # 0.003333: less than another minute

    deadline = time.monotonic() + 20
    while Rental.objects.get(pk=rental.pk).status == RentalStatus.ACTIVE and time.monotonic() < deadline:
        time.sleep(0.5)
        rentals_payg_charge_task()

    rental.refresh_from_db()
    assert rental.status == RentalStatus.ENDED_INSUFFICIENT_FUNDS
    assert rental.payg_minutes_charged == 2
    assert rental.charged == MINUTE + Decimal("0.005")  # minute 2 took what the hold had
    client.refresh_from_db()
    assert client.balance == Decimal("0.05") - rental.charged
    assert NodeCommand.objects.filter(rental=rental, action="end").exists()
    assert ledger.reconcile() == []


@pytest.mark.parametrize("value", ["0.03", "-1", "an hour"])
def test_a_payg_hold_under_two_minutes_refuses_to_start_the_service(value):
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings.test", "RENTAL_PAYG_HOLD_HOURS": value}
    done = subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"], env=env, capture_output=True, text=True, check=False
    )

    assert done.returncode != 0
    assert "RENTAL_PAYG_HOLD_HOURS must be a number of hours of at least 2 minutes" in done.stderr
