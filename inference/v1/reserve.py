"""The reserve step's strategies: money held before relaying, for one request's most possible cost (`call.need`).

- `LeaseReserve` (lean door): a reservation in memory from a lease, a ledger hold of many requests' worth placed by
  this process (inference/v1/leases.py); no database round trip per request. Too little money: hand the request to
  the web door, which answers 402.
- `HoldReserve` (web door): the request's row (running, channel `web`) and a ledger hold of its own, in one
  transaction (services.inference_open); InsufficientFunds is the 402. Its record step settles or releases it.
"""

import asyncio
import logging
from decimal import Decimal

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import transaction

from clients import ledger
from core.asgi import database_call
from inference import services
from inference.choices import InferenceChannel
from inference.journal import entries
from inference.journal.stream import append_or_apply
from inference.v1.leases import Lease, LeaseBook
from inference.v1.pipeline import ChatCall

log = logging.getLogger(__name__)


# --- Leases, placed and closed through the ledger and the journal ------------------------------------------------


def _place_hold(client_id: int, amount: Decimal, minimum: Decimal, key: str) -> Decimal:
    hold = ledger.hold_place(client_id=client_id, amount=amount, minimum=minimum, key=key, memo="inference lease (/v1)")
    return hold.amount


def _give_back_unspent(key: str, spent: Decimal) -> None:
    """A lease whose requests are over: all but what they spent back to the balance now (their usage, still in the
    journal, is charged from what stays held), or all of it if they spent nothing."""
    if spent > 0:
        ledger.hold_reduce(key=key, to=spent, memo="inference lease (/v1): unspent part")
    else:
        ledger.hold_release(key=key)


_place_hold_async = database_call(_place_hold)
_give_back_unspent_async = database_call(_give_back_unspent)
_leases_open_async = database_call(entries.leases_open)


async def _close_lease(key: str, spent: Decimal) -> None:
    try:
        await _give_back_unspent_async(key, spent)
    except Exception:  # a database outage: the close entry below releases it once the journal is applied
        log.warning("giving back the unspent part of lease %s failed", key, exc_info=True)
    await append_or_apply(entries.close_entry(key))


class LeaseReserve:
    def __init__(self) -> None:
        self.book = LeaseBook(place=_place_hold_async, close=_close_lease)

    async def reserve(self, call: ChatCall) -> bool:
        """Reserve `call.need` from a lease; False when the client has too little (the web door then answers 402).

        Money in another web process's lease comes back within INFERENCE_LEASE_IDLE_S of its last request there:
        if the client has leases open, wait that long once and try again, rather than refuse money it has."""
        lease = await self._lease(call.caller.client_id, call.need)
        call.reservation = lease
        return lease is not None

    async def _lease(self, client_id: int, need: Decimal) -> Lease | None:
        try:
            return await self.book.reserve(client_id, need)
        except ledger.InsufficientFunds:
            if not await _leases_open_async(client_id=client_id):
                return None
        await asyncio.sleep(settings.INFERENCE_LEASE_IDLE_S + 2 * self.book.tick_s())
        try:
            return await self.book.reserve(client_id, need)
        except ledger.InsufficientFunds:
            return None

    async def release(self, call: ChatCall) -> None:
        lease, call.reservation = call.reservation, None
        if lease is not None:
            await self.book.finish(lease, reserved=call.need, spent=call.cost)


def _open_row(call: ChatCall) -> None:
    caller = call.caller
    with transaction.atomic():
        opened = services.inference_open(
            client_id=caller.client_id,
            desired_model=call.model,
            question_text=call.request.endpoint.question_of(call.request.body),
            max_tokens=call.max_tokens,
            body=call.request.body,
            endpoint=call.request.endpoint.name,
            prompt=call.prompt,
            channel=InferenceChannel.WEB,
            candidates=call.candidates,
            ref=caller.ref,
            request_key=call.key,
            plan_covered=caller.covered,  # no hold, no charge (API.md §12)
            api_key_id=caller.key_id,
        )
    call.row = opened.request
    call.need = opened.request.held_amount


# In the request's own thread and connection (its transaction, e.g. core/idempotency.py's), not database_call's.
_open_row_async = sync_to_async(_open_row)


class HoldReserve:
    async def reserve(self, call: ChatCall) -> bool:
        await _open_row_async(call)
        return True

    async def release(self, call: ChatCall) -> None:
        """Nothing to do: the record step settled or released the request's own hold."""
