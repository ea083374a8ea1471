"""Writing one balanced transaction, finding a retry's first one, and the hold row a posting locks."""

from collections import defaultdict
from decimal import Decimal

from django.db.models import F
from django.utils import timezone

from clients.errors import HoldNotFound, LedgerKeyReused
from clients.ledger.accounts import _Line
from clients.ledger.arguments import _key
from clients.models import Client, Hold, LedgerEntry, LedgerTransaction


def _post(
    *, key: str, kind: str, memo: str, fingerprint: str, lines: list[_Line], hold: Hold | None = None
) -> LedgerTransaction:
    """Write one balanced transaction and move the cached balances of the clients it touches.

    Lines are kept as given (never netted per account), zero lines dropped. The caller holds the locks of those
    clients' rows (and of the hold), inside its own atomic block.
    """
    lines = [line for line in lines if line.amount]
    if len(lines) < 2 or sum(line.amount for line in lines) != 0:
        raise AssertionError(f"unbalanced ledger transaction {key}: {lines}")  # the trigger would refuse it too
    txn = LedgerTransaction.objects.create(key=key, kind=kind, memo=memo[:255], fingerprint=fingerprint, hold=hold)
    LedgerEntry.objects.bulk_create(
        LedgerEntry(transaction=txn, account=line.account, amount=line.amount, kind=line.kind, ref=line.ref)
        for line in lines
    )
    moved: dict[int, Decimal] = defaultdict(Decimal)
    for line in lines:
        if line.account.client_id is not None:
            moved[line.account.client_id] += line.amount
    for client_id, amount in sorted(moved.items()):
        if amount:
            Client.objects.filter(pk=client_id).update(balance=F("balance") + amount)
    return txn


def _posted(key: str, fingerprint: str) -> LedgerTransaction | None:
    """The transaction already posted under `key`, if any; LedgerKeyReused if it was posted with other arguments."""
    existing = LedgerTransaction.objects.filter(key=key).first()
    if existing is not None and existing.fingerprint not in (None, fingerprint):
        raise LedgerKeyReused(f"Ledger key {key!r} was already used with other arguments.")
    return existing


def _locked_hold(key: str) -> Hold:
    """The hold with this key, row-locked (so concurrent settles, charges and releases act one after another)."""
    hold = Hold.objects.select_for_update().filter(key=_key(key)).first()
    if hold is None:
        raise HoldNotFound(f"No hold has the key {key!r}.")
    return hold


def _close(hold: Hold, status: str) -> None:
    hold.status = status
    hold.settled_at = timezone.now()
    hold.save(update_fields=["status", "settled_at"])
