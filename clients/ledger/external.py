"""Money in from outside and out to outside (payments/: docs/API.md §15).

Each moves money between a client's account and an external system account (a clearing account for money that
came in through Stripe or x402, the payouts account for money paid out), in one balanced transaction whose lines
carry `kind` (`topup`, `x402`, `payout`) and `ref` (`topup:<id>`, `x402:<id>`, `payout:<id>`)."""

from decimal import Decimal

from django.db import transaction

from clients.choices import HoldStatus
from clients.errors import HoldClosed
from clients.ledger.accounts import _client_account, _external, _give_back, _lock_clients, _move
from clients.ledger.arguments import OUTSIDE_KINDS, _exact, _fingerprint, _key, _ref, _transaction_kind
from clients.ledger.postings import _close, _locked_hold, _post, _post_to_client, _posted
from clients.models import LedgerTransaction


@transaction.atomic
def deposit(
    *, client_id: int, amount: Decimal, key: str, kind: str, ref: str | None, source: str, memo: str = ""
) -> LedgerTransaction:
    """Credit money that came in from outside (`source`: a clearing account) to a client: one line of `kind`.

    Keyed by `key` (a webhook delivered again, a concurrent replay: the first posting, nothing credited again).
    """
    amount = _exact(amount, name="amount")
    txn_kind = _transaction_kind(kind, OUTSIDE_KINDS, what="a kind of money in or out")
    ref, source_account = _ref(ref), _external(source)
    txn_key = f"{txn_kind}:{_key(key)}"
    fingerprint = _fingerprint(client_id, amount, kind, ref, source)
    return _post_to_client(
        client_id=client_id,
        key=txn_key,
        kind=txn_kind,
        memo=memo,
        fingerprint=fingerprint,
        source=source_account,
        amount=amount,
        line_kind=kind,
        ref=ref,
    )


@transaction.atomic
def withdraw(
    *, client_id: int, amount: Decimal, key: str, kind: str, ref: str | None, destination: str, memo: str = ""
) -> LedgerTransaction | None:
    """Take up to `amount` of a client's available balance back out to `destination` (a deposit that did not
    arrive after all): one line of `kind`. Keyed by `key`; None when the balance had nothing to take."""
    amount = _exact(amount, name="amount")
    txn_kind = _transaction_kind(kind, OUTSIDE_KINDS, what="a kind of money in or out")
    ref, destination_account = _ref(ref), _external(destination)
    txn_key = f"{txn_kind}:{_key(key)}"
    fingerprint = _fingerprint(client_id, amount, kind, ref, destination)
    locked = _lock_clients(client_id)[client_id]
    existing = _posted(txn_key, fingerprint)
    if existing is not None:
        return existing
    taken = min(amount, locked.balance)
    if taken <= 0:
        return None
    return _post(
        key=txn_key,
        kind=txn_kind,
        memo=memo,
        fingerprint=fingerprint,
        lines=_move(_client_account(client_id), destination_account, taken, kind, ref),
    )


@transaction.atomic
def hold_pay_out(
    *, key: str, kind: str, ref: str | None = None, destination: str, memo: str = ""
) -> LedgerTransaction | None:
    """Close a hold by paying what it still holds out of the books (escrow to `destination`).

    The client reads its hold's `release` and a line of `kind` (minus exactly what left); `ref` defaults to the
    hold's. A retry returns the first posting; a hold closed otherwise raises HoldClosed. None only when the hold
    had nothing left.
    """
    txn_kind = _transaction_kind(kind, OUTSIDE_KINDS, what="a kind of money in or out")
    ref, destination_account = _ref(ref), _external(destination)
    txn_key = f"{txn_kind}:{_key(key)}"
    hold = _locked_hold(key)
    fingerprint = _fingerprint(key, kind, ref, destination)
    existing = _posted(txn_key, fingerprint)
    if existing is not None:
        return existing
    if hold.status == HoldStatus.SETTLED and not hold.transactions.filter(kind=txn_kind).exists():
        return None  # paid out with nothing left to move: a retry
    if hold.status != HoldStatus.HELD:
        raise HoldClosed(f"The hold {key!r} is already {hold.status}.")
    ref = ref if ref is not None else hold.ref
    still_held = hold.amount - hold.consumed
    txn = None
    if still_held:
        _lock_clients(hold.client_id)
        txn = _post(
            key=txn_key,
            kind=txn_kind,
            memo=memo,
            fingerprint=fingerprint,
            lines=[
                *_give_back(hold, still_held),
                *_move(_client_account(hold.client_id), destination_account, still_held, kind, ref),
            ],
            hold=hold,
        )
    _close(hold, HoldStatus.SETTLED)
    return txn
