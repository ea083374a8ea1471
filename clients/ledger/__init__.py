"""The money layer: the only module that writes money (STYLE.md §5).

Double entry: every posting is one `LedgerTransaction` whose `LedgerEntry` lines sum to exactly zero, and an
account's balance is the sum of its lines. Signs are from the account's side: a client's account is what it may
spend now, escrow is what is held, platform and treasury are earnings, and funding (outside money) goes negative by
everything ever deposited, so all accounts together always sum to zero. `Client.balance` caches the sum of the
client's account and is changed by an UPDATE in the same database transaction as the lines, with the client row
locked.

The contract every posting function keeps (API.md §9, "The ledger's one contract"):

- **Ids in, keyword-only.** Clients are named by id (`client_id`, `operator_id`); amounts are `Decimal` (or int)
  with at most 6 decimal places (a computed charge is rounded half up to 6); floats are refused.
- **`kind` and `ref` on every line.** A function that posts a charge or a deposit takes `kind` (what it is: a
  `LedgerEntryKind`, e.g. `inference`, `rental`) and `ref` (the object it is for, `"<type>:<id>"`, or None where
  it names nothing). Each line carries both, so `GET client/ledger/` shows every charge as its own line of minus
  exactly the charge. A hold keeps its `kind` and `ref`; its release and refund lines carry its `ref`.
- **Charges are paid from the client's account.** A hold is money moved to escrow; settling or consuming it first
  gives the held money back to the client's account (a `release` line) and then charges it from there (a line of
  the charge's kind), in one transaction. So the payer's lines always read: hold, release, charge. A hold placed
  with a charge's kind instead of `hold` (a rental paid up front) *is* the charge: settling it refunds the unused
  part (a `refund` line) and pays the used part to the operator. Lines are never netted per account: an operator
  paying its own node sees its charge and its earnings apart.
- **Idempotent by key.** Each call names its posting with `key` (for a hold: the hold's key). A retry with the same
  key and the same arguments returns what the first call posted and moves nothing; the same key with other
  arguments raises `LedgerKeyReused` (409). A key that names no hold raises `HoldNotFound` (409) everywhere; a hold
  already closed by something else raises `HoldClosed` (409). All three are `DomainError`s: never a 500.
- **No policy.** What to do when a hold is gone (charge the balance instead, give up) is the caller's to decide.

The functions: `credit`, `hold_place`, `hold_settle`, `hold_consume`, `hold_reduce`, `hold_release`, `hold_top_up`
(more money into an open hold, keyed by its `top_up_key`, its lines of the hold's kind and ref), and money in and
out of the books for payments/ (`deposit`, `withdraw`: kinds `topup`/`x402`; `hold_pay_out`: kind `payout`).

Splits: a charge pays the operator 70% and the treasury 5% (each rounded down to 0.000001) and the platform the
rest, rounding included; a charge with no operator (`operator_id=None`) is the platform's.

The package, by job: `arguments` (what a caller gives, checked; the revenue split), `accounts` (accounts, row
locks, the lines of a posting), `postings` (one balanced transaction written, a retry's found), `balances` (reads),
`balance_postings` (`credit`, `charge`, `platform_pay`: no hold), `holds` (place, top up, reduce, release),
`settlement` (`hold_settle`, `hold_consume`), `external` (`deposit`, `withdraw`, `hold_pay_out`) and
`reconciliation`. Callers import from here: `from clients import ledger`.
"""

from clients.errors import HoldClosed, HoldNotFound, InsufficientFunds, LedgerKeyReused
from clients.ledger.accounts import EXTERNAL_ACCOUNTS
from clients.ledger.arguments import MAX_AMOUNT, MAX_KEY_LENGTH, MAX_REF_LENGTH, Q6, SPLIT, Charge, split_revenue
from clients.ledger.balance_postings import charge, credit, platform_pay
from clients.ledger.balances import balance_of, held_of, held_q, hold_get
from clients.ledger.external import deposit, hold_pay_out, withdraw
from clients.ledger.holds import hold_place, hold_reduce, hold_release, hold_top_up
from clients.ledger.reconciliation import BalanceMismatch, reconcile
from clients.ledger.settlement import hold_consume, hold_settle
from clients.models import LedgerEntry

__all__ = [
    "EXTERNAL_ACCOUNTS",
    "MAX_AMOUNT",
    "MAX_KEY_LENGTH",
    "MAX_REF_LENGTH",
    "Q6",
    "SPLIT",
    "BalanceMismatch",
    "Charge",
    "HoldClosed",
    "HoldNotFound",
    "InsufficientFunds",
    "LedgerEntry",
    "LedgerKeyReused",
    "balance_of",
    "charge",
    "credit",
    "deposit",
    "held_of",
    "held_q",
    "hold_consume",
    "hold_get",
    "hold_pay_out",
    "hold_place",
    "hold_reduce",
    "hold_release",
    "hold_settle",
    "hold_top_up",
    "platform_pay",
    "reconcile",
    "split_revenue",
    "withdraw",
]
