from django.db import models


class RentalStatus(models.TextChoices):
    ACTIVE = "active", "Active"  # paid for [starts_at, ends_at); holds the node while that range lasts
    CANCELLED = "cancelled", "Cancelled"  # by the renter: unused minutes refunded
    COMPLETED = "completed", "Completed"  # ran to ends_at: settled in full
    TERMINATED = "terminated", "Terminated"  # the node left (deregistered, provider revoked): unused minutes refunded
    # Pay as you go whose hold could not be topped up: minutes used charged, the rest released, the node told to end.
    ENDED_INSUFFICIENT_FUNDS = "ended_insufficient_funds", "Ended: insufficient funds"


class RentalBilling(models.TextChoices):
    """How a rental is paid (API.md §14)."""

    HOURLY = "hourly", "Hourly"  # `hours`, paid up front
    DAILY = "daily", "Daily"  # `periods` of 24 h at the GPU's daily discount, paid up front
    WEEKLY = "weekly", "Weekly"  # `periods` of 168 h
    MONTHLY = "monthly", "Monthly"  # `periods` of 720 h
    PAYG = "payg", "Pay as you go"  # no end: started minutes charged from a rolling hold


# Hours in one period of each billing by period.
PERIOD_HOURS = {RentalBilling.DAILY: 24, RentalBilling.WEEKLY: 168, RentalBilling.MONTHLY: 720}


class RentalAction(models.TextChoices):
    """What a renter may ask of a rented node (POST {id}/<action>/)."""

    START = "start", "Start"
    STOP = "stop", "Stop"
    RESET = "reset", "Reset"
