"""Shapes of plans and subscriptions (API.md §12)."""

from decimal import Decimal

from rest_framework import serializers

from core.serializers import StrictInputMixin
from plans.choices import Overage
from plans.models import Plan, Subscription


class PlanIn(StrictInputMixin, serializers.Serializer):
    name = serializers.CharField(max_length=64)
    price_per_month = serializers.DecimalField(
        max_digits=13, decimal_places=6, min_value=Decimal("0"), max_value=Decimal("1000000")
    )
    daily_requests = serializers.IntegerField(min_value=0, max_value=10_000_000)
    overage = serializers.ChoiceField(choices=Overage.choices, required=False)
    models = serializers.ListField(
        child=serializers.CharField(max_length=255), source="allowed_models", max_length=100, required=False
    )
    is_active = serializers.BooleanField(required=False)

    def validate_name(self, value: str) -> str:
        others = Plan.objects.filter(name=value)
        instance = self.context.get("plan")
        if instance is not None:
            others = others.exclude(pk=instance.pk)
        if others.exists():
            raise serializers.ValidationError("A plan with this name exists.", code="unique")
        return value


class PlanOut(serializers.ModelSerializer):
    models = serializers.ListField(child=serializers.CharField(), source="allowed_models", read_only=True)

    class Meta:
        model = Plan
        fields = ["id", "name", "price_per_month", "daily_requests", "overage", "models", "is_active"]
        read_only_fields = fields


class SubscriptionOut(serializers.ModelSerializer):
    plan = PlanOut(read_only=True)

    class Meta:
        model = Subscription
        fields = [
            "id",
            "plan",
            "status",
            "price_per_month",
            "started_at",
            "renews_at",
            "renew",
            "canceled_at",
            "ended_at",
        ]
        read_only_fields = fields
