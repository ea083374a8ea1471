"""Leases: a web process holds a client's money many requests at a time, so a request costs no ledger write.

A lease is an ordinary ledger hold (key `lease:<uuid>`) of INFERENCE_LEASE_AMOUNT, or INFERENCE_LEASE_REQUESTS
times the request's most possible cost if that is more, or the whole available balance if that is less (but never
less than the request needs: then the client has too little, InsufficientFunds). Each request reserves its most
possible cost from the lease in memory, and gives back what it did not spend when it finishes; what it spent is
charged from the hold when its usage entry is applied (inference/journal/entries.py). The sum reserved never
exceeds the lease, so a client never spends more than it has, however many requests run at once.

A lease takes new reservations for INFERENCE_LEASE_TTL_S; after that (or when it is too small for a request) it is
retired once a new lease is placed. A lease with no request running for INFERENCE_LEASE_IDLE_S is retired too, so
money a client is not using goes back to its balance within a second or so (API.md §10). Once a retired lease's
last request has finished, its process closes it (`close(key, spent)`): the hold gives back at once all but what
its requests spent (ledger.hold_reduce), and a close entry in the journal releases the rest after their usage is
charged. If no new lease can be placed because the client's money is in the expired one (its requests still
running), the expired lease goes on taking reservations for up to another INFERENCE_LEASE_TTL_S; if it is in an
idle one, that one is closed first. A process that dies leaves its leases open; entries.release_stale_leases
releases them later.
"""

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from decimal import ROUND_UP, Decimal

from django.conf import settings

from clients.ledger import Q6, InsufficientFunds

# Places a hold of up to `amount` (at least `minimum`) for a client under `key`; returns the amount held.
PlaceHold = Callable[[int, Decimal, Decimal, str], Awaitable[Decimal]]
# Closes a lease whose requests are over: its key and what they spent in all.
CloseLease = Callable[[str, Decimal], Awaitable[None]]


@dataclass(eq=False)
class Lease:
    key: str
    client_id: int
    amount: Decimal
    expires_at: float  # time.monotonic(): no new reservations after this
    committed: Decimal = Decimal(0)  # reserved by running requests plus spent by finished ones
    running: int = 0
    retired: bool = False
    idle_since: float | None = None  # time.monotonic() when its last running request finished

    def fits(self, need: Decimal, now: float, *, grace_s: float = 0.0) -> bool:
        return not self.retired and now < self.expires_at + grace_s and self.amount - self.committed >= need


@dataclass
class LeaseBook:
    """A process's leases, one open per client. Single event loop: no locks needed except around placing."""

    place: PlaceHold
    close: CloseLease
    current: dict[int, Lease] = field(default_factory=dict)
    _placing: dict[int, asyncio.Lock] = field(default_factory=dict)

    async def reserve(self, client_id: int, need: Decimal) -> Lease:
        """Reserve `need` for one request; InsufficientFunds (from the ledger) when the client has too little."""
        lease = self.current.get(client_id)
        if lease is not None and lease.fits(need, time.monotonic()):
            return self._take(lease, need)
        lock = self._placing.setdefault(client_id, asyncio.Lock())
        async with lock:  # one placement per client at a time; the others then use what it placed
            lease = self.current.get(client_id)
            if lease is not None and lease.fits(need, time.monotonic()):
                return self._take(lease, need)
            want = max(settings.INFERENCE_LEASE_AMOUNT, need * settings.INFERENCE_LEASE_REQUESTS)
            want = want.quantize(Q6, rounding=ROUND_UP)
            key = f"lease:{uuid.uuid4().hex}"
            try:
                amount = await self.place(client_id, want, max(need, Q6), key)
            except InsufficientFunds:
                # What the client has may all be in its expired lease, kept open by requests still running: use
                # it a while longer rather than refuse money that is there.
                if lease is not None and lease.fits(need, time.monotonic(), grace_s=settings.INFERENCE_LEASE_TTL_S):
                    return self._take(lease, need)
                if lease is None or lease.running:
                    raise
                # Or in its idle lease (too small for this request): close that one first, then try again.
                await self._retire(lease)
                lease = None
                amount = await self.place(client_id, want, max(need, Q6), key)
            if lease is not None:
                await self._retire(lease)
            fresh = Lease(key, client_id, amount, time.monotonic() + settings.INFERENCE_LEASE_TTL_S)
            self.current[client_id] = fresh
            return self._take(fresh, need)

    @staticmethod
    def _take(lease: Lease, need: Decimal) -> Lease:
        lease.committed += need
        lease.running += 1
        lease.idle_since = None
        return lease

    async def finish(self, lease: Lease, *, reserved: Decimal, spent: Decimal) -> None:
        """A request is over: keep what it spent, give back the rest of its reservation."""
        lease.committed -= reserved - min(spent, reserved)
        lease.running -= 1
        if lease.running == 0:
            lease.idle_since = time.monotonic()
            if lease.retired:
                await self.close(lease.key, lease.committed)

    async def _retire(self, lease: Lease) -> None:
        lease.retired = True
        if self.current.get(lease.client_id) is lease:
            del self.current[lease.client_id]
        if lease.running == 0:
            await self.close(lease.key, lease.committed)  # otherwise its last request closes it (`finish`)

    async def retire_expired(self) -> None:
        """Retire leases idle for INFERENCE_LEASE_IDLE_S, or past their time with no request running, or past
        their grace (another TTL) in any case (a ticker calls this every `tick_s`). An expired lease with requests
        running stays current meanwhile, so that it can serve while no new lease can be placed (`reserve`)."""
        now = time.monotonic()
        idle_s, grace_s = settings.INFERENCE_LEASE_IDLE_S, settings.INFERENCE_LEASE_TTL_S
        done = [
            lease
            for lease in self.current.values()
            if (lease.idle_since is not None and now - lease.idle_since >= idle_s)
            or (now >= lease.expires_at and not lease.running)
            or now >= lease.expires_at + grace_s
        ]
        for lease in done:
            await self._retire(lease)

    @staticmethod
    def tick_s() -> float:
        """How often to call retire_expired: often enough to retire an idle lease soon after its idle time."""
        return max(0.05, min(1.0, settings.INFERENCE_LEASE_IDLE_S / 2))

    async def retire_all(self) -> None:
        """Shutdown: retire every lease; those with requests still running close when they finish."""
        for lease in list(self.current.values()):
            await self._retire(lease)
