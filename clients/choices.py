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


class LedgerTransactionKind(models.TextChoices):
    CREDIT = "credit", "Credit"
    HOLD = "hold", "Hold"
    SETTLE = "settle", "Settle"
    USAGE = "usage", "Usage"  # a charge from a hold that stays open (a lease: inference/leases.py)
    RELEASE = "release", "Release"


class HoldStatus(models.TextChoices):
    HELD = "held", "Held"
    SETTLED = "settled", "Settled"
    RELEASED = "released", "Released"
