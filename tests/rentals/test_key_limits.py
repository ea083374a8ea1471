"""API.md §12 on rentals: a key's budget and rpm (its scope: tests/clients/test_api_key_limits.py)."""

from decimal import Decimal

import redis
from django.conf import settings

from clients.services import api_key_create
from rentals.models import Rental
from tests.conftest import bearer
from tests.rentals.conftest import RENTALS_URL, SSH_KEY, make_rentable_node


def _clear_counters() -> None:
    client = redis.Redis.from_url(settings.KEY_LIMITS_REDIS_URL)
    for name in client.scan_iter("gm:keylim:*"):
        client.delete(name)
    client.close()


def test_a_rental_counts_against_the_key_budget_and_the_next_is_402(api_client, node, renter, operator):
    client, _ = renter
    key, raw = api_key_create(client=client, name="ci", budget=Decimal("5"), budget_period="month")
    other_node, _ = make_rentable_node(operator)

    first = api_client.post(RENTALS_URL, {"node_id": node.pk, "hours": 3, "ssh_public_key": SSH_KEY}, format="json",
                            **bearer(raw))  # fmt: skip
    second = api_client.post(RENTALS_URL, {"node_id": other_node.pk, "hours": 1}, format="json", **bearer(raw))

    assert first.status_code == 201, first.content
    key.refresh_from_db()
    assert key.spent == Decimal("7.5")  # one already admitted may take it past by its own cost
    assert second.status_code == 402 and second.json()["errors"][0]["code"] == "key_budget_exceeded"
    client.refresh_from_db()
    assert Rental.objects.count() == 1 and client.balance == Decimal("992.5")


def test_a_key_rpm_caps_rental_starts(api_client, node, renter):
    _clear_counters()
    _, raw = api_key_create(client=renter[0], name="ci", rpm=1)

    api_client.post(RENTALS_URL, {"node_id": node.pk, "hours": 1}, format="json", **bearer(raw))
    again = api_client.post(RENTALS_URL, {"node_id": node.pk, "hours": 1}, format="json", **bearer(raw))

    assert again.status_code == 429 and again.json()["errors"][0]["code"] == "rate_limited"
    assert int(again["Retry-After"]) >= 1


def test_pay_as_you_go_minutes_count_toward_the_key_budget_that_started_the_rental(api_client, node, renter):
    from datetime import timedelta

    import time_machine
    from django.utils import timezone

    from clients.choices import LedgerEntryKind
    from clients.models import LedgerEntry
    from rentals import payg

    client, _ = renter
    key, raw = api_key_create(client=client, name="ci", budget=Decimal("0.20"), budget_period="month")
    start = timezone.now().replace(microsecond=0)
    with time_machine.travel(start, tick=False):
        r = api_client.post(RENTALS_URL, {"node_id": node.pk, "billing": "payg"}, format="json", **bearer(raw))
    assert r.status_code == 201, r.content
    rental = Rental.objects.get()
    assert rental.api_key_id == key.pk

    payg.rentals_payg_charge(now=start + timedelta(minutes=10, seconds=1))  # minutes 1..11

    key.refresh_from_db()
    rental.refresh_from_db()
    charged = -sum(
        e.amount
        for e in LedgerEntry.objects.filter(account__client=client, kind=LedgerEntryKind.RENTAL, ref__isnull=False)
    )
    assert rental.total == charged == key.spent > Decimal("0.20")
    with time_machine.travel(start + timedelta(minutes=11), tick=False):
        refused = api_client.post(RENTALS_URL, {"node_id": node.pk, "hours": 1}, format="json", **bearer(raw))
    assert refused.status_code == 402 and refused.json()["errors"][0]["code"] == "key_budget_exceeded"
