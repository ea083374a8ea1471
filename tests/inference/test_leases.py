"""inference/leases.py: reservations from a lease never exceed it; a retired lease closes after its last request."""

import asyncio
from decimal import Decimal

import pytest

from clients.ledger import InsufficientFunds
from inference.v1.leases import LeaseBook


class Ledger:
    """Stands in for the ledger's hold placement (the real one is tested in tests/clients/test_ledger_leases.py)."""

    def __init__(self, balance: str) -> None:
        self.balance = Decimal(balance)
        self.placed: list[tuple[str, Decimal]] = []
        self.closed: list[str] = []
        self.spent: dict[str, Decimal] = {}

    async def place(self, client_id: int, amount: Decimal, minimum: Decimal, key: str) -> Decimal:
        await asyncio.sleep(0.01)  # a database round trip: other requests arrive meanwhile
        if self.balance < minimum:
            raise InsufficientFunds("too little")
        amount = min(amount, self.balance)
        self.balance -= amount
        self.placed.append((key, amount))
        return amount

    async def close(self, key: str, spent: Decimal) -> None:
        """As the ledger does (hold_reduce / hold_release): all but what was spent goes back to the balance."""
        self.closed.append(key)
        self.spent[key] = spent
        self.balance += dict(self.placed)[key] - spent


@pytest.fixture(autouse=True)
def lease_settings(settings):  # type: ignore[no-untyped-def]
    settings.INFERENCE_LEASE_AMOUNT = Decimal("1.00")
    settings.INFERENCE_LEASE_REQUESTS = 4
    settings.INFERENCE_LEASE_TTL_S = 60


def test_concurrent_requests_share_one_lease_placed_once():
    money = Ledger("10")
    book = LeaseBook(place=money.place, close=money.close)

    async def run():  # type: ignore[no-untyped-def]
        return await asyncio.gather(*(book.reserve(1, Decimal("0.1")) for _ in range(8)))

    leases = asyncio.run(run())
    assert len(money.placed) == 1 and len({lease.key for lease in leases}) == 1
    assert leases[0].committed == Decimal("0.8") and leases[0].running == 8


def test_reservations_never_exceed_what_the_client_has():
    money = Ledger("0.35")
    book = LeaseBook(place=money.place, close=money.close)

    async def run():  # type: ignore[no-untyped-def]
        return await asyncio.gather(*(book.reserve(1, Decimal("0.1")) for _ in range(6)), return_exceptions=True)

    results = asyncio.run(run())
    granted = [r for r in results if not isinstance(r, Exception)]
    assert len(granted) == 3  # 0.35 held, three reservations of 0.1 fit, the rest are refused
    assert all(isinstance(r, InsufficientFunds) for r in results if isinstance(r, Exception))
    assert sum(lease.committed for lease in {id(g): g for g in granted}.values()) <= Decimal("0.35")


def test_finishing_keeps_what_was_spent_and_frees_the_rest():
    money = Ledger("10")
    book = LeaseBook(place=money.place, close=money.close)

    async def run():  # type: ignore[no-untyped-def]
        lease = await book.reserve(1, Decimal("0.5"))
        await book.finish(lease, reserved=Decimal("0.5"), spent=Decimal("0.2"))
        return lease

    lease = asyncio.run(run())
    assert (lease.committed, lease.running) == (Decimal("0.2"), 0)


def test_a_retired_lease_closes_only_when_its_last_request_finishes(settings):
    settings.INFERENCE_LEASE_REQUESTS = 1  # a lease of 1.00
    money = Ledger("10")
    book = LeaseBook(place=money.place, close=money.close)

    async def run():  # type: ignore[no-untyped-def]
        first = await book.reserve(1, Decimal("0.6"))
        second = await book.reserve(1, Decimal("0.6"))  # does not fit in 1.00 with the first: a new lease
        assert second is not first and first.retired
        assert money.closed == []  # the first still has a request running
        await book.finish(first, reserved=Decimal("0.6"), spent=Decimal("0.1"))
        assert money.closed == [first.key]
        await book.finish(second, reserved=Decimal("0.6"), spent=Decimal("0"))
        assert money.closed == [first.key]  # the current lease stays open for more requests
        await book.retire_all()
        assert money.closed == [first.key, second.key]

    asyncio.run(run())


def test_an_expired_lease_is_retired_by_the_ticker(settings):
    settings.INFERENCE_LEASE_TTL_S = 0
    money = Ledger("10")
    book = LeaseBook(place=money.place, close=money.close)

    async def run():  # type: ignore[no-untyped-def]
        lease = await book.reserve(1, Decimal("0.1"))
        await book.retire_expired()
        assert money.closed == []  # still running
        await book.finish(lease, reserved=Decimal("0.1"), spent=Decimal("0.1"))
        assert money.closed == [lease.key]

    asyncio.run(run())


def test_an_expired_lease_holding_all_the_money_still_serves_while_no_new_one_can_be_placed(settings):
    settings.INFERENCE_LEASE_TTL_S = 0.05
    money = Ledger("0.30")  # all of it goes into the first lease
    book = LeaseBook(place=money.place, close=money.close)

    async def run():  # type: ignore[no-untyped-def]
        first = await book.reserve(1, Decimal("0.1"))  # still running when the lease expires
        await asyncio.sleep(0.06)
        second = await book.reserve(1, Decimal("0.1"))  # no new lease can be placed: the expired one serves
        assert second is first and len(money.placed) == 1 and money.closed == []
        await asyncio.sleep(0.06)  # past the grace as well: refused, the money stays where it is
        with pytest.raises(InsufficientFunds):
            await book.reserve(1, Decimal("0.1"))
        money.balance = Decimal("1")  # a top-up: a new lease, and the old one closes after its requests
        third = await book.reserve(1, Decimal("0.1"))
        assert third is not first and first.retired and money.closed == []
        await book.finish(first, reserved=Decimal("0.1"), spent=Decimal("0.1"))
        await book.finish(second, reserved=Decimal("0.1"), spent=Decimal("0.1"))
        assert money.closed == [first.key]

    asyncio.run(run())


def test_an_idle_lease_is_closed_soon_with_what_its_requests_spent(settings):
    # API.md §10: money a lease holds goes back to the balance soon after the client's last request ends.
    settings.INFERENCE_LEASE_IDLE_S = 0.05
    money = Ledger("10")
    book = LeaseBook(place=money.place, close=money.close)

    async def run():  # type: ignore[no-untyped-def]
        lease = await book.reserve(1, Decimal("0.5"))
        await book.finish(lease, reserved=Decimal("0.5"), spent=Decimal("0.02"))
        await book.retire_expired()
        assert money.closed == []  # not idle long enough yet
        await asyncio.sleep(0.06)
        await book.retire_expired()
        return lease

    lease = asyncio.run(run())
    assert money.closed == [lease.key] and money.spent[lease.key] == Decimal("0.02")
    assert money.balance == Decimal("9.98") and 1 not in book.current
    assert 0.05 <= book.tick_s() <= settings.INFERENCE_LEASE_IDLE_S


def test_a_lease_in_use_again_is_not_idle(settings):
    settings.INFERENCE_LEASE_IDLE_S = 0.05
    money = Ledger("10")
    book = LeaseBook(place=money.place, close=money.close)

    async def run():  # type: ignore[no-untyped-def]
        lease = await book.reserve(1, Decimal("0.5"))
        await book.finish(lease, reserved=Decimal("0.5"), spent=Decimal("0.02"))
        again = await book.reserve(1, Decimal("0.5"))
        await asyncio.sleep(0.06)
        await book.retire_expired()
        assert again is lease and money.closed == []

    asyncio.run(run())


def test_money_in_an_idle_lease_too_small_for_a_request_is_not_refused(settings):
    # API.md §10: a client is never refused (402) for money held only by its own idle leases.
    settings.INFERENCE_LEASE_AMOUNT = Decimal("2.00")
    settings.INFERENCE_LEASE_REQUESTS = 1
    money = Ledger("3")
    book = LeaseBook(place=money.place, close=money.close)

    async def run():  # type: ignore[no-untyped-def]
        small = await book.reserve(1, Decimal("0.1"))  # a lease of 2.00: 1.00 left outside it
        await book.finish(small, reserved=Decimal("0.1"), spent=Decimal("0.1"))
        big = await book.reserve(1, Decimal("2.5"))  # fits neither the idle lease nor the rest of the balance
        return small, big

    small, big = asyncio.run(run())
    assert money.closed == [small.key] and big is not small
    assert big.amount == Decimal("2.5") and money.balance == Decimal("0.4")


def test_the_ticker_keeps_an_expired_lease_with_requests_running_until_its_grace_is_over(settings):
    # The ticker runs every tick_s (0.25 s by default): it must not cut the expired lease's grace short.
    settings.INFERENCE_LEASE_TTL_S = 0.5
    money = Ledger("0.30")  # all of it goes into the first lease
    book = LeaseBook(place=money.place, close=money.close)

    async def run():  # type: ignore[no-untyped-def]
        first = await book.reserve(1, Decimal("0.1"))
        await asyncio.sleep(0.55)
        await book.retire_expired()  # expired, but a request is running and no new lease could be placed
        second = await book.reserve(1, Decimal("0.1"))
        assert second is first and not first.retired
        await asyncio.sleep(0.5)
        await book.retire_expired()  # past its grace: retired, closed once its requests are over
        assert first.retired and money.closed == []
        await book.finish(first, reserved=Decimal("0.1"), spent=Decimal("0.1"))
        await book.finish(second, reserved=Decimal("0.1"), spent=Decimal("0.1"))
        assert money.closed == [first.key]

    asyncio.run(run())
