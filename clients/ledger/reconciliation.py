"""Checking: every cached figure held against the ledger."""

from dataclasses import dataclass
from decimal import Decimal

from django.db import connection
from django.db.models import DecimalField, F, Sum, Value
from django.db.models.functions import Coalesce

from clients.choices import HoldStatus, LedgerAccountKind
from clients.models import Client, Hold, LedgerAccount, LedgerEntry


@dataclass(frozen=True)
class BalanceMismatch:
    """A cached figure that disagrees with the ledger: a client's balance, or the open holds against escrow."""

    account: str  # "client:<id>" or "escrow"
    client_id: int | None
    cached: Decimal  # Client.balance, or the sum of open holds
    ledger: Decimal  # the sum of the account's entries

    def __str__(self) -> str:
        return f"{self.account}: cached {self.cached} != ledger {self.ledger}"


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
