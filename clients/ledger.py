"""The money layer: the only module that writes money (STYLE.md §5).

Double entry: every posting is one `LedgerTransaction` whose `LedgerEntry` legs sum to exactly zero, and an
account's balance is the sum of its entries. Signs are from the account's side: a client's account is what it may
spend, escrow is what is held, platform and treasury are earnings, and funding (outside money) goes negative by
everything ever deposited, so all accounts together always sum to zero.

`Client.balance` caches the sum of the client's account (its available balance) and is changed by an UPDATE in the
same database transaction as the entries, with the client row locked. Each caller key is posted once: a retry of
`credit`, `hold_place`, `hold_settle`, `hold_consume` or `hold_release` moves no money again.

A hold is settled once (`hold_settle`) or, as a lease, charged many times while it stays open (`hold_consume`,
which counts what it took in `Hold.consumed`) and then released; either way escrow always equals what the open
holds still hold.

Amounts are `Decimal` with at most 6 decimal places (ints are accepted; floats never).
"""

from collections import defaultdict
from dataclasses import dataclass
from decimal import ROUND_DOWN, ROUND_HALF_UP, Decimal, InvalidOperation

from django.db import IntegrityError, connection, transaction
from django.db.models import DecimalField, F, Sum, Value
from django.db.models.functions import Coalesce
from django.utils import timezone

from clients.choices import HoldStatus, LedgerAccountKind, LedgerTransactionKind
from clients.errors import InsufficientFunds, LedgerKeyReused
from clients.models import Client, Hold, LedgerAccount, LedgerEntry, LedgerTransaction

SPLIT = {"operator": Decimal("0.70"), "treasury": Decimal("0.05")}  # platform: the rest (25% + rounding)
Q6 = Decimal("0.000001")
MAX_AMOUNT = Decimal(10) ** 14  # DecimalField(max_digits=20, decimal_places=6) holds less than this
MAX_KEY_LENGTH = 200  # Hold.key; a transaction's key is "<kind>:<caller key>"


class HoldNotFound(LookupError):
    """No hold has this key: settling money that was never held is a bug in the caller."""


@dataclass(frozen=True)
class BalanceMismatch:
    """A cached figure that disagrees with the ledger: a client's balance, or the open holds against escrow."""

    account: str  # "client:<id>" or "escrow"
    client_id: int | None
    cached: Decimal  # Client.balance, or the sum of open holds
    ledger: Decimal  # the sum of the account's entries

    def __str__(self) -> str:
        return f"{self.account}: cached {self.cached} != ledger {self.ledger}"


# --- Amounts -----------------------------------------------------------------------------------------------------


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


def _key(key: str) -> str:
    if not isinstance(key, str) or not key or len(key) > MAX_KEY_LENGTH:
        raise ValueError(f"A ledger key is a string of 1 to {MAX_KEY_LENGTH} characters.")
    return key


def split_revenue(total: Decimal) -> dict[str, Decimal]:
    """Split a charge: operator 70% and treasury 5% rounded down to 0.000001, platform the rest; sums to total."""
    total = _decimal(total, name="total")
    if total < 0 or total.quantize(Q6) != total:
        raise ValueError(f"total must be non-negative with at most 6 decimal places: {total}.")
    shares = {role: (total * part).quantize(Q6, ROUND_DOWN) for role, part in SPLIT.items()}
    shares["platform"] = (total - sum(shares.values())).quantize(Q6)  # absorbs the rounding
    return {role: shares[role] for role in ("operator", "platform", "treasury")}


# --- Accounts and postings ---------------------------------------------------------------------------------------


def _system_account(kind: str) -> LedgerAccount:
    # Created on first use; the partial unique constraint makes a concurrent first use find the winner's row.
    account, _ = LedgerAccount.objects.get_or_create(kind=kind, client=None)
    return account


def _client_account(client_id: int) -> LedgerAccount:
    account, _ = LedgerAccount.objects.get_or_create(client_id=client_id, defaults={"kind": LedgerAccountKind.CLIENT})
    return account


def _lock_clients(*client_ids: int) -> dict[int, Client]:
    """Lock the clients' rows, in id order so two postings touching the same two clients cannot deadlock."""
    rows = Client.objects.select_for_update().filter(pk__in=set(client_ids)).order_by("pk").only("pk", "balance")
    return {row.pk: row for row in rows}


def _post(
    *,
    key: str,
    kind: str,
    memo: str,
    legs: list[tuple[LedgerAccount, Decimal]],
    hold: Hold | None = None,
) -> LedgerTransaction:
    """Write one balanced transaction and move the cached balances of the clients it touches.

    The caller holds the locks of those clients' rows (and of the hold), inside its own atomic block.
    """
    by_account: dict[int, Decimal] = defaultdict(Decimal)
    accounts = {}
    for account, amount in legs:
        by_account[account.pk] += amount
        accounts[account.pk] = account
    legs = [(accounts[pk], amount) for pk, amount in by_account.items() if amount]
    if len(legs) < 2 or sum(amount for _, amount in legs) != 0:
        raise AssertionError(f"unbalanced ledger transaction {key}: {legs}")  # the trigger would refuse it too
    txn = LedgerTransaction.objects.create(key=key, kind=kind, memo=memo[:255], hold=hold)
    LedgerEntry.objects.bulk_create(LedgerEntry(transaction=txn, account=a, amount=x) for a, x in legs)
    for account, amount in legs:
        if account.client_id is not None:
            Client.objects.filter(pk=account.client_id).update(balance=F("balance") + amount)
    return txn


def _refresh_balance(client: Client) -> None:
    client.balance = Client.objects.values_list("balance", flat=True).get(pk=client.pk)


# --- The interface -----------------------------------------------------------------------------------------------


def balance_of(*, client: Client) -> Decimal:
    """The client's available balance: what it may spend now, holds excluded."""
    return Client.objects.values_list("balance", flat=True).get(pk=client.pk)


@transaction.atomic
def credit(*, client: Client, amount: Decimal, key: str, memo: str = "") -> LedgerTransaction:
    """Add outside money to a client's balance (an admin top-up); a repeated key credits nothing again."""
    amount = _exact(amount, name="amount")
    txn_key = f"{LedgerTransactionKind.CREDIT}:{_key(key)}"
    _lock_clients(client.pk)  # a concurrent retry waits here, then finds the first one's transaction
    existing = LedgerTransaction.objects.filter(key=txn_key).first()
    if existing is not None:
        if not existing.entries.filter(account__client=client, amount=amount).exists():
            raise LedgerKeyReused(f"Ledger key {key!r} already credited another client or amount.")
        _refresh_balance(client)
        return existing
    txn = _post(
        key=txn_key,
        kind=LedgerTransactionKind.CREDIT,
        memo=memo,
        legs=[(_system_account(LedgerAccountKind.FUNDING), -amount), (_client_account(client.pk), amount)],
    )
    _refresh_balance(client)
    return txn


@transaction.atomic
def hold_place(*, client: Client, amount: Decimal, key: str, memo: str = "", minimum: Decimal | None = None) -> Hold:
    """Move `amount` from the client's balance to escrow; InsufficientFunds if it has less. Idempotent by key.

    With `minimum` (a lease: inference/leases.py), hold as much of `amount` as the balance has, if that is at least
    `minimum`; a retry then returns the first hold whatever it held.
    """
    amount = _exact(amount, name="amount")
    floor = amount if minimum is None else _exact(minimum, name="minimum")
    locked = _lock_clients(client.pk)[client.pk]  # concurrent holds of one client queue here: none can overspend
    hold = Hold.objects.filter(key=_key(key)).first()
    if hold is not None:
        if hold.client_id != client.pk or (minimum is None and hold.amount != amount):
            raise LedgerKeyReused(f"Hold key {key!r} already holds another client's money or another amount.")
        _refresh_balance(client)
        return hold
    if locked.balance < floor:
        raise InsufficientFunds(f"The available balance ({locked.balance}) is less than {floor}.")
    amount = min(amount, locked.balance)
    try:
        with transaction.atomic():
            hold = Hold.objects.create(key=key, client=client, amount=amount)
    except IntegrityError as exc:  # another client's hold took this key at the same moment
        raise LedgerKeyReused(f"Hold key {key!r} is already in use.") from exc
    _post(
        key=f"{LedgerTransactionKind.HOLD}:{key}",
        kind=LedgerTransactionKind.HOLD,
        memo=memo,
        legs=[(_client_account(client.pk), -amount), (_system_account(LedgerAccountKind.ESCROW), amount)],
        hold=hold,
    )
    _refresh_balance(client)
    return hold


def _open_hold(key: str) -> Hold | None:
    """The hold with this key, row-locked, if it is still held (so concurrent settles and releases act once)."""
    hold = Hold.objects.select_for_update().filter(key=_key(key)).first()
    if hold is None:
        raise HoldNotFound(f"No hold has the key {key!r}.")
    return hold if hold.status == HoldStatus.HELD else None


def _close(hold: Hold, status: str) -> None:
    hold.status = status
    hold.settled_at = timezone.now()
    hold.save(update_fields=["status", "settled_at"])


@transaction.atomic
def hold_settle(*, key: str, charge: Decimal, operator: Client, memo: str = "") -> LedgerTransaction | None:
    """Charge up to the held amount (operator 70/platform 25/treasury 5), refund the rest; None if already closed."""
    # A charge computed from prices may carry more places than money does: rounded half up to 0.000001.
    charge = _decimal(charge, name="charge").quantize(Q6, ROUND_HALF_UP)
    if charge < 0:
        raise ValueError(f"charge must not be negative: {charge}.")
    hold = _open_hold(key)
    if hold is None:
        return None  # settled or released already: a retry
    still_held = hold.amount - hold.consumed
    charge = min(charge, still_held)
    shares = split_revenue(charge)
    _lock_clients(hold.client_id, operator.pk)
    txn = _post(
        key=f"{LedgerTransactionKind.SETTLE}:{key}",
        kind=LedgerTransactionKind.SETTLE,
        memo=memo,
        legs=[
            (_system_account(LedgerAccountKind.ESCROW), -still_held),
            (_client_account(operator.pk), shares["operator"]),
            (_system_account(LedgerAccountKind.PLATFORM), shares["platform"]),
            (_system_account(LedgerAccountKind.TREASURY), shares["treasury"]),
            (_client_account(hold.client_id), still_held - charge),
        ],
        hold=hold,
    )
    _close(hold, HoldStatus.SETTLED)
    _refresh_balance(operator)
    return txn


@transaction.atomic
def hold_consume(
    *, key: str, use_key: str, charge: Decimal, operator: Client, memo: str = ""
) -> LedgerTransaction | None:
    """Charge from an open hold that stays open (a lease): operator 70/platform 25/treasury 5, as `hold_settle`.

    Idempotent by `use_key`: a retry finds the first posting and moves nothing. Capped at what is still held. A
    hold already closed (a lease released after its process died) is charged from the client's balance instead,
    as far as it goes: the work was delivered, so it is billed. None when nothing could be charged.
    """
    charge = _decimal(charge, name="charge").quantize(Q6, ROUND_HALF_UP)
    if charge <= 0:
        raise ValueError(f"charge must be positive: {charge}.")
    txn_key = f"{LedgerTransactionKind.USAGE}:{_key(use_key)}"
    hold = Hold.objects.select_for_update().filter(key=_key(key)).first()
    if hold is None:
        raise HoldNotFound(f"No hold has the key {key!r}.")
    existing = LedgerTransaction.objects.filter(key=txn_key).first()
    if existing is not None:
        return existing
    clients = _lock_clients(hold.client_id, operator.pk)
    if hold.status == HoldStatus.HELD:
        charge = min(charge, hold.amount - hold.consumed)
        source = _system_account(LedgerAccountKind.ESCROW)
    else:
        charge = min(charge, clients[hold.client_id].balance)
        source = _client_account(hold.client_id)
    if charge <= 0:
        return None
    shares = split_revenue(charge)
    txn = _post(
        key=txn_key,
        kind=LedgerTransactionKind.USAGE,
        memo=memo,
        legs=[
            (source, -charge),
            (_client_account(operator.pk), shares["operator"]),
            (_system_account(LedgerAccountKind.PLATFORM), shares["platform"]),
            (_system_account(LedgerAccountKind.TREASURY), shares["treasury"]),
        ],
        hold=hold,
    )
    if hold.status == HoldStatus.HELD:
        Hold.objects.filter(pk=hold.pk).update(consumed=F("consumed") + charge)
    _refresh_balance(operator)
    return txn


@transaction.atomic
def hold_release(*, key: str) -> None:
    """Refund a still-open hold in full; a no-op for a hold already settled or released, or for an unknown key."""
    try:
        hold = _open_hold(key)
    except HoldNotFound:
        return  # nothing was held (e.g. the work failed before its hold): nothing to give back
    if hold is None:
        return
    _lock_clients(hold.client_id)
    still_held = hold.amount - hold.consumed
    if not still_held:
        _close(hold, HoldStatus.SETTLED)  # a lease used to the last cent: nothing to give back
        return
    _post(
        key=f"{LedgerTransactionKind.RELEASE}:{key}",
        kind=LedgerTransactionKind.RELEASE,
        memo="",
        legs=[
            (_system_account(LedgerAccountKind.ESCROW), -still_held),
            (_client_account(hold.client_id), still_held),
        ],
        hold=hold,
    )
    _close(hold, HoldStatus.RELEASED)


# --- Money in from outside and out to outside (payments/: docs/API.md §15) --------------------------------------
# Each moves money between a client's account and an external system account (a clearing account for money that
# came in through Stripe or x402, the payouts account for money paid out), in one balanced transaction, once per key.

EXTERNAL_ACCOUNTS = (LedgerAccountKind.STRIPE_CLEARING, LedgerAccountKind.X402_CLEARING, LedgerAccountKind.PAYOUTS)


def _external(kind: str) -> LedgerAccount:
    if kind not in EXTERNAL_ACCOUNTS:
        raise ValueError(f"{kind!r} is not an external account.")
    return _system_account(kind)


@transaction.atomic
def deposit(*, client: Client, amount: Decimal, key: str, kind: str, source: str, memo: str = "") -> LedgerTransaction:
    """Credit money that came in from outside (`source`: a clearing account) to a client, once per key.

    A repeated key (a webhook delivered again, a concurrent replay) returns the first posting and credits nothing.
    """
    amount = _exact(amount, name="amount")
    txn_key = f"{kind}:{_key(key)}"
    _lock_clients(client.pk)  # a concurrent retry waits here, then finds the first one's transaction
    existing = LedgerTransaction.objects.filter(key=txn_key).first()
    if existing is not None:
        if not existing.entries.filter(account__client=client, amount=amount).exists():
            raise LedgerKeyReused(f"Ledger key {key!r} already credited another client or amount.")
        _refresh_balance(client)
        return existing
    txn = _post(
        key=txn_key,
        kind=kind,
        memo=memo,
        legs=[(_external(source), -amount), (_client_account(client.pk), amount)],
    )
    _refresh_balance(client)
    return txn


@transaction.atomic
def withdraw(
    *, client: Client, amount: Decimal, key: str, kind: str, destination: str, memo: str = ""
) -> LedgerTransaction | None:
    """Take up to `amount` of a client's available balance back out to `destination`, once per key (a deposit
    that did not arrive after all). None when the balance had nothing to take."""
    amount = _exact(amount, name="amount")
    txn_key = f"{kind}:{_key(key)}"
    locked = _lock_clients(client.pk)[client.pk]
    existing = LedgerTransaction.objects.filter(key=txn_key).first()
    if existing is not None:
        return existing
    taken = min(amount, locked.balance)
    if taken <= 0:
        return None
    txn = _post(
        key=txn_key,
        kind=kind,
        memo=memo,
        legs=[(_client_account(client.pk), -taken), (_external(destination), taken)],
    )
    _refresh_balance(client)
    return txn


@transaction.atomic
def hold_pay_out(*, key: str, kind: str, destination: str, memo: str = "") -> LedgerTransaction | None:
    """Pay what an open hold still holds out of the books (escrow to `destination`) and close the hold; None if it
    was closed already (a retry, or released meanwhile)."""
    hold = _open_hold(key)
    if hold is None:
        return None
    still_held = hold.amount - hold.consumed
    if not still_held:
        _close(hold, HoldStatus.SETTLED)
        return None
    txn = _post(
        key=f"{kind}:{key}",
        kind=kind,
        memo=memo,
        legs=[(_system_account(LedgerAccountKind.ESCROW), -still_held), (_external(destination), still_held)],
        hold=hold,
    )
    _close(hold, HoldStatus.SETTLED)
    return txn


@transaction.atomic
def hold_top_up(*, key: str, amount: Decimal, top_up_key: str, memo: str = "") -> Hold:
    """Add `amount` from the client's balance to its open hold `key` (a pay-as-you-go rental's hold renewed, a
    fixed rental extended); InsufficientFunds if the balance has less. Idempotent by `top_up_key`."""
    amount = _exact(amount, name="amount")
    txn_key = f"{LedgerTransactionKind.HOLD}:{_key(top_up_key)}"
    hold = _open_hold(key)  # the hold's row lock first, then the client's, as hold_settle does
    if hold is None:
        raise ValueError(f"The hold {key!r} is closed; it cannot be topped up.")
    locked = _lock_clients(hold.client_id)[hold.client_id]
    if LedgerTransaction.objects.filter(key=txn_key).exists():
        return hold  # a retry: added already
    if locked.balance < amount:
        raise InsufficientFunds(f"The available balance ({locked.balance}) is less than {amount}.")
    _post(
        key=txn_key,
        kind=LedgerTransactionKind.HOLD,
        memo=memo,
        legs=[(_client_account(hold.client_id), -amount), (_system_account(LedgerAccountKind.ESCROW), amount)],
        hold=hold,
    )
    Hold.objects.filter(pk=hold.pk).update(amount=F("amount") + amount)
    hold.refresh_from_db()
    return hold


def hold_get(*, key: str) -> Hold | None:
    """The hold with this key (a read: what it holds is `amount - consumed` while it is held)."""
    return Hold.objects.filter(key=_key(key)).first()


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


@transaction.atomic
def charge(*, client: Client, amount: Decimal, key: str, kind: str, memo: str = "") -> LedgerTransaction:
    """Take `amount` from a client's available balance to the platform (a plan's price), once per key.

    Raises InsufficientFunds (402) when the balance is short; a repeated key returns the first posting.
    """
    amount = _exact(amount, name="amount")
    txn_key = f"{kind}:{_key(key)}"
    locked = _lock_clients(client.pk)[client.pk]
    existing = LedgerTransaction.objects.filter(key=txn_key).first()
    if existing is not None:
        if not existing.entries.filter(account__client=client, amount=-amount).exists():
            raise LedgerKeyReused(f"Ledger key {key!r} already charged another client or amount.")
        _refresh_balance(client)
        return existing
    if locked.balance < amount:
        raise InsufficientFunds(f"This costs {amount}; the available balance is {locked.balance}.")
    txn = _post(
        key=txn_key,
        kind=kind,
        memo=memo,
        legs=[(_client_account(client.pk), -amount), (_system_account(LedgerAccountKind.PLATFORM), amount)],
    )
    _refresh_balance(client)
    return txn


@transaction.atomic
def refund_from_platform(*, client: Client, amount: Decimal, key: str, kind: str, memo: str = "") -> LedgerTransaction:
    """Give a client back `amount` it was charged for work the platform pays for instead (a plan-covered request:
    its operator and treasury keep their shares, the platform pays them), once per key."""
    amount = _exact(amount, name="amount")
    txn_key = f"{kind}:{_key(key)}"
    _lock_clients(client.pk)
    existing = LedgerTransaction.objects.filter(key=txn_key).first()
    if existing is not None:
        return existing
    txn = _post(
        key=txn_key,
        kind=kind,
        memo=memo,
        legs=[(_system_account(LedgerAccountKind.PLATFORM), -amount), (_client_account(client.pk), amount)],
    )
    _refresh_balance(client)
    return txn
