from decimal import Decimal
from typing import Any

from django.db import models
from django.db.models import Q

from plans.choices import Overage, SubscriptionStatus

MONEY: dict[str, Any] = {"max_digits": 20, "decimal_places": 6}


class Plan(models.Model):
    """A monthly plan (seed 001): its price, and how many chat requests a day it covers."""

    name = models.CharField(max_length=64, unique=True)
    price_per_month = models.DecimalField(**MONEY)
    daily_requests = models.PositiveIntegerField()
    overage = models.CharField(max_length=8, choices=Overage.choices, default=Overage.BILL)
    allowed_models = models.JSONField(default=list, blank=True, help_text="Models it covers (`models`); empty: all.")
    is_active = models.BooleanField(default=True, help_text="Listed and open to new subscriptions.")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["price_per_month", "id"]
        constraints = [
            models.CheckConstraint(condition=Q(price_per_month__gte=0), name="plan_price_not_negative"),
            models.CheckConstraint(condition=Q(overage__in=Overage.values), name="plan_overage_valid"),
        ]

    def __str__(self) -> str:
        return self.name

    def covers(self, model: str) -> bool:
        return not self.allowed_models or model in self.allowed_models


class Subscription(models.Model):
    """A client's subscription to a plan: paid to `renews_at`, renewed then unless cancelled (`renew` false)."""

    client = models.ForeignKey("clients.Client", on_delete=models.PROTECT, related_name="subscriptions")
    plan = models.ForeignKey(Plan, on_delete=models.PROTECT, related_name="subscriptions")
    status = models.CharField(max_length=8, choices=SubscriptionStatus.choices, default=SubscriptionStatus.ACTIVE)
    price_per_month = models.DecimalField(**MONEY, default=Decimal("0"))
    started_at = models.DateTimeField()
    renews_at = models.DateTimeField(db_index=True)
    renew = models.BooleanField(default=True)
    canceled_at = models.DateTimeField(null=True, blank=True)
    ended_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-started_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["client"], condition=Q(status=SubscriptionStatus.ACTIVE), name="subscription_one_active"
            ),
            models.CheckConstraint(condition=Q(status__in=SubscriptionStatus.values), name="subscription_status_valid"),
        ]

    def __str__(self) -> str:
        return f"{self.client_id} on {self.plan_id} ({self.status})"


class PlanDailyUsage(models.Model):
    """Covered requests of one subscription on one UTC day (a conditional UPDATE takes each)."""

    subscription = models.ForeignKey(Subscription, on_delete=models.CASCADE, related_name="daily_usage")
    day = models.DateField()
    requests = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["subscription", "day"], name="plan_daily_usage_unique")]

    def __str__(self) -> str:
        return f"{self.subscription_id}@{self.day}: {self.requests}"
