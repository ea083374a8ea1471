from django.db import models


class TopUpStatus(models.TextChoices):
    PENDING = "pending", "Pending"  # the Checkout Session is open, nothing paid yet
    SUCCEEDED = "succeeded", "Succeeded"  # paid and credited (once)
    FAILED = "failed", "Failed"  # the delayed payment failed, or the session could not be made
    EXPIRED = "expired", "Expired"  # the session expired unpaid


class PayoutStatus(models.TextChoices):
    PENDING = "pending", "Pending"  # requested, the amount held
    PAID = "paid", "Paid"  # approved: the money left the books
    REJECTED = "rejected", "Rejected"  # the hold released


class X402PaymentStatus(models.TextChoices):
    VERIFIED = "verified", "Verified"  # the facilitator accepted the signature; credited, not yet settled
    SETTLED = "settled", "Settled"  # settled on chain
    UNUSED = "unused", "Unused"  # the payer's credit paid: the authorization was never settled
    FAILED = "failed", "Failed"  # settlement failed: the credit was taken back
