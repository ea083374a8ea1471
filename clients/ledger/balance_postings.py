"""Postings on a client's balance with no hold: an admin credit, and what the platform itself sells or pays
(plans: docs/API.md §12)."""

from decimal import Decimal

from django.db import transaction

from clients.choices import LedgerAccountKind, LedgerEntryKind, LedgerTransactionKind
from clients.errors import InsufficientFunds
from clients.ledger.accounts import _client_account, _lock_clients, _move, _system_account
from clients.ledger.arguments import PLATFORM_KINDS, _exact, _fingerprint, _key, _kind, _ref, _transaction_kind
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
def platform_cover(
    *, client_id: int, amount: Decimal, key: str, kind: str, ref: str | None = None, memo: str = ""
) -> LedgerTransaction:
    """The platform pays a charge for the client (a plan-covered request, kind `plan_usage`): a line of `amount`
    back on the client's account, minus the same on the platform's. The charge's operator and treasury lines stay
    as they were, so the platform has paid their shares and the client nothing. Keyed by `key`."""
    amount = _exact(amount, name="amount")
    txn_kind, ref = _transaction_kind(kind, PLATFORM_KINDS, what="a kind the platform charges or pays"), _ref(ref)
    txn_key = f"{txn_kind}:{_key(key)}"
    fingerprint = _fingerprint(client_id, amount, kind, ref)
    return _post_to_client(
        client_id=client_id,
        key=txn_key,
        kind=txn_kind,
        memo=memo,
        fingerprint=fingerprint,
        source=_system_account(LedgerAccountKind.PLATFORM),
        amount=amount,
        line_kind=kind,
        ref=ref,
    )
