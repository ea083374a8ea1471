from django.db import models


class Overage(models.TextChoices):
    BILL = "bill", "Bill per token"
    BLOCK = "block", "Refuse (429)"


class SubscriptionStatus(models.TextChoices):
    ACTIVE = "active", "Active"
    LAPSED = "lapsed", "Lapsed"  # not renewed: the balance was short at renews_at
    ENDED = "ended", "Ended"  # cancelled, and its paid period is over


class Coverage(models.TextChoices):
    NONE = "none", "No plan"
    COVERED = "covered", "Covered by the plan"
    BILLED = "billed", "Beyond the quota, billed"
