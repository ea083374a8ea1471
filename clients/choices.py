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
