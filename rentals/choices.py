from django.db import models


class RentalStatus(models.TextChoices):
    ACTIVE = "active", "Active"  # paid for [starts_at, ends_at); holds the node while that range lasts
    CANCELLED = "cancelled", "Cancelled"  # by the renter: unused minutes refunded
    COMPLETED = "completed", "Completed"  # ran to ends_at: settled in full
    TERMINATED = "terminated", "Terminated"  # the node left (deregistered, provider revoked): unused minutes refunded


class RentalAction(models.TextChoices):
    """What a renter may ask of a rented node (POST {id}/<action>/)."""

    START = "start", "Start"
    STOP = "stop", "Stop"
    RESET = "reset", "Reset"
