"""Reads of clients and keys; each returns a QuerySet or raises 404 for rows the caller may not see."""

from decimal import Decimal

from django.db.models import DecimalField, F, OuterRef, QuerySet, Subquery, Sum, Value
from django.db.models.functions import Coalesce

from clients import ledger
from clients.models import ApiKey, Client, Hold, LedgerEntry
from core.errors import NotFound

MONEY = DecimalField(max_digits=20, decimal_places=6)


def client_list_visible(*, viewer: Client) -> QuerySet[Client]:
    """Admins see every active client; anyone else only themselves. Carries the newest key's last 4 and `held`."""
    newest_key = ApiKey.objects.filter(client=OuterRef("pk"), revoked_at__isnull=True).order_by("-created_at", "-id")
    held = (
        Hold.objects.filter(ledger.held_q(), client=OuterRef("pk"))
        .values("client")
        .annotate(s=Sum(F("amount") - F("consumed")))
        .values("s")
    )
    qs = (
        Client.objects.select_related("user")
        .filter(user__is_active=True)
        .annotate(
            newest_key_last4=Subquery(newest_key.values("last4")[:1]),
            held=Coalesce(Subquery(held, output_field=MONEY), Value(Decimal(0)), output_field=MONEY),
        )
    )
    return qs if viewer.is_admin else qs.filter(pk=viewer.pk)


def client_get_visible(*, viewer: Client, client_id: int) -> Client:
    client = client_list_visible(viewer=viewer).filter(pk=client_id).first()
    if client is None:
        raise NotFound("No client with this id.")
    return client


def api_key_list_active(*, client: Client) -> QuerySet[ApiKey]:
    return ApiKey.objects.filter(client=client, revoked_at__isnull=True)


def client_newest_key_last4(*, client: Client) -> str:
    last4 = getattr(client, "newest_key_last4", None)
    if last4 is None:
        last4 = api_key_list_active(client=client).values_list("last4", flat=True).first() or ""
    return last4


def client_held(*, client: Client) -> Decimal:
    """What the client has on hold (API.md §10 `held`): the annotation of client_list_visible, or a query."""
    held = getattr(client, "held", None)
    return held if held is not None else ledger.held_of(client_id=client.pk)


def ledger_entry_list_visible(*, viewer: Client) -> QuerySet[LedgerEntry]:
    """Admins see every entry (system accounts too); anyone else only the entries of its own account."""
    # `created_at` (the transaction's) is annotated so that lists can be ordered by it.
    qs = LedgerEntry.objects.select_related("transaction", "account").annotate(created_at=F("transaction__created_at"))
    return qs if viewer.is_admin else qs.filter(account__client=viewer)
