"""Charges paid from a hold: settled (closing it) or consumed in batches (a lease that stays open)."""

from collections.abc import Sequence
from decimal import Decimal

from django.db import transaction
from django.db.models import F

from clients.choices import HoldStatus, LedgerAccountKind, LedgerEntryKind, LedgerTransactionKind
from clients.errors import HoldClosed
from clients.ledger.accounts import _client_account, _give_back, _Line, _lock_clients, _split_lines, _system_account
from clients.ledger.arguments import Charge, _fingerprint, _key, _kind, _ref, _rounded
from clients.ledger.postings import _close, _locked_hold, _post, _posted
from clients.models import Hold, LedgerTransaction


@transaction.atomic
def hold_settle(
    *, key: str, charge: Decimal, operator_id: int | None, kind: str, ref: str | None = None, memo: str = ""
) -> LedgerTransaction | None:
    """Close a hold: charge up to what it still holds (70/25/5 to the operator, platform and treasury) and give
    the client the rest. `ref` defaults to the hold's. None only when the hold had nothing left and nothing was
    charged.

    A reservation's client reads: `release` of all it still held, then the charge (`kind`, minus exactly the
    charge). A hold placed with a charge's kind (paid up front) reads: the `refund` of the unused part.
    """
    charge = _rounded(charge, name="charge")
    kind, ref = _kind(kind), _ref(ref)
    txn_key = f"{LedgerTransactionKind.SETTLE}:{_key(key)}"
    hold = _locked_hold(key)
    fingerprint = _fingerprint(key, charge, operator_id, kind, ref)
    existing = _posted(txn_key, fingerprint)
    if existing is not None:
        return existing
    if hold.status == HoldStatus.SETTLED and not hold.transactions.filter(kind=LedgerTransactionKind.SETTLE).exists():
        return None  # settled with nothing to move (see below): a retry
    if hold.status != HoldStatus.HELD:
        raise HoldClosed(f"The hold {key!r} is already {hold.status}.")
    ref = ref if ref is not None else hold.ref
    still_held = hold.amount - hold.consumed
    charge = min(charge, still_held)
    _lock_clients(hold.client_id, operator_id)
    if hold.kind == LedgerEntryKind.HOLD:
        payer = [*_give_back(hold, still_held), _Line(_client_account(hold.client_id), -charge, kind, ref)]
    else:  # paid up front: the used part goes from escrow to the earners, the rest back as a refund
        escrow = _system_account(LedgerAccountKind.ESCROW)
        payer = [_Line(escrow, -charge, kind, ref), *_give_back(hold, still_held - charge, kind=LedgerEntryKind.REFUND)]
    earners = _split_lines(charge, operator_id=operator_id, kind=kind, ref=ref) if charge else []
    txn = None
    if still_held:  # a lease charged to the last cent has nothing left to move
        txn = _post(
            key=txn_key,
            kind=LedgerTransactionKind.SETTLE,
            memo=memo,
            fingerprint=fingerprint,
            lines=payer + earners,
            hold=hold,
        )
    _close(hold, HoldStatus.SETTLED)
    return txn


def _consume_lines(
    hold: Hold, charges: list[Charge], *, available: Decimal, from_escrow: bool, operator_id: int | None, kind: str
) -> tuple[list[_Line], Decimal]:
    """Client lines for as many of `charges` as `available` covers, the release and the earnings; and the total."""
    account = _client_account(hold.client_id)
    paid: list[_Line] = []
    left = available
    for one in charges:
        amount = min(one.amount, left)
        if amount <= 0:
            break
        paid.append(_Line(account, -amount, kind, one.ref))
        left -= amount
    total = available - left
    if not total:
        return [], total
    refs = {line.ref for line in paid}
    earners = _split_lines(total, operator_id=operator_id, kind=kind, ref=refs.pop() if len(refs) == 1 else None)
    return [*(_give_back(hold, total) if from_escrow else []), *paid, *earners], total


@transaction.atomic
def hold_consume(
    *, key: str, use_key: str, charges: Sequence[Charge], operator_id: int | None, kind: str, memo: str = "",
    from_balance_if_closed: bool = False,
) -> LedgerTransaction | None:  # fmt: skip
    """Charge a batch from a hold that stays open (a lease): one line per charge (its `ref`), 70/25/5 of the sum.

    Keyed by `use_key`. Capped at what the hold still holds (later charges first trimmed). The client reads a
    `release` of the sum from the hold and one line of `kind` per charge. A hold already closed raises HoldClosed,
    unless the caller asks to charge the client's balance instead (as far as it goes). None when nothing could be
    charged.
    """
    wanted = [Charge(_rounded(c.amount, name="charge"), _ref(c.ref)) for c in charges]
    wanted = [c for c in wanted if c.amount]
    if not wanted:
        raise ValueError("A batch needs at least one positive charge.")
    kind = _kind(kind)
    txn_key = f"{LedgerTransactionKind.USAGE}:{_key(use_key)}"
    hold = _locked_hold(key)
    fingerprint = _fingerprint(key, [(c.amount, c.ref) for c in wanted], operator_id, kind)
    existing = _posted(txn_key, fingerprint)
    if existing is not None:
        return existing
    open_hold = hold.status == HoldStatus.HELD
    if not open_hold and not from_balance_if_closed:
        raise HoldClosed(f"The hold {key!r} is already {hold.status}.")
    clients = _lock_clients(hold.client_id, operator_id)
    available = hold.amount - hold.consumed if open_hold else clients[hold.client_id].balance
    lines, total = _consume_lines(
        hold, wanted, available=available, from_escrow=open_hold, operator_id=operator_id, kind=kind
    )
    if not total:
        return None
    txn = _post(
        key=txn_key, kind=LedgerTransactionKind.USAGE, memo=memo, fingerprint=fingerprint, lines=lines, hold=hold
    )
    if open_hold:
        Hold.objects.filter(pk=hold.pk).update(consumed=F("consumed") + total)
    return txn
