"""Leases: a web process holds a client's money many requests at a time, so a request costs no ledger write.

A lease is an ordinary ledger hold (key `lease:<uuid>`) of INFERENCE_LEASE_AMOUNT, or INFERENCE_LEASE_REQUESTS
times the request's most possible cost if that is more, or the whole available balance if that is less (but never
less than the request needs: then the client has too little, InsufficientFunds). Each request reserves its most
possible cost from the lease in memory, and gives back what it did not spend when it finishes; what it spent is
charged from the hold when its usage entry is applied (inference/usage.py). The sum reserved never exceeds the
lease, so a client never spends more than it has, however many requests run at once.

A lease takes new reservations for INFERENCE_LEASE_TTL_S; after that (or when it is too small for a request) it is
retired once a new lease is placed, and once its last request has finished its process journals a close entry,
which releases the rest of the hold. If no new lease can be placed because the client's money is in the expired
one (its requests still running), the expired lease goes on taking reservations for up to another
INFERENCE_LEASE_TTL_S. A process that dies leaves its leases open; usage.release_stale_leases releases them later.
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
CloseLease = Callable[[str], Awaitable[None]]


@dataclass(eq=False)
class Lease:
    key: str
    client_id: int
    amount: Decimal
    expires_at: float  # time.monotonic(): no new reservations after this
    committed: Decimal = Decimal(0)  # reserved by running requests plus spent by finished ones
    running: int = 0
    retired: bool = False

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
                raise
            if lease is not None:
                await self._retire(lease)
            fresh = Lease(key, client_id, amount, time.monotonic() + settings.INFERENCE_LEASE_TTL_S)
            self.current[client_id] = fresh
            return self._take(fresh, need)

    @staticmethod
    def _take(lease: Lease, need: Decimal) -> Lease:
        lease.committed += need
        lease.running += 1
        return lease

    async def finish(self, lease: Lease, *, reserved: Decimal, spent: Decimal) -> None:
        """A request is over: keep what it spent, give back the rest of its reservation."""
        lease.committed -= reserved - min(spent, reserved)
        lease.running -= 1
        if lease.retired and lease.running == 0:
            await self.close(lease.key)

    async def _retire(self, lease: Lease) -> None:
        lease.retired = True
        if self.current.get(lease.client_id) is lease:
            del self.current[lease.client_id]
        if lease.running == 0:
            await self.close(lease.key)  # otherwise its last request closes it (`finish`)

    async def retire_expired(self) -> None:
        """Retire leases past their time (a ticker calls this every second)."""
        now = time.monotonic()
        for lease in [lease for lease in self.current.values() if now >= lease.expires_at]:
            await self._retire(lease)

    async def retire_all(self) -> None:
        """Shutdown: retire every lease; those with requests still running close when they finish."""
        for lease in list(self.current.values()):
            await self._retire(lease)
