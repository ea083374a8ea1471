"""What the platform pays for a plan-covered request (API.md §12: "cost it nothing").

A covered request places no hold and posts no charge on its client: when it finishes with a cost, the platform
pays that cost's operator share (70%) and treasury share (5%) from its own account, in one `plan_usage`
transaction keyed by the request's key (a retried finish pays once). The platform's own 25% is simply not
earned. `cost` is what the request would have cost the client (its row's `cost`).
"""

from decimal import Decimal

from clients import ledger
from clients.models import LedgerTransaction


def plan_usage_pay(*, operator_id: int, cost: Decimal, key: str, ref: str, memo: str = "") -> LedgerTransaction | None:
    """The platform pays the operator and treasury shares of a covered request's `cost` (kind `plan_usage`).
    None when there is nothing to pay (no cost). Idempotent by `key`; LedgerKeyReused on other arguments."""
    return ledger.platform_pay(operator_id=operator_id, cost=cost, key=key, ref=ref, memo=memo)
