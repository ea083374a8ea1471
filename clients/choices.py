from django.db import models


class ClientRole(models.TextChoices):
    USER = "user", "User"
    GPU_PROVIDER = "gpu_provider", "GPU provider"
    ADMIN = "admin", "Admin"


class LedgerAccountKind(models.TextChoices):
    CLIENT = "client", "Client"  # a client's balance; an operator's earnings land in its own client account
    PLATFORM = "platform", "Platform"
    TREASURY = "treasury", "Treasury"
    ESCROW = "escrow", "Escrow"  # money held for open holds
    FUNDING = "funding", "Funding"  # outside money: its balance is minus everything ever deposited
    # Money in and out through payments/ (docs/API.md §15): minus what came in by card (Stripe) or by x402, and
    # plus what providers were paid out.
    STRIPE_CLEARING = "stripe_clearing", "Stripe clearing"
    X402_CLEARING = "x402_clearing", "x402 clearing"
    PAYOUTS = "payouts", "Payouts"


class LedgerTransactionKind(models.TextChoices):
    """Which posting function wrote a transaction (its key is `<kind>:<caller key>`). What each line of it means
    to its account is the entry's own kind (LedgerEntryKind)."""

    CREDIT = "credit", "Credit"
    HOLD = "hold", "Hold"
    SETTLE = "settle", "Settle"
    USAGE = "usage", "Usage"  # a charge from a hold that stays open (a lease: inference/leases.py)
    RELEASE = "release", "Release"
    # payments/ (docs/API.md §15)
    TOPUP = "topup", "Top-up"  # a card payment (Stripe Checkout) credited
    PAYOUT = "payout", "Payout"  # a provider's held payout paid out
    X402 = "x402", "x402"  # a keyless x402 payment credited to its payer's account (or reversed)
    # plans/ (docs/API.md §12)
    SUBSCRIPTION = "subscription", "Subscription"  # a plan's monthly price, client to platform
    PLAN_USAGE = "plan_usage", "Plan usage"  # a covered request: the platform pays its operator and treasury shares


class LedgerEntryKind(models.TextChoices):
    """What one ledger line is, from its account's side (API.md §10: `kind` of GET client/ledger/).

    A charge is a line of the charge's kind (`inference`, `rental`, ...) whose amount is minus exactly the charge,
    on the payer's account; the operator's, platform's and treasury's shares of it carry the same kind. A new kind
    of charge is a new member here (no migration: the column has no choices) and is passed as `kind` to the posting
    functions of clients/ledger/.
    """

    CREDIT = "credit", "Credit"  # outside money in (an admin top-up)
    HOLD = "hold", "Hold"  # money reserved for work in progress (counted in the client's `held`)
    RELEASE = "release", "Release"  # reserved money given back (all of a hold, or the part a charge is paid from)
    REFUND = "refund", "Refund"  # the unused part of something paid up front given back
    INFERENCE = "inference", "Inference"
    RENTAL = "rental", "Rental"
    TRAINING = "training", "Training"  # a fine-tuning job's started minutes (training/billing.py)
    # payments/ (docs/API.md §15): money in from outside and out to outside, ref `topup:<id>`, `x402:<id>`,
    # `payout:<id>`
    TOPUP = "topup", "Top-up"  # a card payment (Stripe Checkout) credited, or taken back when it did not arrive
    X402 = "x402", "x402"  # a keyless x402 payment credited to its payer's account, or reversed
    PAYOUT = "payout", "Payout"  # a provider's held earnings paid out of the books
    # plans/ (docs/API.md §12), ref `subscription:<id>` / `inference:<id>`
    SUBSCRIPTION = "subscription", "Subscription"  # a plan's month, client to platform
    PLAN_USAGE = "plan_usage", "Plan usage"  # a covered request's charge paid back to the client by the platform
    SETTLE = "settle", "Settle"  # lines written before entries had kinds (a settle's netted figure)
    USAGE = "usage", "Usage"  # lines written before entries had kinds (a lease's batch charge)


class HoldStatus(models.TextChoices):
    HELD = "held", "Held"
    SETTLED = "settled", "Settled"
    RELEASED = "released", "Released"


class BudgetPeriod(models.TextChoices):
    DAY = "day"
    WEEK = "week"
    MONTH = "month"
    TOTAL = "total"


class KeyScope(models.TextChoices):
    INFERENCE = "inference"
    RENTALS = "rentals"
    TRAINING = "training"
    ACCOUNT = "account"
