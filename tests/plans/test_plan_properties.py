"""A state machine (hypothesis) over plans and key budgets through the real Django /v1 door and a stub node:
whatever the order of top-ups, subscriptions, chats, cancellations and renewals, the books stay balanced (every
transaction sums to zero, cached balances equal their entries), the operator is paid for every covered request,
the client pays nothing for one, and a key's spend is its uncovered requests' costs, past its budget by at most
one request."""

from decimal import Decimal

import pytest
from django.db import transaction
from django.db.models import Max, Sum
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule
from rest_framework.test import APIClient

from clients import ledger
from clients.choices import LedgerTransactionKind
from clients.models import Hold, LedgerEntry, LedgerTransaction
from clients.services import api_key_create
from inference.models import InferenceRequest
from plans.choices import SubscriptionStatus
from plans.models import Plan, Subscription
from plans.services import subscription_renew_due
from tests.clients.ledger_helpers import assert_books_balanced
from tests.conftest import bearer
from tests.factories import make_client
from tests.inference.conftest import MODEL

BUDGET = Decimal("0.02")
CHAT = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 8}
_world: dict = {}  # the stub node's operator, made once per test (outside the examples' savepoints)


class PlanMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self._atomic = transaction.atomic()
        self._atomic.__enter__()
        self.api = APIClient()
        self.client, _ = make_client()
        self.key, self.raw = api_key_create(client=self.client, name="capped", budget=BUDGET)
        self.plans = [
            Plan.objects.create(name="Block", price_per_month=Decimal("1"), daily_requests=2, overage="block"),
            Plan.objects.create(name="Bill", price_per_month=Decimal("0.5"), daily_requests=1, overage="bill"),
        ]

    def teardown(self) -> None:
        transaction.set_rollback(True)
        self._atomic.__exit__(None, None, None)

    @initialize(which=st.integers(0, 1))
    def start_on_a_plan(self, which: int) -> None:
        """Every run starts with money, a plan and one request on it (later steps cancel, renew or lapse it): the
        rule-picking's swarm testing may leave `chat` out of a whole run, so a run of ten could otherwise never ask."""
        self.top_up("2.5")
        self.subscribe(which)
        self.chat(stream=False)

    @rule(amount=st.sampled_from(["0.3", "1", "2.5"]))
    def top_up(self, amount: str) -> None:
        ledger.credit(client_id=self.client.pk, amount=Decimal(amount), key=f"prop:{LedgerEntry.objects.count()}")

    @rule(which=st.integers(0, 1))
    def subscribe(self, which: int) -> None:
        r = self.api.post(f"/api/v1/plans/{self.plans[which].pk}/subscribe/", **bearer(self.raw))
        assert r.status_code in (201, 402, 409), r.content

    @rule(stream=st.booleans())
    def chat(self, stream: bool) -> None:
        r = self.api.post("/v1/chat/completions", {**CHAT, "stream": stream}, format="json", **bearer(self.raw))
        assert r.status_code in (200, 402, 429), r.content
        _world["seen"].add(r.status_code)
        if InferenceRequest.objects.filter(client=self.client, plan_covered=True).exists():
            _world["seen"].add("covered")
        if stream and r.status_code == 200:
            from tests.inference.conftest import streamed

            streamed(r)

    @rule()
    def cancel(self) -> None:
        assert self.api.delete("/api/v1/client/subscription/", **bearer(self.raw)).status_code in (200, 404)

    @rule()
    def renewal_comes(self) -> None:
        sub = Subscription.objects.filter(client=self.client, status=SubscriptionStatus.ACTIVE).first()
        if sub is not None:
            subscription_renew_due(now=sub.renews_at)

    @invariant()
    def books_balance(self) -> None:
        assert_books_balanced()

    @invariant()
    def covered_requests_cost_the_client_nothing_and_pay_the_operator(self) -> None:
        for req in InferenceRequest.objects.filter(client=self.client, plan_covered=True, cost__gt=0):
            # No hold, no charge: the client has no line of the request; the platform paid the operator and treasury.
            assert not LedgerEntry.objects.filter(account__client=self.client, ref=f"inference:{req.pk}").exists()
            assert not Hold.objects.filter(key=req.ledger_hold_key).exists()
            paid = LedgerTransaction.objects.get(key=f"{LedgerTransactionKind.PLAN_USAGE}:{req.ledger_hold_key}")
            shares = ledger.split_revenue(req.cost)
            lines = {e.account.kind: e.amount for e in paid.entries.select_related("account")}
            expected = {
                "platform": -(shares["operator"] + shares["treasury"]),
                "client": shares["operator"],  # the operator's account
                "treasury": shares["treasury"],
            }
            assert lines == {kind: amount for kind, amount in expected.items() if amount}
            assert paid.entries.get(account__client=_world["operator"]).amount == shares["operator"]

    @invariant()
    def the_key_spends_its_uncovered_costs_past_its_budget_by_one_request_at_most(self) -> None:
        uncovered = InferenceRequest.objects.filter(api_key=self.key, plan_covered=False)
        totals = uncovered.aggregate(s=Sum("cost"), m=Max("cost"))
        self.key.refresh_from_db()
        assert self.key.spent == (totals["s"] or 0)
        assert self.key.spent < BUDGET + (totals["m"] or 0) or self.key.spent == 0


PlanMachine.TestCase.settings = settings(
    max_examples=10,
    stateful_step_count=15,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


@pytest.mark.django_db
def test_plans_and_budgets_keep_the_books(node_on, provider):
    _, stub = node_on(input_price="1000.00", output_price="1000.00")
    stub.behaviour.prompt_tokens = 3
    _world.update(operator=provider[0], seen=set())
    PlanMachine.TestCase().runTest()
    assert {200, "covered"} <= _world["seen"]  # the machine got past the doors, some requests on a plan
