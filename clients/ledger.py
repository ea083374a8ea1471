"""The money layer: the only module that writes money (STYLE.md §5).

Double entry: every posting is one `LedgerTransaction` whose `LedgerEntry` lines sum to exactly zero, and an
account's balance is the sum of its lines. Signs are from the account's side: a client's account is what it may
spend now, escrow is what is held, platform and treasury are earnings, and funding (outside money) goes negative by
everything ever deposited, so all accounts together always sum to zero. `Client.balance` caches the sum of the
client's account and is changed by an UPDATE in the same database transaction as the lines, with the client row
locked.

The contract every posting function keeps (API.md §9, "The ledger's one contract"):

- **Ids in, keyword-only.** Clients are named by id (`client_id`, `operator_id`); amounts are `Decimal` (or int)
  with at most 6 decimal places (a computed charge is rounded half up to 6); floats are refused.
- **`kind` and `ref` on every line.** A function that posts a charge or a deposit takes `kind` (what it is: a
  `LedgerEntryKind`, e.g. `inference`, `rental`) and `ref` (the object it is for, `"<type>:<id>"`, or None where
  it names nothing). Each line carries both, so `GET client/ledger/` shows every charge as its own line of minus
  exactly the charge. A hold keeps its `kind` and `ref`; its release and refund lines carry its `ref`.
- **Charges are paid from the client's account.** A hold is money moved to escrow; settling or consuming it first
  gives the held money back to the client's account (a `release` line) and then charges it from there (a line of
  the charge's kind), in one transaction. So the payer's lines always read: hold, release, charge. A hold placed
  with a charge's kind instead of `hold` (a rental paid up front) *is* the charge: settling it refunds the unused
  part (a `refund` line) and pays the used part to the operator. Lines are never netted per account: an operator
  paying its own node sees its charge and its earnings apart.
- **Idempotent by key.** Each call names its posting with `key` (for a hold: the hold's key). A retry with the same
  key and the same arguments returns what the first call posted and moves nothing; the same key with other
  arguments raises `LedgerKeyReused` (409). A key that names no hold raises `HoldNotFound` (409) everywhere; a hold
  already closed by something else raises `HoldClosed` (409). All three are `DomainError`s: never a 500.
- **No policy.** What to do when a hold is gone (charge the balance instead, give up) is the caller's to decide.

The functions: `credit`, `hold_place`, `hold_settle`, `hold_consume`, `hold_reduce`, `hold_release`, `hold_top_up`
(more money into an open hold, keyed by its `top_up_key`, its lines of the hold's kind and ref), and money in and
out of the books for payments/ (`deposit`, `withdraw`: kinds `topup`/`x402`; `hold_pay_out`: kind `payout`).

Splits: a charge pays the operator 70% and the treasury 5% (each rounded down to 0.000001) and the platform the
rest, rounding included; a charge with no operator (`operator_id=None`) is the platform's.
"""

import hashlib
import json
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import ROUND_DOWN, ROUND_HALF_UP, Decimal, InvalidOperation

from django.db import IntegrityError, connection, transaction
from django.db.models import DecimalField, F, Q, Sum, Value
from django.db.models.functions import Coalesce
from django.utils import timezone

from clients.choices import HoldStatus, LedgerAccountKind, LedgerEntryKind, LedgerTransactionKind
from clients.errors import HoldClosed, HoldNotFound, InsufficientFunds, LedgerKeyReused
from clients.models import Client, Hold, LedgerAccount, LedgerEntry, LedgerTransaction

SPLIT = {"operator": Decimal("0.70"), "treasury": Decimal("0.05")}  # platform: the rest (25% + rounding)
Q6 = Decimal("0.000001")
MAX_AMOUNT = Decimal(10) ** 14  # DecimalField(max_digits=20, decimal_places=6) holds less than this
MAX_KEY_LENGTH = 200  # Hold.key; a transaction's key is "<kind>:<caller key>"
MAX_REF_LENGTH = 64
# Kinds a caller may not give a charge or a credit: they name what the ledger itself writes, or money in and out
# of the books, which only deposit, withdraw and hold_pay_out post.
_RESERVED_KINDS = {
    LedgerEntryKind.RELEASE,
    LedgerEntryKind.REFUND,
    LedgerEntryKind.SETTLE,
    LedgerEntryKind.USAGE,
    LedgerEntryKind.TOPUP,
    LedgerEntryKind.X402,
    LedgerEntryKind.PAYOUT,
}


@dataclass(frozen=True)
class Charge:
    """One charge of a batch (`hold_consume`): its amount and the object it pays for."""

    amount: Decimal
    ref: str | None = None


@dataclass(frozen=True)
class BalanceMismatch:
    """A cached figure that disagrees with the ledger: a client's balance, or the open holds against escrow."""

    account: str  # "client:<id>" or "escrow"
    client_id: int | None
    cached: Decimal  # Client.balance, or the sum of open holds
    ledger: Decimal  # the sum of the account's entries

    def __str__(self) -> str:
        return f"{self.account}: cached {self.cached} != ledger {self.ledger}"


# --- Arguments ---------------------------------------------------------------------------------------------------


def _decimal(amount: Decimal | int, *, name: str) -> Decimal:
    if isinstance(amount, bool) or not isinstance(amount, Decimal | int):
        raise TypeError(f"{name} must be a Decimal, not {type(amount).__name__}.")
    value = Decimal(amount)
    if not value.is_finite() or abs(value) >= MAX_AMOUNT:
        raise ValueError(f"{name} is out of range: {amount}.")
    return value


def _exact(amount: Decimal | int, *, name: str) -> Decimal:
    """A positive amount with at most 6 decimal places, which the ledger stores without rounding."""
    value = _decimal(amount, name=name)
    try:
        exact = value.quantize(Q6) == value
    except InvalidOperation:
        exact = False
    if not exact:
        raise ValueError(f"{name} has more than 6 decimal places: {amount}.")
    if value <= 0:
        raise ValueError(f"{name} must be positive: {amount}.")
    return value.quantize(Q6)


def _rounded(amount: Decimal | int, *, name: str) -> Decimal:
    """A charge computed from prices may carry more places than money does: rounded half up to 0.000001."""
    value = _decimal(amount, name=name).quantize(Q6, ROUND_HALF_UP)
    if value < 0:
        raise ValueError(f"{name} must not be negative: {value}.")
    return value


def _key(key: str) -> str:
    if not isinstance(key, str) or not key or len(key) > MAX_KEY_LENGTH:
        raise ValueError(f"A ledger key is a string of 1 to {MAX_KEY_LENGTH} characters.")
    return key


def _kind(kind: str, *, hold: bool = False) -> str:
    """A line kind a caller may give: a LedgerEntryKind member (`hold` only where a hold is placed)."""
    if kind not in LedgerEntryKind.values or kind in _RESERVED_KINDS or (kind == LedgerEntryKind.HOLD and not hold):
        raise ValueError(f"{kind!r} is not a kind a caller may post.")
    return kind


def _ref(ref: str | None) -> str | None:
    if ref is not None and (not isinstance(ref, str) or not ref or len(ref) > MAX_REF_LENGTH):
        raise ValueError(f"A ledger ref is None or a string of 1 to {MAX_REF_LENGTH} characters.")
    return ref


def _fingerprint(*args: object) -> str:
    return hashlib.sha256(json.dumps([str(a) for a in args]).encode()).hexdigest()


def split_revenue(total: Decimal) -> dict[str, Decimal]:
    """Split a charge: operator 70% and treasury 5% rounded down to 0.000001, platform the rest; sums to total."""
    total = _decimal(total, name="total")
    if total < 0 or total.quantize(Q6) != total:
        raise ValueError(f"total must be non-negative with at most 6 decimal places: {total}.")
    shares = {role: (total * part).quantize(Q6, ROUND_DOWN) for role, part in SPLIT.items()}
    shares["platform"] = (total - sum(shares.values())).quantize(Q6)  # absorbs the rounding
    return {role: shares[role] for role in ("operator", "platform", "treasury")}


# --- Accounts and postings ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Line:
    account: LedgerAccount
    amount: Decimal
    kind: str
    ref: str | None = None


def _system_account(kind: str) -> LedgerAccount:
    # Created on first use; the partial unique constraint makes a concurrent first use find the winner's row.
    account, _ = LedgerAccount.objects.get_or_create(kind=kind, client=None)
    return account


def _client_account(client_id: int) -> LedgerAccount:
    account, _ = LedgerAccount.objects.get_or_create(client_id=client_id, defaults={"kind": LedgerAccountKind.CLIENT})
    return account


def _lock_clients(*client_ids: int | None) -> dict[int, Client]:
    """Lock the clients' rows, in id order so two postings touching the same two clients cannot deadlock."""
    ids = {pk for pk in client_ids if pk is not None}
    rows = Client.objects.select_for_update().filter(pk__in=ids).order_by("pk").only("pk", "balance")
    found = {row.pk: row for row in rows}
    missing = ids - set(found)
    if missing:
        raise ValueError(f"No client has the id {min(missing)}.")
    return found


def _split_lines(total: Decimal, *, operator_id: int | None, kind: str, ref: str | None) -> list[_Line]:
    """The earnings side of a charge of `total` (70/25/5, or all to the platform with no operator)."""
    if operator_id is None:
        return [_Line(_system_account(LedgerAccountKind.PLATFORM), total, kind, ref)]
    shares = split_revenue(total)
    return [
        _Line(_client_account(operator_id), shares["operator"], kind, ref),
        _Line(_system_account(LedgerAccountKind.PLATFORM), shares["platform"], kind, ref),
        _Line(_system_account(LedgerAccountKind.TREASURY), shares["treasury"], kind, ref),
    ]


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


def _give_back(hold: Hold, amount: Decimal, *, kind: str = LedgerEntryKind.RELEASE) -> list[_Line]:
    """Lines moving `amount` of a hold from escrow back to its client's account."""
    return [
        _Line(_system_account(LedgerAccountKind.ESCROW), -amount, kind, hold.ref),
        _Line(_client_account(hold.client_id), amount, kind, hold.ref),
    ]


# --- Reading -----------------------------------------------------------------------------------------------------


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


# --- Posting -----------------------------------------------------------------------------------------------------


@transaction.atomic
def credit(
    *, client_id: int, amount: Decimal, key: str, kind: str = LedgerEntryKind.CREDIT, ref: str | None = None,
    memo: str = "",
) -> LedgerTransaction:  # fmt: skip
    """Add outside money to a client's balance (an admin top-up): one line of `kind` on its account."""
    amount = _exact(amount, name="amount")
    kind, ref = _kind(kind), _ref(ref)
    txn_key = f"{LedgerTransactionKind.CREDIT}:{_key(key)}"
    fingerprint = _fingerprint(client_id, amount, kind, ref)
    _lock_clients(client_id)  # a concurrent retry waits here, then finds the first one's transaction
    existing = _posted(txn_key, fingerprint)
    if existing is not None:
        return existing
    return _post(
        key=txn_key,
        kind=LedgerTransactionKind.CREDIT,
        memo=memo,
        fingerprint=fingerprint,
        lines=[
            _Line(_system_account(LedgerAccountKind.FUNDING), -amount, kind, ref),
            _Line(_client_account(client_id), amount, kind, ref),
        ],
    )


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
        lines=[
            _Line(_client_account(client_id), -amount, kind, ref),
            _Line(_system_account(LedgerAccountKind.ESCROW), amount, kind, ref),
        ],
        hold=hold,
    )
    return hold


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
    _lock_clients(hold.client_id)
    txn = _post(
        key=txn_key,
        kind=LedgerTransactionKind.RELEASE,
        memo=memo,
        fingerprint=fingerprint,
        lines=_give_back(hold, hold.amount - new_amount),
        hold=hold,
    )
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
        _lock_clients(hold.client_id)
        txn = _post(
            key=txn_key,
            kind=LedgerTransactionKind.RELEASE,
            memo=memo,
            fingerprint=fingerprint,
            lines=_give_back(hold, still_held),
            hold=hold,
        )
    _close(hold, HoldStatus.RELEASED)
    return txn


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
        lines=[
            _Line(_client_account(hold.client_id), -amount, hold.kind, hold.ref),
            _Line(_system_account(LedgerAccountKind.ESCROW), amount, hold.kind, hold.ref),
        ],
        hold=hold,
    )
    Hold.objects.filter(pk=hold.pk).update(amount=F("amount") + amount)
    hold.refresh_from_db()
    return hold


def hold_get(*, key: str) -> Hold | None:
    """The hold with this key (a read: what it holds is `amount - consumed` while it is held)."""
    return Hold.objects.filter(key=_key(key)).first()


# --- Money in from outside and out to outside (payments/: docs/API.md §15) --------------------------------------
# Each moves money between a client's account and an external system account (a clearing account for money that
# came in through Stripe or x402, the payouts account for money paid out), in one balanced transaction whose lines
# carry `kind` (`topup`, `x402`, `payout`) and `ref` (`topup:<id>`, `x402:<id>`, `payout:<id>`).

EXTERNAL_ACCOUNTS = (LedgerAccountKind.STRIPE_CLEARING, LedgerAccountKind.X402_CLEARING, LedgerAccountKind.PAYOUTS)
# The posting of each outside kind is a transaction of the same kind.
_OUTSIDE_KINDS = {
    LedgerEntryKind.TOPUP: LedgerTransactionKind.TOPUP,
    LedgerEntryKind.X402: LedgerTransactionKind.X402,
    LedgerEntryKind.PAYOUT: LedgerTransactionKind.PAYOUT,
}


def _external(account: str) -> LedgerAccount:
    if account not in EXTERNAL_ACCOUNTS:
        raise ValueError(f"{account!r} is not an external account.")
    return _system_account(account)


def _outside_kind(kind: str) -> str:
    if kind not in _OUTSIDE_KINDS:
        raise ValueError(f"{kind!r} is not a kind of money in or out ({', '.join(_OUTSIDE_KINDS)}).")
    return _OUTSIDE_KINDS[LedgerEntryKind(kind)]


@transaction.atomic
def deposit(
    *, client_id: int, amount: Decimal, key: str, kind: str, ref: str | None, source: str, memo: str = ""
) -> LedgerTransaction:
    """Credit money that came in from outside (`source`: a clearing account) to a client: one line of `kind`.

    Keyed by `key` (a webhook delivered again, a concurrent replay: the first posting, nothing credited again).
    """
    amount = _exact(amount, name="amount")
    txn_kind, ref, source_account = _outside_kind(kind), _ref(ref), _external(source)
    txn_key = f"{txn_kind}:{_key(key)}"
    fingerprint = _fingerprint(client_id, amount, kind, ref, source)
    _lock_clients(client_id)  # a concurrent retry waits here, then finds the first one's transaction
    existing = _posted(txn_key, fingerprint)
    if existing is not None:
        return existing
    return _post(
        key=txn_key,
        kind=txn_kind,
        memo=memo,
        fingerprint=fingerprint,
        lines=[_Line(source_account, -amount, kind, ref), _Line(_client_account(client_id), amount, kind, ref)],
    )


@transaction.atomic
def withdraw(
    *, client_id: int, amount: Decimal, key: str, kind: str, ref: str | None, destination: str, memo: str = ""
) -> LedgerTransaction | None:
    """Take up to `amount` of a client's available balance back out to `destination` (a deposit that did not
    arrive after all): one line of `kind`. Keyed by `key`; None when the balance had nothing to take."""
    amount = _exact(amount, name="amount")
    txn_kind, ref, destination_account = _outside_kind(kind), _ref(ref), _external(destination)
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
        lines=[_Line(_client_account(client_id), -taken, kind, ref), _Line(destination_account, taken, kind, ref)],
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
    txn_kind, ref, destination_account = _outside_kind(kind), _ref(ref), _external(destination)
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
                _Line(_client_account(hold.client_id), -still_held, kind, ref),
                _Line(destination_account, still_held, kind, ref),
            ],
            hold=hold,
        )
    _close(hold, HoldStatus.SETTLED)
    return txn


# --- Checking ----------------------------------------------------------------------------------------------------


def reconcile() -> list[BalanceMismatch]:
    """Every cached figure that disagrees with the ledger: client balances, and escrow against the open holds."""
    zero = Value(Decimal(0), output_field=DecimalField(max_digits=20, decimal_places=6))
    # One statement each, so each compares figures from one snapshot even while postings go on.
    clients = (
        Client.objects.annotate(ledger=Coalesce(Sum("ledger_account__entries__amount"), zero))
        .exclude(balance=F("ledger"))
        .order_by("pk")
        .values_list("pk", "balance", "ledger")
    )
    found = [BalanceMismatch(f"client:{pk}", pk, cached, ledger) for pk, cached, ledger in clients]
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            SELECT
                (SELECT coalesce(sum(e.amount), 0) FROM {LedgerEntry._meta.db_table} e
                   JOIN {LedgerAccount._meta.db_table} a ON a.id = e.account_id WHERE a.kind = %s),
                (SELECT coalesce(sum(h.amount - h.consumed), 0) FROM {Hold._meta.db_table} h
                  WHERE h.status = %s)
            """,  # noqa: S608 - table names from the models, values bound
            [LedgerAccountKind.ESCROW, HoldStatus.HELD],
        )
        escrow, open_holds = cursor.fetchone()
    if escrow != open_holds:
        found.append(BalanceMismatch(LedgerAccountKind.ESCROW.value, None, Decimal(open_holds), Decimal(escrow)))
    return found


# --- Plans (docs/API.md §12) ----------------------------------------------------------------------------------

# What a plan posts, by the line kind: the transaction kind.
_PLATFORM_KINDS = {
    LedgerEntryKind.SUBSCRIPTION: LedgerTransactionKind.SUBSCRIPTION,
    LedgerEntryKind.PLAN_USAGE: LedgerTransactionKind.PLAN_USAGE,
}


def _platform_kind(kind: str) -> str:
    if kind not in _PLATFORM_KINDS:
        raise ValueError(f"{kind!r} is not a kind the platform charges or pays ({', '.join(_PLATFORM_KINDS)}).")
    return _PLATFORM_KINDS[LedgerEntryKind(kind)]


@transaction.atomic
def charge(
    *, client_id: int, amount: Decimal, key: str, kind: str, ref: str | None = None, memo: str = ""
) -> LedgerTransaction:
    """Charge a client's available balance for what the platform itself sells (a plan's month, kind
    `subscription`): a line of minus `amount` on its account, the same to the platform. InsufficientFunds when the
    balance is short; keyed by `key` (a retried renewal charges once)."""
    amount = _exact(amount, name="amount")
    txn_kind, ref = _platform_kind(kind), _ref(ref)
    txn_key = f"{txn_kind}:{_key(key)}"
    fingerprint = _fingerprint(client_id, amount, kind, ref)
    locked = _lock_clients(client_id)[client_id]
    existing = _posted(txn_key, fingerprint)
    if existing is not None:
        return existing
    if locked.balance < amount:
        raise InsufficientFunds(f"This costs {amount}; the available balance is {locked.balance}.")
    return _post(
        key=txn_key,
        kind=txn_kind,
        memo=memo,
        fingerprint=fingerprint,
        lines=[
            _Line(_client_account(client_id), -amount, kind, ref),
            _Line(_system_account(LedgerAccountKind.PLATFORM), amount, kind, ref),
        ],
    )


@transaction.atomic
def platform_cover(
    *, client_id: int, amount: Decimal, key: str, kind: str, ref: str | None = None, memo: str = ""
) -> LedgerTransaction:
    """The platform pays a charge for the client (a plan-covered request, kind `plan_usage`): a line of `amount`
    back on the client's account, minus the same on the platform's. The charge's operator and treasury lines stay
    as they were, so the platform has paid their shares and the client nothing. Keyed by `key`."""
    amount = _exact(amount, name="amount")
    txn_kind, ref = _platform_kind(kind), _ref(ref)
    txn_key = f"{txn_kind}:{_key(key)}"
    fingerprint = _fingerprint(client_id, amount, kind, ref)
    _lock_clients(client_id)
    existing = _posted(txn_key, fingerprint)
    if existing is not None:
        return existing
    return _post(
        key=txn_key,
        kind=txn_kind,
        memo=memo,
        fingerprint=fingerprint,
        lines=[
            _Line(_system_account(LedgerAccountKind.PLATFORM), -amount, kind, ref),
            _Line(_client_account(client_id), amount, kind, ref),
        ],
    )
