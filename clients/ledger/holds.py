"""Holds placed, topped up, reduced and released: money between a client's account and escrow."""

from decimal import Decimal

from django.db import IntegrityError, transaction
from django.db.models import F

from clients.choices import HoldStatus, LedgerAccountKind, LedgerEntryKind, LedgerTransactionKind
from clients.errors import HoldClosed, InsufficientFunds, LedgerKeyReused
from clients.ledger.accounts import _client_account, _give_back, _lock_clients, _move, _system_account
from clients.ledger.arguments import _exact, _fingerprint, _key, _kind, _ref, _rounded
from clients.ledger.postings import _close, _locked_hold, _post, _posted
from clients.models import Hold, LedgerTransaction


@transaction.atomic
def hold_place(
    *, client_id: int, amount: Decimal, key: str, kind: str = LedgerEntryKind.HOLD, ref: str | None = None,
    memo: str = "", minimum: Decimal | None = None,
) -> Hold:  # fmt: skip
    """Move `amount` from the client's balance to escrow; InsufficientFunds if it has less.

    `kind` `hold` reserves money for work whose cost is not known yet (counted in the client's `held`); a charge's
    kind (`rental`) charges it up front, and `hold_settle` then refunds what was not used. With `minimum` (a lease:
    inference/leases.py), hold as much of `amount` as the balance has, if that is at least `minimum`; a retry then
    returns the first hold whatever it held.
    """
    amount = _exact(amount, name="amount")
    floor = amount if minimum is None else _exact(minimum, name="minimum")
    kind, ref = _kind(kind, hold=True), _ref(ref)
    fingerprint = _fingerprint(client_id, amount, minimum, kind, ref)
    locked = _lock_clients(client_id)[client_id]  # concurrent holds of one client queue here: none can overspend
    hold = Hold.objects.filter(key=_key(key)).first()
    if hold is not None:
        placed = _posted(f"{LedgerTransactionKind.HOLD}:{key}", fingerprint)
        if placed is None or hold.client_id != client_id or (placed.fingerprint is None and hold.amount != amount):
            raise LedgerKeyReused(f"Hold key {key!r} already holds another client's money or another amount.")
        return hold
    if locked.balance < floor:
        raise InsufficientFunds(f"The available balance ({locked.balance}) is less than {floor}.")
    amount = min(amount, locked.balance)
    try:
        with transaction.atomic():
            hold = Hold.objects.create(key=key, client_id=client_id, amount=amount, kind=kind, ref=ref)
    except IntegrityError as exc:  # another client's hold took this key at the same moment
        raise LedgerKeyReused(f"Hold key {key!r} is already in use.") from exc
    _post(
        key=f"{LedgerTransactionKind.HOLD}:{key}",
        kind=LedgerTransactionKind.HOLD,
        memo=memo,
        fingerprint=fingerprint,
        lines=_move(_client_account(client_id), _system_account(LedgerAccountKind.ESCROW), amount, kind, ref),
        hold=hold,
    )
    return hold


@transaction.atomic
def hold_reduce(*, key: str, to: Decimal, memo: str = "") -> LedgerTransaction | None:
    """Lower what an open hold may be charged in all to `to` (never below what it was charged) and give the rest
    back now; it stays open for charges still on their way (a lease whose requests are over: their usage is being
    journaled). Once per hold; None when there was nothing to give back."""
    to = _rounded(to, name="to")
    txn_key = f"{LedgerTransactionKind.RELEASE}:{_key(key)}:reduce"
    hold = _locked_hold(key)
    fingerprint = _fingerprint(key, to)
    existing = _posted(txn_key, fingerprint)
    if existing is not None:
        return existing
    if hold.status != HoldStatus.HELD:
        raise HoldClosed(f"The hold {key!r} is already {hold.status}.")
    new_amount = max(to, hold.consumed)
    if new_amount >= hold.amount or new_amount == 0:
        return None  # nothing to give back, or everything: hold_release closes it
    txn = _post_release(hold, hold.amount - new_amount, key=txn_key, memo=memo, fingerprint=fingerprint)
    Hold.objects.filter(pk=hold.pk).update(amount=new_amount)
    return txn


@transaction.atomic
def hold_release(*, key: str, memo: str = "") -> LedgerTransaction | None:
    """Close a hold, giving back all it still holds (a `release` line with the hold's ref).

    A retry returns the first release (None when nothing was left to give back); a hold settled instead raises
    HoldClosed.
    """
    txn_key = f"{LedgerTransactionKind.RELEASE}:{_key(key)}"
    hold = _locked_hold(key)
    fingerprint = _fingerprint(key)
    existing = _posted(txn_key, fingerprint)
    if existing is not None:
        return existing
    if hold.status == HoldStatus.RELEASED:
        return None  # released with nothing left to give back (a lease used to the last cent)
    if hold.status != HoldStatus.HELD:
        raise HoldClosed(f"The hold {key!r} is already {hold.status}.")
    still_held = hold.amount - hold.consumed
    txn = None
    if still_held:
        txn = _post_release(hold, still_held, key=txn_key, memo=memo, fingerprint=fingerprint)
    _close(hold, HoldStatus.RELEASED)
    return txn


def _post_release(hold: Hold, amount: Decimal, *, key: str, memo: str, fingerprint: str) -> LedgerTransaction:
    """Give `amount` of the hold back to its client (the client's row locked here): one `release` transaction."""
    _lock_clients(hold.client_id)
    return _post(
        key=key,
        kind=LedgerTransactionKind.RELEASE,
        memo=memo,
        fingerprint=fingerprint,
        lines=_give_back(hold, amount),
        hold=hold,
    )


@transaction.atomic
def hold_top_up(*, key: str, amount: Decimal, top_up_key: str, memo: str = "") -> Hold:
    """Add `amount` from the client's balance to its open hold `key`; InsufficientFunds if the balance has less.

    The lines carry the hold's kind and ref: a reservation (a pay-as-you-go rental's hold renewed) reads `hold`
    again, a hold paid up front (a fixed rental extended) reads a charge of its kind (`rental`), which its settle
    refunds in the part not used. Keyed by `top_up_key` (the contract's idempotency rule).
    """
    amount = _exact(amount, name="amount")
    txn_key = f"{LedgerTransactionKind.HOLD}:{_key(top_up_key)}"
    hold = _locked_hold(key)  # the hold's row lock first, then the client's, as hold_settle does
    fingerprint = _fingerprint(key, amount)
    locked = _lock_clients(hold.client_id)[hold.client_id]
    if _posted(txn_key, fingerprint) is not None:
        hold.refresh_from_db()
        return hold  # a retry: added already
    if hold.status != HoldStatus.HELD:
        raise HoldClosed(f"The hold {key!r} is already {hold.status}.")
    if locked.balance < amount:
        raise InsufficientFunds(f"The available balance ({locked.balance}) is less than {amount}.")
    _post(
        key=txn_key,
        kind=LedgerTransactionKind.HOLD,
        memo=memo,
        fingerprint=fingerprint,
        lines=_move(
            _client_account(hold.client_id), _system_account(LedgerAccountKind.ESCROW), amount, hold.kind, hold.ref
        ),
        hold=hold,
    )
    Hold.objects.filter(pk=hold.pk).update(amount=F("amount") + amount)
    hold.refresh_from_db()
    return hold
