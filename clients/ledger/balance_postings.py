"""Postings on a client's balance with no hold: an admin credit, and what the platform itself sells or pays
(plans: docs/API.md §12)."""

from decimal import Decimal

from django.db import transaction

from clients.choices import LedgerAccountKind, LedgerEntryKind, LedgerTransactionKind
from clients.errors import InsufficientFunds
from clients.ledger.accounts import _client_account, _Line, _lock_clients, _move, _system_account
from clients.ledger.arguments import (
    PLATFORM_KINDS,
    _exact,
    _fingerprint,
    _key,
    _kind,
    _ref,
    _rounded,
    _transaction_kind,
    split_revenue,
)
from clients.ledger.postings import _post, _post_to_client, _posted
from clients.models import LedgerTransaction


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
    return _post_to_client(
        client_id=client_id,
        key=txn_key,
        kind=LedgerTransactionKind.CREDIT,
        memo=memo,
        fingerprint=fingerprint,
        source=_system_account(LedgerAccountKind.FUNDING),
        amount=amount,
        line_kind=kind,
        ref=ref,
    )


@transaction.atomic
def charge(
    *, client_id: int, amount: Decimal, key: str, kind: str, ref: str | None = None, memo: str = ""
) -> LedgerTransaction:
    """Charge a client's available balance for what the platform itself sells (a plan's month, kind
    `subscription`): a line of minus `amount` on its account, the same to the platform. InsufficientFunds when the
    balance is short; keyed by `key` (a retried renewal charges once)."""
    amount = _exact(amount, name="amount")
    txn_kind, ref = _transaction_kind(kind, PLATFORM_KINDS, what="a kind the platform charges or pays"), _ref(ref)
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
        lines=_move(_client_account(client_id), _system_account(LedgerAccountKind.PLATFORM), amount, kind, ref),
    )


@transaction.atomic
def platform_pay(*, operator_id: int, cost: Decimal, key: str, ref: str, memo: str = "") -> LedgerTransaction | None:
    """The platform pays the operator's and the treasury's shares of `cost` from its own account (a plan-covered
    request, kind `plan_usage`: the client pays nothing and the platform forgoes its own share). None when there is
    nothing to pay. Keyed by `key` (a retried finish pays once); LedgerKeyReused on other arguments."""
    shares = split_revenue(_rounded(cost, name="cost"))
    paid = shares["operator"] + shares["treasury"]
    if paid == 0:
        return None
    kind = LedgerEntryKind.PLAN_USAGE
    txn_key = f"{LedgerTransactionKind.PLAN_USAGE}:{_key(key)}"
    fingerprint = _fingerprint(operator_id, shares["operator"], shares["treasury"], kind, ref)
    _lock_clients(operator_id)
    existing = _posted(txn_key, fingerprint)
    if existing is not None:
        return existing
    return _post(
        key=txn_key,
        kind=LedgerTransactionKind.PLAN_USAGE,
        memo=memo,
        fingerprint=fingerprint,
        lines=[
            _Line(_system_account(LedgerAccountKind.PLATFORM), -paid, kind, ref),
            _Line(_client_account(operator_id), shares["operator"], kind, ref),
            _Line(_system_account(LedgerAccountKind.TREASURY), shares["treasury"], kind, ref),
        ],
    )
