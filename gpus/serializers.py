from decimal import Decimal

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


class GpuOut(serializers.ModelSerializer):
    class Meta:
        model = Gpu
        fields = ["id", *GPU_FIELDS, "created_at", "updated_at"]
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

    class Meta:
        model = Gpu
        fields = GPU_FIELDS

    def validate_user(self, user: User) -> User:
        caller = self.context["request"].user
        if user != caller and not caller.is_staff:
            raise serializers.ValidationError("You may only describe your own GPUs.", code="not_your_user")
        return user
