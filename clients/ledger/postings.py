"""Writing one balanced transaction, finding a retry's first one, and the hold row a posting locks."""

from collections import defaultdict
from decimal import Decimal

from django.db.models import F
from django.utils import timezone

from clients.errors import HoldNotFound, LedgerKeyReused
from clients.ledger.accounts import _client_account, _Line, _lock_clients, _move
from clients.ledger.arguments import _key
from clients.models import Client, Hold, LedgerAccount, LedgerEntry, LedgerTransaction


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


def _post_to_client(
    *, client_id: int, key: str, kind: str, memo: str, fingerprint: str, source: LedgerAccount, amount: Decimal,
    line_kind: str, ref: str | None,
) -> LedgerTransaction:  # fmt: skip
    """Move `amount` from `source` to the client's account under `key`, once: a retry gets the first posting."""
    _lock_clients(client_id)  # a concurrent retry waits here, then finds the first one's transaction
    existing = _posted(key, fingerprint)
    if existing is not None:
        return existing
    return _post(
        key=key,
        kind=kind,
        memo=memo,
        fingerprint=fingerprint,
        lines=_move(source, _client_account(client_id), amount, line_kind, ref),
    )
