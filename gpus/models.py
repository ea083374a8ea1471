from decimal import Decimal

from django.conf import settings
from django.db import models
from django.db.models import Q


class Gpu(models.Model):
    """A provider's GPU machine as described by seed 004, plus what the marketplace sells it by."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="gpus")
    gpu_info = models.CharField(max_length=255)
    cpu_name = models.CharField(max_length=255)
    cpu_core = models.CharField(max_length=64)
    cpu_frequency = models.CharField(max_length=64)
    total_memory = models.CharField(max_length=64)
    total_swap = models.CharField(max_length=64)
    ram = models.CharField(max_length=64)
    os_name = models.CharField(max_length=128)
    os_version = models.CharField(max_length=128)
    gpu_model = models.CharField(max_length=64, blank=True, db_index=True, help_text="Normalised, e.g. H100.")
    gpu_count = models.PositiveSmallIntegerField(default=1)
    gpu_memory_gb = models.PositiveIntegerField(null=True, blank=True)
    region = models.CharField(max_length=64, blank=True, db_index=True)
    price_per_hour = models.DecimalField(max_digits=12, decimal_places=6, default=Decimal("0"))
    # Instances (API.md §14): the operator's discount off price_per_hour for a rental billed by the day, week or
    # month, as a fraction 0..0.5 (0.1 = 10% off).
    discount_daily = models.DecimalField(max_digits=4, decimal_places=3, default=Decimal("0"))
    discount_weekly = models.DecimalField(max_digits=4, decimal_places=3, default=Decimal("0"))
    discount_monthly = models.DecimalField(max_digits=4, decimal_places=3, default=Decimal("0"))
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["id"]
        verbose_name = "GPU"
        constraints = [
            models.CheckConstraint(condition=Q(price_per_hour__gte=0), name="gpu_price_not_negative"),
            models.CheckConstraint(condition=Q(gpu_count__gte=1), name="gpu_count_positive"),
            models.CheckConstraint(
                condition=Q(discount_daily__gte=0, discount_daily__lte=Decimal("0.5"))
                & Q(discount_weekly__gte=0, discount_weekly__lte=Decimal("0.5"))
                & Q(discount_monthly__gte=0, discount_monthly__lte=Decimal("0.5")),
                name="gpu_discounts_in_range",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.gpu_model or self.gpu_info} x{self.gpu_count} ({self.user})"

    @property
    def discounts(self) -> dict[str, Decimal]:
        return {"daily": self.discount_daily, "weekly": self.discount_weekly, "monthly": self.discount_monthly}
