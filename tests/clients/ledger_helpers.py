"""Independent checks of the books, straight from the entry table, shared by the ledger tests."""

from decimal import Decimal

from django.db.models import Count, F, Q, Sum

from clients.choices import HoldStatus
from clients.models import Client, Hold, LedgerEntry, LedgerTransaction


def account_sum(kind: str) -> Decimal:
    """The balance of a system account (or of all client accounts, for "client")."""
    return LedgerEntry.objects.filter(account__kind=kind).aggregate(s=Sum("amount"))["s"] or Decimal(0)


def client_ledger_balance(client: Client) -> Decimal:
    return LedgerEntry.objects.filter(account__client=client).aggregate(s=Sum("amount"))["s"] or Decimal(0)


def assert_books_balanced() -> None:
    """Every transaction has two or more entries summing to zero; the whole ledger sums to zero; every cached client
    balance equals its entries and is not negative; escrow equals the open holds."""
    bad = LedgerTransaction.objects.annotate(n=Count("entries"), total=Sum("entries__amount")).filter(
        Q(n__lt=2) | ~Q(total=0)
    )
    assert not bad.exists(), list(bad.values("key", "n", "total"))
    assert (LedgerEntry.objects.aggregate(s=Sum("amount"))["s"] or 0) == 0
    for client in Client.objects.all():
        assert client.balance >= 0, client
        assert client.balance == client_ledger_balance(client), client
    open_holds = Hold.objects.filter(status=HoldStatus.HELD).aggregate(s=Sum(F("amount") - F("consumed")))["s"] or 0
    assert account_sum("escrow") == open_holds
