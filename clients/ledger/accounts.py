"""Accounts, row locks and the lines of a posting: the system and client accounts, the external ones
(clearing, payouts), a charge's earnings split into lines and a hold's money given back."""

from dataclasses import dataclass
from decimal import Decimal

from clients.choices import LedgerAccountKind, LedgerEntryKind
from clients.ledger.arguments import split_revenue
from clients.models import Client, Hold, LedgerAccount


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


def _move(
    source: LedgerAccount, destination: LedgerAccount, amount: Decimal, kind: str, ref: str | None
) -> list[_Line]:
    """The two lines of `amount` moved from `source` to `destination` (the source's line first)."""
    return [_Line(source, -amount, kind, ref), _Line(destination, amount, kind, ref)]


def _give_back(hold: Hold, amount: Decimal, *, kind: str = LedgerEntryKind.RELEASE) -> list[_Line]:
    """Lines moving `amount` of a hold from escrow back to its client's account."""
    return _move(_system_account(LedgerAccountKind.ESCROW), _client_account(hold.client_id), amount, kind, hold.ref)


EXTERNAL_ACCOUNTS = (LedgerAccountKind.STRIPE_CLEARING, LedgerAccountKind.X402_CLEARING, LedgerAccountKind.PAYOUTS)


def _external(account: str) -> LedgerAccount:
    if account not in EXTERNAL_ACCOUNTS:
        raise ValueError(f"{account!r} is not an external account.")
    return _system_account(account)
