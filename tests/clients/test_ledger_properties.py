"""Property tests of the ledger (hypothesis): the revenue split, and a state machine of random postings."""

from decimal import ROUND_HALF_UP, Decimal

import pytest
from django.db import transaction
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, initialize, invariant, multiple, rule

from clients import ledger
from clients.choices import HoldStatus, LedgerEntryKind
from clients.models import Hold, LedgerEntry
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


# --- A state machine over credit and every hold operation, with kinds, refs and held --------------------------------

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
hold_kinds = st.sampled_from(["hold", "rental"])  # a reservation, or a charge paid up front


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
        self.uses = 0
        self.used: dict[str, tuple[int, Decimal]] = {}  # batch charges: ref -> (payer, charged)
        self.earned = {"platform": Decimal(0), "treasury": Decimal(0)}
        self.deposits: dict[tuple[str, str], tuple[int, Decimal]] = {}  # (kind, key) -> (who, amount)
        self.withdrawals: dict[str, tuple[int, Decimal]] = {}
        self.outside = {"stripe_clearing": Decimal(0), "x402_clearing": Decimal(0)}

    def teardown(self) -> None:
        transaction.set_rollback(True)
        self._atomic.__exit__(None, None, None)

    @initialize(opening=st.lists(credits, min_size=CLIENTS, max_size=CLIENTS))
    def make_clients(self, opening: list[Decimal]) -> None:
        for n, amount in enumerate(opening):
            client, _ = make_client()
            ledger.credit(client_id=client.pk, amount=amount, key=f"opening-{n}")
            self.clients.append(client)
            self.balances.append(amount)

    @rule(who=who, amount=credits, key=st.sampled_from(KEYS))
    def credit(self, who: int, amount: Decimal, key: str) -> None:
        known = self.credits.get(key)
        if known is not None and known != (who, amount):
            with pytest.raises(ledger.LedgerKeyReused):
                ledger.credit(client_id=self.clients[who].pk, amount=amount, key=key)
            return
        ledger.credit(client_id=self.clients[who].pk, amount=amount, key=key)
        if known is None:
            self.credits[key] = (who, amount)
            self.balances[who] += amount

    @rule(who=who, amount=credits, key=st.sampled_from(KEYS), card=st.booleans())
    def deposit(self, who: int, amount: Decimal, key: str, card: bool) -> None:
        """Money in from outside (payments/): a Stripe top-up or an x402 payment, once per key."""
        kind, source = ("topup", "stripe_clearing") if card else ("x402", "x402_clearing")
        args = {"amount": amount, "key": key, "kind": kind, "ref": f"{kind}:{key}", "source": source}
        known = self.deposits.get((kind, key))
        if known is not None and known != (who, amount):
            with pytest.raises(ledger.LedgerKeyReused):
                ledger.deposit(client_id=self.clients[who].pk, **args)
            return
        ledger.deposit(client_id=self.clients[who].pk, **args)
        if known is None:
            self.deposits[(kind, key)] = (who, amount)
            self.balances[who] += amount
            self.outside[source] -= amount

    @rule(who=who, amount=amounts, key=st.sampled_from(KEYS))
    def withdraw(self, who: int, amount: Decimal, key: str) -> None:
        """An x402 credit taken back: at most the balance, once per key (a key that took nothing is not used)."""
        args = {"amount": amount, "key": f"reversal-{key}", "kind": "x402", "ref": f"x402:{key}"}
        known = self.withdrawals.get(key)
        if known is not None and known != (who, amount):
            with pytest.raises(ledger.LedgerKeyReused):
                ledger.withdraw(client_id=self.clients[who].pk, destination="x402_clearing", **args)
            return
        txn = ledger.withdraw(client_id=self.clients[who].pk, destination="x402_clearing", **args)
        if known is not None:
            assert txn is not None  # a retry: the first posting back, nothing taken again
            return
        taken = min(amount, self.balances[who])
        assert (txn is None) == (taken == 0)
        if txn is not None:
            self.withdrawals[key] = (who, amount)
            self.balances[who] -= taken
            self.outside["x402_clearing"] += taken

    @rule(target=placed, who=who, amount=amounts, key=st.sampled_from(KEYS), kind=hold_kinds)
    def hold_place(self, who: int, amount: Decimal, key: str, kind: str = "hold"):  # type: ignore[no-untyped-def]
        known = self.holds.get(key)
        place = {"client_id": self.clients[who].pk, "amount": amount, "key": key, "kind": kind, "ref": f"obj:{key}"}
        if known is not None and (known["who"], known["placed"], known["kind"]) != (who, amount, kind):
            with pytest.raises(ledger.LedgerKeyReused):
                ledger.hold_place(**place)
            return multiple()
        if known is None and self.balances[who] < amount:
            with pytest.raises(ledger.InsufficientFunds):
                ledger.hold_place(**place)
            return multiple()
        hold = ledger.hold_place(**place)
        if known is not None:
            assert hold.status == known["status"]  # a retry: the same hold back, nothing moved
            return multiple()
        assert (hold.amount, hold.status) == (amount, HoldStatus.HELD)
        self.holds[key] = {
            "who": who,
            "placed": amount,
            "amount": amount,  # what it may be charged in all: lowered by hold_reduce
            "consumed": Decimal(0),
            "kind": kind,
            "status": HoldStatus.HELD,
            "settled": None,
            "reduced": None,
        }
        self.balances[who] -= amount
        return key

    @rule(key=placed)
    def hold_place_again(self, key: str) -> None:
        known = self.holds[key]
        self.hold_place(known["who"], known["placed"], key, known["kind"])

    @rule(key=placed, ratio=ratios, jitter=jitters, operator=who)
    def hold_settle(self, key: str, ratio: Decimal, jitter: Decimal, operator: int) -> None:
        self._settle(key, self.holds[key]["amount"] * ratio + jitter, operator)

    @rule(key=placed)
    def hold_settle_again(self, key: str) -> None:
        """A retry of a settlement with its very arguments: the same transaction back, nothing moved."""
        settled = self.holds[key]["settled"]
        if settled is not None:
            self._settle(key, settled["asked"], settled["operator"])

    @rule(key=placed, amount=amounts, operator=who)
    def hold_consume(self, key: str, amount: Decimal, operator: int) -> None:
        """A lease's batch charge (reservations only): one line per use, capped at what is still held."""
        known = self.holds[key]
        if known["kind"] != "hold":
            return
        self.uses += 1
        ref = f"use:{self.uses}"
        consume = {
            "key": key,
            "use_key": ref,
            "charges": [ledger.Charge(amount, ref)],
            "kind": "inference",
            "operator_id": self.clients[operator].pk,
        }
        if known["status"] != HoldStatus.HELD:
            with pytest.raises(ledger.HoldClosed):
                ledger.hold_consume(**consume)
            return
        charged = min(amount, known["amount"] - known["consumed"])
        txn = ledger.hold_consume(**consume)
        assert (txn is None) == (charged == 0)
        if charged:
            self._earn(operator, charged)
            known["consumed"] += charged
            self.used[ref] = (known["who"], charged)

    @rule(key=placed, ratio=ratios)
    def hold_reduce(self, key: str, ratio: Decimal) -> None:
        """Give back all but what charges still on their way will take (a lease whose requests are over)."""
        known = self.holds[key]
        to = (known["amount"] * ratio).quantize(MICRO, ROUND_HALF_UP)
        reduced = known["reduced"]
        if reduced is not None and reduced != to:
            with pytest.raises(ledger.LedgerKeyReused):
                ledger.hold_reduce(key=key, to=to)
            return
        if reduced is None and known["status"] != HoldStatus.HELD:
            with pytest.raises(ledger.HoldClosed):
                ledger.hold_reduce(key=key, to=to)
            return
        txn = ledger.hold_reduce(key=key, to=to)
        if reduced is not None:
            assert txn is not None  # a retry: the first reduction back
            return
        limit = max(to, known["consumed"])
        if limit >= known["amount"] or limit == 0:
            assert txn is None
            return
        assert txn is not None
        self.balances[known["who"]] += known["amount"] - limit
        known["amount"] = limit
        known["reduced"] = to

    @rule(key=placed)
    def hold_release(self, key: str) -> None:
        self._release(key)

    @rule(key=st.sampled_from(KEYS), jitter=jitters, operator=who)
    def settle_and_release_any_key(self, key: str, jitter: Decimal, operator: int) -> None:
        """Keys that may never have held anything: settling and releasing both raise HoldNotFound."""
        self._settle(key, jitter, operator)
        self._release(key)

    def _earn(self, operator: int, charged: Decimal) -> None:
        shares = ledger.split_revenue(charged)
        self.balances[operator] += shares["operator"]
        self.earned["platform"] += shares["platform"]
        self.earned["treasury"] += shares["treasury"]

    def _settle(self, key: str, charge: Decimal, operator: int) -> None:
        known = self.holds.get(key)
        kind = "inference" if known is None or known["kind"] == "hold" else known["kind"]
        settle = {"key": key, "charge": charge, "kind": kind, "operator_id": self.clients[operator].pk}
        if known is None:
            with pytest.raises(ledger.HoldNotFound):
                ledger.hold_settle(**settle)
            return
        asked = charge.quantize(MICRO, ROUND_HALF_UP)
        settled = known["settled"]
        if settled is not None and settled["txn"] is None:
            assert ledger.hold_settle(**settle) is None  # settled with nothing left to move: retries see None
            return
        if settled is not None and (settled["asked"].quantize(MICRO, ROUND_HALF_UP), settled["operator"]) != (
            asked,
            operator,
        ):
            with pytest.raises(ledger.LedgerKeyReused):
                ledger.hold_settle(**settle)
            return
        if settled is None and known["status"] != HoldStatus.HELD:
            with pytest.raises(ledger.HoldClosed):
                ledger.hold_settle(**settle)
            return
        txn = ledger.hold_settle(**settle)
        if settled is not None:
            assert txn is not None and txn.pk == settled["txn"]  # a retry: the first settlement back
            return
        still_held = known["amount"] - known["consumed"]
        assert (txn is None) == (still_held == 0)
        charged = min(asked, still_held)
        self._earn(operator, charged)
        self.balances[known["who"]] += still_held - charged
        known["status"] = HoldStatus.SETTLED
        known["settled"] = {
            "asked": charge,
            "operator": operator,
            "charged": charged,
            "txn": txn.pk if txn else None,
            "kind": kind,
        }

    def _release(self, key: str) -> None:
        known = self.holds.get(key)
        if known is None:
            with pytest.raises(ledger.HoldNotFound):
                ledger.hold_release(key=key)
            return
        if known["status"] == HoldStatus.SETTLED:
            with pytest.raises(ledger.HoldClosed):
                ledger.hold_release(key=key)
            return
        txn = ledger.hold_release(key=key)
        if known["status"] == HoldStatus.HELD:
            still_held = known["amount"] - known["consumed"]
            assert (txn is None) == (still_held == 0)
            self.balances[known["who"]] += still_held
            known["status"] = HoldStatus.RELEASED

    @invariant()
    def every_charge_is_its_own_line_of_minus_the_charge(self) -> None:
        """API.md §10: the payer reads each charge as one line of its kind and ref: a settlement's with the hold's
        ref, each batch charge with its own; what was paid up front as the charge at placing and its unused part
        as a refund. Releases give back exactly what left the balance and was not charged."""
        for key, known in self.holds.items():
            payer = self.clients[known["who"]]
            lines = LedgerEntry.objects.filter(account__client=payer, ref=f"obj:{key}")
            by_kind = {k: sorted(lines.filter(kind=k).values_list("amount", flat=True)) for k in LedgerEntryKind}
            settled = known["settled"]
            still_held = known["amount"] - known["consumed"] if known["status"] == HoldStatus.HELD else 0
            charged = settled["charged"] if settled is not None else 0
            own = 0
            if settled is not None and settled["operator"] == known["who"] and charged:
                own = ledger.split_revenue(charged)["operator"]  # its earnings, apart from its charge
            if known["kind"] == "hold":
                assert by_kind["hold"] == [-known["placed"]], key
                assert sum(by_kind["release"]) == known["placed"] - still_held, key
                assert by_kind["inference"] == sorted(x for x in (-charged, own) if x), key
                assert by_kind["refund"] == [], key
            else:
                assert by_kind["rental"] == sorted(x for x in (-known["placed"], own) if x), key
                assert sum(by_kind["release"]) + sum(by_kind["refund"]) == known["placed"] - still_held - charged
        for ref, (payer, charged) in self.used.items():
            lines = LedgerEntry.objects.filter(account__client=self.clients[payer], ref=ref, amount__lt=0)
            assert list(lines.values_list("kind", "amount")) == [("inference", -charged)], ref

    @invariant()
    def books_balance(self) -> None:
        if self.clients:
            assert_books_balanced()
            assert ledger.reconcile() == []

    @invariant()
    def ledger_matches_the_model(self) -> None:
        for client, expected in zip(self.clients, self.balances, strict=True):
            assert ledger.balance_of(client_id=client.pk) == expected
        still = {k: h["amount"] - h["consumed"] for k, h in self.holds.items() if h["status"] == HoldStatus.HELD}
        assert account_sum("escrow") == sum(still.values(), Decimal(0))
        for n, client in enumerate(self.clients):  # `held`: open reservations only (paid up front is not held)
            held = [still[k] for k, h in self.holds.items() if k in still and (h["who"], h["kind"]) == (n, "hold")]
            assert ledger.held_of(client_id=client.pk) == sum(held, Decimal(0))
        assert account_sum("platform") == self.earned["platform"]
        assert account_sum("treasury") == self.earned["treasury"]
        for source, expected in self.outside.items():
            assert account_sum(source) == expected
        statuses = dict(Hold.objects.values_list("key", "status"))
        assert statuses == {key: known["status"] for key, known in self.holds.items()}


LedgerMachine.TestCase.settings = settings(
    max_examples=15,
    stateful_step_count=35,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


@pytest.mark.django_db
def test_ledger_state_machine():
    LedgerMachine.TestCase().runTest()
