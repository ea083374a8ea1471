"""What the platform pays for a plan-covered request (API.md §12: "cost it nothing").

A covered request places no hold and posts no charge on its client: when it finishes with a cost, the platform
pays that cost's operator share (70%) and treasury share (5%) from its own account, in one `plan_usage`
transaction keyed by the request's hold key (a retried finish pays once). The platform's own 25% is simply not
earned. `cost` is what the request would have cost the client (its row's `cost`).

The posting is written with clients/ledger.py's helpers (`_post` and its kin), as ledger's own postings are, so it
keeps the ledger's contract (zero-sum, keyed, client rows locked, cached balances moved). It belongs in the ledger
as a public `platform_pay`; it lives here only because the ledger is being split into a package as this is
written — move it there verbatim when that lands.
"""

from decimal import Decimal

from django.db import transaction

from clients import ledger
from clients.choices import LedgerAccountKind, LedgerEntryKind, LedgerTransactionKind
from clients.models import LedgerTransaction


@transaction.atomic
def plan_usage_pay(*, operator_id: int, cost: Decimal, key: str, ref: str, memo: str = "") -> LedgerTransaction | None:
    """The platform pays the operator and treasury shares of a covered request's `cost` (kind `plan_usage`).
    None when there is nothing to pay (no cost). Idempotent by `key`; LedgerKeyReused on other arguments."""
    shares = ledger.split_revenue(ledger._rounded(cost, name="cost"))
    if shares["operator"] + shares["treasury"] == 0:
        return None
    kind = LedgerEntryKind.PLAN_USAGE
    txn_key = f"{LedgerTransactionKind.PLAN_USAGE}:{ledger._key(key)}"
    fingerprint = ledger._fingerprint(operator_id, shares["operator"], shares["treasury"], kind, ref)
    ledger._lock_clients(operator_id)
    existing = ledger._posted(txn_key, fingerprint)
    if existing is not None:
        return existing
    return ledger._post(
        key=txn_key,
        kind=LedgerTransactionKind.PLAN_USAGE,
        memo=memo,
        fingerprint=fingerprint,
        lines=[
            ledger._Line(
                ledger._system_account(LedgerAccountKind.PLATFORM),
                -(shares["operator"] + shares["treasury"]),
                kind,
                ref,
            ),
            ledger._Line(ledger._client_account(operator_id), shares["operator"], kind, ref),
            ledger._Line(ledger._system_account(LedgerAccountKind.TREASURY), shares["treasury"], kind, ref),
        ],
    )
