"""Plans (API.md §12): the public list, admin create/update, subscribe → covered requests → quota → cancel →
renewal and lapse (the beat task's service with a moved clock)."""

from datetime import timedelta
from decimal import Decimal

import pytest
import time_machine
from django.utils import timezone

from clients.choices import LedgerTransactionKind
from clients.models import LedgerTransaction
from plans.choices import SubscriptionStatus
from plans.models import Plan, Subscription
from plans.services import add_month, subscription_renew_due
from tests.clients.ledger_helpers import account_sum, assert_books_balanced
from tests.conftest import bearer
from tests.inference.conftest import MODEL, balance, fund

PLANS = "/api/v1/plans/"
SUB = "/api/v1/client/subscription/"
CHAT = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 16}


def _plan(**fields) -> Plan:  # type: ignore[no-untyped-def]
    defaults = {"name": "Starter", "price_per_month": Decimal("3.00"), "daily_requests": 2, "overage": "block"}
    return Plan.objects.create(**{**defaults, **fields})


def test_anyone_lists_the_open_plans(api_client):
    plan = _plan(allowed_models=[MODEL])
    _plan(name="Retired", is_active=False)

    r = api_client.get(PLANS)

    assert r.status_code == 200
    assert r.json()["results"] == [
        {
            "id": plan.pk,
            "name": "Starter",
            "price_per_month": "3.000000",
            "daily_requests": 2,
            "overage": "block",
            "models": [MODEL],
            "is_active": True,
        }
    ]


def test_only_admins_create_and_change_plans(api_client, admin, user_client):
    body = {"name": "Pro", "price_per_month": "10", "daily_requests": 100, "overage": "bill"}

    assert api_client.post(PLANS, body, format="json").status_code == 401
    assert api_client.post(PLANS, body, format="json", **bearer(user_client[1])).status_code == 403
    made = api_client.post(PLANS, body, format="json", **bearer(admin[1]))
    bad = api_client.post(PLANS, {**body, "name": "X", "overage": "maybe"}, format="json", **bearer(admin[1]))
    changed = api_client.patch(f"{PLANS}{made.json()['id']}/", {"daily_requests": 5}, format="json", **bearer(admin[1]))

    assert made.status_code == 201 and made.json()["overage"] == "bill"
    assert bad.status_code == 400 and bad.json()["errors"][0]["attr"] == "overage"
    assert changed.status_code == 200 and Plan.objects.get(name="Pro").daily_requests == 5


def test_subscribing_charges_the_price_to_the_platform_at_once(api_client, user_client):
    client, raw = user_client
    fund(client, "5.00")
    plan = _plan()

    r = api_client.post(f"{PLANS}{plan.pk}/subscribe/", **bearer(raw))
    again = api_client.post(f"{PLANS}{plan.pk}/subscribe/", **bearer(raw))

    assert r.status_code == 201, r.content
    got = r.json()
    assert (got["status"], got["plan"]["id"]) == ("active", plan.pk)
    sub = Subscription.objects.get()
    assert sub.renews_at == add_month(sub.started_at)
    assert balance(client) == Decimal("2.00")
    assert LedgerTransaction.objects.filter(kind=LedgerTransactionKind.SUBSCRIPTION).count() == 1
    assert account_sum("platform") == Decimal("3.00")
    assert again.status_code == 409 and again.json()["errors"][0]["code"] == "already_subscribed"
    assert api_client.get(SUB, **bearer(raw)).json()["id"] == sub.pk
    assert_books_balanced()


def test_subscribing_without_the_money_is_402_and_leaves_nothing(api_client, user_client):
    plan = _plan()

    r = api_client.post(f"{PLANS}{plan.pk}/subscribe/", **bearer(user_client[1]))

    assert r.status_code == 402 and r.json()["errors"][0]["code"] == "insufficient_funds"
    assert not Subscription.objects.exists()
    assert api_client.get(SUB, **bearer(user_client[1])).status_code == 404
    assert api_client.get(SUB).status_code == 401


@pytest.mark.django_db(transaction=True)
def test_a_plan_through_covered_requests_quota_cancel_renewal_and_lapse(api_client, user_client, provider, node_on):
    client, raw = user_client
    fund(client, "10.00")
    node_on(input_price="1000.00", output_price="1000.00")
    plan = _plan()
    assert api_client.post(f"{PLANS}{plan.pk}/subscribe/", **bearer(raw)).status_code == 201
    after_price = balance(client)

    covered = [api_client.post("/v1/chat/completions", CHAT, format="json", **bearer(raw)) for _ in range(2)]
    beyond = api_client.post("/v1/chat/completions", CHAT, format="json", **bearer(raw))

    assert [r.status_code for r in covered] == [200, 200]
    assert balance(client) == after_price  # covered: the client paid nothing
    operator_earned = balance(provider[0])
    assert operator_earned > 0  # the operator still earned its 70%
    assert account_sum("treasury") > 0
    assert LedgerTransaction.objects.filter(kind=LedgerTransactionKind.PLAN_USAGE).count() == 2
    assert beyond.status_code == 429 and beyond.json()["error"]["code"] == "daily_quota_exceeded"
    assert int(beyond["Retry-After"]) >= 1
    assert_books_balanced()

    # Cancel: still active to renews_at, then it ends.
    cancelled = api_client.delete(SUB, **bearer(raw))
    assert cancelled.status_code == 200 and cancelled.json()["renew"] is False
    sub = Subscription.objects.get()
    assert subscription_renew_due(now=sub.renews_at - timedelta(seconds=1)) == {"renewed": 0, "lapsed": 0, "ended": 0}
    assert subscription_renew_due(now=sub.renews_at) == {"renewed": 0, "lapsed": 0, "ended": 1}
    sub.refresh_from_db()
    assert sub.status == SubscriptionStatus.ENDED

    # Subscribe again: renewed once with the money there, lapsed the next month without it.
    assert api_client.post(f"{PLANS}{plan.pk}/subscribe/", **bearer(raw)).status_code == 201
    sub = Subscription.objects.get(status=SubscriptionStatus.ACTIVE)
    first_renewal = sub.renews_at
    with time_machine.travel(first_renewal + timedelta(minutes=1), tick=False):
        assert subscription_renew_due() == {"renewed": 1, "lapsed": 0, "ended": 0}
        assert subscription_renew_due() == {"renewed": 0, "lapsed": 0, "ended": 0}  # run twice: once
    sub.refresh_from_db()
    assert (sub.status, sub.renews_at) == (SubscriptionStatus.ACTIVE, add_month(first_renewal))
    assert LedgerTransaction.objects.filter(kind=LedgerTransactionKind.SUBSCRIPTION).count() == 3
    assert balance(client) < Decimal("3.00")
    with time_machine.travel(sub.renews_at + timedelta(minutes=1), tick=False):
        assert subscription_renew_due() == {"renewed": 0, "lapsed": 1, "ended": 0}
    sub.refresh_from_db()
    assert sub.status == SubscriptionStatus.LAPSED
    assert_books_balanced()


@pytest.mark.django_db(transaction=True)
def test_beyond_the_quota_a_bill_plan_bills_per_token(api_client, user_client, node_on):
    client, raw = user_client
    fund(client, "5.00")
    node_on(input_price="1000.00", output_price="1000.00")
    plan = _plan(daily_requests=1, overage="bill", price_per_month=Decimal("1.00"))
    api_client.post(f"{PLANS}{plan.pk}/subscribe/", **bearer(raw))

    first = api_client.post("/v1/chat/completions", CHAT, format="json", **bearer(raw))
    after_first = balance(client)
    second = api_client.post("/v1/chat/completions", CHAT, format="json", **bearer(raw))

    assert (first.status_code, second.status_code) == (200, 200)
    assert after_first == Decimal("4.00")
    assert balance(client) < after_first
    assert_books_balanced()


@pytest.mark.django_db(transaction=True)
def test_a_seed_request_is_covered_too(api_client, user_client, node_on):
    client, raw = user_client
    fund(client, "5.00")
    node_on(input_price="1000.00", output_price="1000.00")
    plan = _plan(price_per_month=Decimal("1.00"))
    api_client.post(f"{PLANS}{plan.pk}/subscribe/", **bearer(raw))

    r = api_client.post(
        "/api/v1/inference/", {"question_text": "hi", "desired_model": MODEL}, format="json", **bearer(raw)
    )

    assert r.status_code == 201 and Decimal(r.json()["cost"]) > 0
    assert balance(client) == Decimal("4.00")
    assert_books_balanced()


def test_quota_days_are_utc_days(user_client):
    plan = _plan(daily_requests=1, allowed_models=[MODEL])
    now = timezone.now()
    Subscription.objects.create(
        client=user_client[0], plan=plan, started_at=now, renews_at=add_month(now), price_per_month=plan.price_per_month
    )
    from plans.errors import DailyQuotaExceeded
    from plans.services import plan_quota_take

    assert plan_quota_take(client_id=user_client[0].pk, model=MODEL, now=now) == "covered"
    with pytest.raises(DailyQuotaExceeded):
        plan_quota_take(client_id=user_client[0].pk, model=MODEL, now=now)
    assert plan_quota_take(client_id=user_client[0].pk, model=MODEL, now=now + timedelta(days=1)) == "covered"
    assert plan_quota_take(client_id=user_client[0].pk, model="other/model", now=now) == "billed"


@pytest.mark.django_db(transaction=True)
def test_a_covered_request_holds_and_charges_nothing_so_an_empty_balance_is_served(
    api_client, user_client, provider, node_on
):
    from clients.models import Hold, LedgerEntry
    from inference.models import InferenceRequest

    client, raw = user_client
    fund(client, "3.00")
    node_on(input_price="1000.00", output_price="1000.00")
    plan = _plan(daily_requests=1)
    assert api_client.post(f"{PLANS}{plan.pk}/subscribe/", **bearer(raw)).status_code == 201
    assert balance(client) == 0

    covered = api_client.post("/v1/chat/completions", CHAT, format="json", **bearer(raw))
    seed_beyond = api_client.post(
        "/api/v1/inference/", {"question_text": "hi", "desired_model": MODEL}, format="json", **bearer(raw)
    )

    assert covered.status_code == 200, covered.content
    assert seed_beyond.status_code == 429 and seed_beyond.json()["errors"][0]["code"] == "daily_quota_exceeded"
    req = InferenceRequest.objects.get()
    assert req.plan_covered and req.cost > 0
    assert not Hold.objects.filter(key=req.ledger_hold_key).exists()
    assert not LedgerEntry.objects.filter(account__client=client).exclude(kind__in=["credit", "subscription"]).exists()
    assert balance(client) == 0
    assert balance(provider[0]) == (req.cost * Decimal("0.7")).quantize(Decimal("0.000001"), rounding="ROUND_DOWN")
    assert account_sum("treasury") == (req.cost * Decimal("0.05")).quantize(Decimal("0.000001"), rounding="ROUND_DOWN")
    assert_books_balanced()


@pytest.mark.django_db(transaction=True)
def test_batch_items_are_covered_while_the_quota_lasts_then_billed(api_client, user_client, node_on):
    from clients.models import Hold
    from inference.models import InferenceRequest

    client, raw = user_client
    fund(client, "5.00")
    node_on(input_price="1000.00", output_price="1000.00")
    plan = _plan(daily_requests=2, overage="bill", price_per_month=Decimal("1.00"))
    api_client.post(f"{PLANS}{plan.pk}/subscribe/", **bearer(raw))
    body = {"model": MODEL, "prompts": ["a", "b", "c"], "max_tokens": 16}

    r = api_client.post("/api/v1/inference/batch/", body, format="json", **bearer(raw))

    assert r.status_code == 202, r.content
    rows = list(InferenceRequest.objects.filter(batch_id=r.json()["id"]).order_by("pk"))
    assert [row.plan_covered for row in rows] == [True, True, False]
    assert all(row.status == "completed" and row.cost > 0 for row in rows)
    assert [Hold.objects.filter(key=row.ledger_hold_key).exists() for row in rows] == [False, False, True]
    assert balance(client) == Decimal("4.00") - rows[2].cost  # only the item beyond the quota was charged
    assert LedgerTransaction.objects.filter(kind=LedgerTransactionKind.PLAN_USAGE).count() == 2
    assert_books_balanced()


@pytest.mark.django_db(transaction=True)
def test_a_batch_beyond_a_block_plans_quota_is_refused_whole_and_takes_no_quota(api_client, user_client, node_on):
    from inference.models import InferenceRequest
    from plans.models import PlanDailyUsage

    client, raw = user_client
    fund(client, "5.00")
    node_on()
    plan = _plan(daily_requests=2, overage="block", price_per_month=Decimal("1.00"))
    api_client.post(f"{PLANS}{plan.pk}/subscribe/", **bearer(raw))

    r = api_client.post(
        "/api/v1/inference/batch/", {"model": MODEL, "prompts": ["a", "b", "c"]}, format="json", **bearer(raw)
    )

    assert r.status_code == 429 and r.json()["errors"][0]["code"] == "daily_quota_exceeded"
    assert not InferenceRequest.objects.exists()
    assert not PlanDailyUsage.objects.filter(requests__gt=0).exists()
    assert balance(client) == Decimal("4.00")
