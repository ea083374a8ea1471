"""Reads: a client's available balance and what it has held, and a hold by its key."""

from decimal import Decimal

from django.db.models import F, Q, Sum

from clients.choices import HoldStatus, LedgerEntryKind
from clients.ledger.arguments import _key
from clients.models import Client, Hold


def balance_of(*, client_id: int) -> Decimal:
    """The client's available balance: what it may spend now (its money less charges less holds)."""
    return Client.objects.values_list("balance", flat=True).get(pk=client_id)


def held_q(prefix: str = "") -> Q:
    """Holds that count as `held`: open reservations (a hold placed with a charge's kind was paid, not held)."""
    return Q(**{f"{prefix}status": HoldStatus.HELD, f"{prefix}kind": LedgerEntryKind.HOLD})


def held_of(*, client_id: int) -> Decimal:
    """What the client has reserved for work in progress (requests in flight, leases): open holds, less charged."""
    held = Hold.objects.filter(held_q(), client_id=client_id).aggregate(s=Sum(F("amount") - F("consumed")))["s"]
    return held or Decimal(0)


def hold_get(*, key: str) -> Hold | None:
    """The hold with this key (a read: what it holds is `amount - consumed` while it is held)."""
    return Hold.objects.filter(key=_key(key)).first()
