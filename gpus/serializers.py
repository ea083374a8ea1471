from decimal import Decimal
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import User
from rest_framework import serializers

from core.serializers import StrictInputMixin
from gpus.models import Gpu

GPU_FIELDS = [
    "gpu_info",
    "cpu_name",
    "cpu_core",
    "cpu_frequency",
    "total_memory",
    "total_swap",
    "ram",
    "os_name",
    "os_version",
    "user",
    "gpu_model",
    "gpu_count",
    "gpu_memory_gb",
    "region",
    "price_per_hour",
]


DISCOUNT: dict[str, Any] = {
    "max_digits": 4,
    "decimal_places": 3,
    "min_value": Decimal("0"),
    "max_value": Decimal("0.5"),
}
DISCOUNT_FIELDS = {"daily": "discount_daily", "weekly": "discount_weekly", "monthly": "discount_monthly"}


class GpuDiscountsOut(serializers.Serializer):
    daily = serializers.DecimalField(max_digits=4, decimal_places=3)
    weekly = serializers.DecimalField(max_digits=4, decimal_places=3)
    monthly = serializers.DecimalField(max_digits=4, decimal_places=3)


class GpuDiscountsIn(StrictInputMixin, serializers.Serializer):
    """Discounts off price_per_hour for rentals billed by the day, week or month (API.md §14), 0..0.5 each."""

    daily = serializers.DecimalField(**DISCOUNT, required=False)
    weekly = serializers.DecimalField(**DISCOUNT, required=False)
    monthly = serializers.DecimalField(**DISCOUNT, required=False)


class GpuOut(serializers.ModelSerializer):
    discounts = GpuDiscountsOut(read_only=True)

    class Meta:
        model = Gpu
        fields = ["id", *GPU_FIELDS, "discounts", "created_at", "updated_at"]
        read_only_fields = fields


class GpuIn(StrictInputMixin, serializers.ModelSerializer):
    """Seed 004's GPU body. `user` defaults to the caller; only an admin may name someone else."""

    user = serializers.PrimaryKeyRelatedField(queryset=get_user_model().objects.all(), required=False)
    gpu_model = serializers.CharField(max_length=64, required=False, allow_blank=True)
    price_per_hour = serializers.DecimalField(
        max_digits=12, decimal_places=6, min_value=Decimal("0"), max_value=Decimal("1000000"), required=False
    )
    gpu_count = serializers.IntegerField(min_value=1, max_value=64, required=False)
    gpu_memory_gb = serializers.IntegerField(min_value=1, max_value=100000, required=False, allow_null=True)
    discounts = GpuDiscountsIn(required=False)

    class Meta:
        model = Gpu
        fields = [*GPU_FIELDS, "discounts"]

    def validate(self, attrs: dict) -> dict:
        """`discounts: {daily, weekly, monthly}` becomes the model's three discount fields (those given)."""
        for period, value in (attrs.pop("discounts", None) or {}).items():
            attrs[DISCOUNT_FIELDS[period]] = value
        return attrs

    def validate_user(self, user: User) -> User:
        caller = self.context["request"].user
        if user != caller and not caller.is_staff:
            raise serializers.ValidationError("You may only describe your own GPUs.", code="not_your_user")
        return user
