"""Money in and out (docs/API.md §15): card top-ups, provider payouts, and the accounts of x402 payers.

The rows here say what was asked and what happened; the money itself moves only in clients/ledger/, keyed by
these rows (`topup:<id>`, `payout:<id>`, `x402:<id>`), so a retry can never move it twice.
"""

from django.conf import settings
from django.db import models
from django.db.models import Q

from clients.models import Client
from payments.choices import PayoutStatus, TopUpStatus, X402PaymentStatus


class TopUp(models.Model):
    """A card top-up: a Stripe Checkout Session for `amount`, credited once when Stripe says it was paid."""

    client = models.ForeignKey(Client, on_delete=models.PROTECT, related_name="topups")
    amount = models.DecimalField(max_digits=20, decimal_places=6)
    status = models.CharField(max_length=16, choices=TopUpStatus.choices, default=TopUpStatus.PENDING)
    stripe_session_id = models.CharField(max_length=255, unique=True, null=True, blank=True)
    checkout_url = models.URLField(max_length=2000, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    completed_at = models.DateTimeField(null=True, blank=True, help_text="When it was credited.")

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(condition=Q(amount__gt=0), name="topup_amount_positive"),
            models.CheckConstraint(condition=Q(status__in=TopUpStatus.values), name="topup_status_valid"),
        ]
        indexes = [models.Index(fields=["client", "-created_at"], name="topup_client_created_idx")]

    def __str__(self) -> str:
        return f"topup:{self.pk} ({self.status})"

    @property
    def ledger_key(self) -> str:
        return f"topup:{self.pk}"


class Payout(models.Model):
    """A provider's request to be paid `amount` of its balance: held until an admin approves or rejects it."""

    client = models.ForeignKey(Client, on_delete=models.PROTECT, related_name="payouts")
    amount = models.DecimalField(max_digits=20, decimal_places=6)
    status = models.CharField(max_length=16, choices=PayoutStatus.choices, default=PayoutStatus.PENDING)
    reference = models.CharField(
        max_length=255, blank=True, default="", help_text="The bank transfer's (or other) reference, given at approval."
    )
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    decided_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(condition=Q(amount__gt=0), name="payout_amount_positive"),
            models.CheckConstraint(condition=Q(status__in=PayoutStatus.values), name="payout_status_valid"),
        ]
        indexes = [models.Index(fields=["client", "-created_at"], name="payout_client_created_idx")]

    def __str__(self) -> str:
        return f"payout:{self.pk} ({self.status})"

    @property
    def hold_key(self) -> str:
        return f"payout:{self.pk}"


class X402Payer(models.Model):
    """The account of an x402 payer's address: a client without login whose balance is the address's credit."""

    address = models.CharField(max_length=42, unique=True, help_text="0x-address, lower case.")
    client = models.OneToOneField(Client, on_delete=models.PROTECT, related_name="x402_payer")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return self.address


class X402Payment(models.Model):
    """One X-PAYMENT accepted: its authorization's nonce is used once, whatever happens to it."""

    payer = models.ForeignKey(X402Payer, on_delete=models.PROTECT, related_name="payments")
    network = models.CharField(max_length=64)
    nonce = models.CharField(max_length=80)
    amount = models.DecimalField(max_digits=20, decimal_places=6, help_text="USD (the USDC value / 10^6).")
    status = models.CharField(max_length=16, choices=X402PaymentStatus.choices, default=X402PaymentStatus.VERIFIED)
    transaction = models.CharField(max_length=100, blank=True, default="", help_text="The settlement's transaction.")
    error = models.CharField(max_length=255, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    settled_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["network", "nonce"], name="x402_payment_nonce_once"),
            models.CheckConstraint(condition=Q(amount__gt=0), name="x402_payment_amount_positive"),
            models.CheckConstraint(condition=Q(status__in=X402PaymentStatus.values), name="x402_payment_status_valid"),
        ]

    def __str__(self) -> str:
        return f"x402:{self.pk} ({self.status})"

    @property
    def ledger_key(self) -> str:
        return f"x402:{self.pk}"
