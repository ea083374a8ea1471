"""Property tests of the ledger (hypothesis): the revenue split, and a state machine of random postings."""

from decimal import ROUND_HALF_UP, Decimal

import pytest
from django.db import transaction
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, initialize, invariant, multiple, rule

from clients import ledger
from clients.choices import HoldStatus
from clients.models import Hold
from tests.clients.ledger_helpers import account_sum, assert_books_balanced
from tests.factories import make_client

MICRO = Decimal("0.000001")

charges = st.decimals(min_value=MICRO, max_value=Decimal(10**9), places=6)


# The suite's autouse fixtures are function-scoped; split_revenue touches nothing they set up.
@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(total=charges)
def test_split_of_any_charge_sums_exactly_to_it_with_floored_operator_and_treasury_shares(total):
    shares = ledger.split_revenue(total)

    micros = int(total / MICRO)  # the charge in whole micro-dollars, computed apart from the ledger's arithmetic
    assert set(shares) == {"operator", "platform", "treasury"}
    assert sum(shares.values()) == total
    assert all(share >= 0 for share in shares.values())
    assert all(share == share.quantize(MICRO) for share in shares.values())
    assert shares["operator"] == (micros * 70 // 100) * MICRO
    assert shares["treasury"] == (micros * 5 // 100) * MICRO
    assert shares["platform"] >= total * Decimal("0.25")  # rounding only ever adds to the platform's 25%


# --- A state machine over credit / hold_place / hold_settle / hold_release ---------------------------------------

CLIENTS = 3  # each may also be the operator paid by a settlement
KEYS = [f"k{n}" for n in range(12)]  # few keys, so that keys are reused (by the same or another call) often


def money(top: int) -> st.SearchStrategy[Decimal]:
    """Amounts up to `top`: any micro-dollar amount (hypothesis favours small ones) or whole dollars."""
    return st.one_of(st.decimals(min_value=MICRO, max_value=Decimal(top), places=6), st.integers(1, top).map(Decimal))


credits = money(100)
amounts = money(40)
# A charge is a share of the hold (none, a sliver, part, all, more than held) plus a few micro-dollars, often with a
# 7th decimal place that settlement rounds away.
ratios = st.sampled_from([Decimal(x) for x in ("0", "0.0000001", "0.3333333", "0.5", "1", "2")])
jitters = st.decimals(min_value=0, max_value=Decimal("0.00001"), places=7)
who = st.integers(0, CLIENTS - 1)


class LedgerMachine(RuleBasedStateMachine):
    """Drives the ledger with random postings, repeated keys included, and checks it against a model kept here.

    Each example runs in a savepoint rolled back at teardown, so every example starts from empty books.
    """

    placed = Bundle("placed")  # keys of holds placed, so that settles and releases mostly find one

    def __init__(self) -> None:
        super().__init__()
        self._atomic = transaction.atomic()
        self._atomic.__enter__()
        self.clients: list = []
        self.balances: list[Decimal] = []
        self.credits: dict[str, tuple[int, Decimal]] = {}
        self.holds: dict[str, dict] = {}
        self.earned = {"platform": Decimal(0), "treasury": Decimal(0)}

    def teardown(self) -> None:
        transaction.set_rollback(True)
        self._atomic.__exit__(None, None, None)

    @initialize(opening=st.lists(credits, min_size=CLIENTS, max_size=CLIENTS))
    def make_clients(self, opening: list[Decimal]) -> None:
        for n, amount in enumerate(opening):
            client, _ = make_client()
            ledger.credit(client=client, amount=amount, key=f"opening-{n}")
            self.clients.append(client)
            self.balances.append(amount)

    @rule(who=who, amount=credits, key=st.sampled_from(KEYS))
    def credit(self, who: int, amount: Decimal, key: str) -> None:
        known = self.credits.get(key)
        if known is not None and known != (who, amount):
            with pytest.raises(ledger.LedgerKeyReused):
                ledger.credit(client=self.clients[who], amount=amount, key=key)
            return
        ledger.credit(client=self.clients[who], amount=amount, key=key)
        if known is None:
            self.credits[key] = (who, amount)
            self.balances[who] += amount

    @rule(target=placed, who=who, amount=amounts, key=st.sampled_from(KEYS))
    def hold_place(self, who: int, amount: Decimal, key: str):  # type: ignore[no-untyped-def]
        known = self.holds.get(key)
        if known is not None and (known["who"], known["amount"]) != (who, amount):
            with pytest.raises(ledger.LedgerKeyReused):
                ledger.hold_place(client=self.clients[who], amount=amount, key=key)
            return multiple()
        if known is None and self.balances[who] < amount:
            with pytest.raises(ledger.InsufficientFunds):
                ledger.hold_place(client=self.clients[who], amount=amount, key=key)
            return multiple()
        hold = ledger.hold_place(client=self.clients[who], amount=amount, key=key)
        if known is not None:
            assert hold.status == known["status"]  # a retry: the same hold back, nothing moved
            return multiple()
        assert (hold.amount, hold.status) == (amount, HoldStatus.HELD)
        self.holds[key] = {"who": who, "amount": amount, "status": HoldStatus.HELD}
        self.balances[who] -= amount
        return key

    @rule(key=placed)
    def hold_place_again(self, key: str) -> None:
        known = self.holds[key]
        self.hold_place(known["who"], known["amount"], key)

    @rule(key=placed, ratio=ratios, jitter=jitters, operator=who)
    def hold_settle(self, key: str, ratio: Decimal, jitter: Decimal, operator: int) -> None:
        self._settle(key, self.holds[key]["amount"] * ratio + jitter, operator)

    @rule(key=placed)
    def hold_release(self, key: str) -> None:
        self._release(key)

    @rule(key=st.sampled_from(KEYS), jitter=jitters, operator=who)
    def settle_and_release_any_key(self, key: str, jitter: Decimal, operator: int) -> None:
        """Keys that may never have held anything: settling raises, releasing does nothing."""
        self._settle(key, jitter, operator)
        self._release(key)

    def _settle(self, key: str, charge: Decimal, operator: int) -> None:
        known = self.holds.get(key)
        if known is None:
            with pytest.raises(ledger.HoldNotFound):
                ledger.hold_settle(key=key, charge=charge, operator=self.clients[operator])
            return
        txn = ledger.hold_settle(key=key, charge=charge, operator=self.clients[operator])
        if known["status"] != HoldStatus.HELD:
            assert txn is None
            return
        assert txn is not None
        charged = min(charge.quantize(MICRO, ROUND_HALF_UP), known["amount"])
        shares = ledger.split_revenue(charged)
        self.balances[operator] += shares["operator"]
        self.balances[known["who"]] += known["amount"] - charged
        self.earned["platform"] += shares["platform"]
        self.earned["treasury"] += shares["treasury"]
        known["status"] = HoldStatus.SETTLED

    def _release(self, key: str) -> None:
        ledger.hold_release(key=key)
        known = self.holds.get(key)
        if known is not None and known["status"] == HoldStatus.HELD:
            self.balances[known["who"]] += known["amount"]
            known["status"] = HoldStatus.RELEASED

    @invariant()
    def books_balance(self) -> None:
        if self.clients:
            assert_books_balanced()
            assert ledger.reconcile() == []

    @invariant()
    def ledger_matches_the_model(self) -> None:
        for client, expected in zip(self.clients, self.balances, strict=True):
            assert ledger.balance_of(client=client) == expected
        open_holds = sum((h["amount"] for h in self.holds.values() if h["status"] == HoldStatus.HELD), Decimal(0))
        assert account_sum("escrow") == open_holds
        assert account_sum("platform") == self.earned["platform"]
        assert account_sum("treasury") == self.earned["treasury"]
        statuses = dict(Hold.objects.values_list("key", "status"))
        assert statuses == {key: known["status"] for key, known in self.holds.items()}


LedgerMachine.TestCase.settings = settings(
    max_examples=15,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


@pytest.mark.django_db
def test_ledger_state_machine():
    LedgerMachine.TestCase().runTest()
