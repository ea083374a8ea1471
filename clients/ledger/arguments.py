"""What a posting function is given: amounts, keys, kinds and refs checked, the fingerprint of a
call, and the revenue split."""

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import ROUND_DOWN, ROUND_HALF_UP, Decimal, InvalidOperation

from clients.choices import LedgerEntryKind, LedgerTransactionKind

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


# The transaction kind of each line kind that only its own functions post: money in from outside and out to
# outside (`deposit`, `withdraw`, `hold_pay_out`; payments/: docs/API.md §15), and what the platform itself sells
# or pays (`charge`, `platform_pay`; plans: docs/API.md §12).
OUTSIDE_KINDS = {
    LedgerEntryKind.TOPUP: LedgerTransactionKind.TOPUP,
    LedgerEntryKind.X402: LedgerTransactionKind.X402,
    LedgerEntryKind.PAYOUT: LedgerTransactionKind.PAYOUT,
}
PLATFORM_KINDS = {
    LedgerEntryKind.SUBSCRIPTION: LedgerTransactionKind.SUBSCRIPTION,
    LedgerEntryKind.PLAN_USAGE: LedgerTransactionKind.PLAN_USAGE,
}


def _transaction_kind(kind: str, kinds: Mapping[LedgerEntryKind, LedgerTransactionKind], *, what: str) -> str:
    """The transaction kind that posts a line of `kind`, one of `kinds` (`what` names them in the error)."""
    if kind not in kinds:
        raise ValueError(f"{kind!r} is not {what} ({', '.join(kinds)}).")
    return kinds[LedgerEntryKind(kind)]
