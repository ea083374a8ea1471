"""Shapes of top-ups and payouts (docs/API.md §15)."""

from decimal import Decimal

from rest_framework import serializers

from core.serializers import StrictInputMixin
from payments.models import Payout, TopUp

TOPUP_MINIMUM, TOPUP_MAXIMUM = Decimal("5"), Decimal("10000")


class TopUpIn(StrictInputMixin, serializers.Serializer):
    """A card top-up: a decimal string of US dollars, 5 to 10,000, in whole cents."""

    amount = serializers.DecimalField(max_digits=7, decimal_places=2, min_value=TOPUP_MINIMUM, max_value=TOPUP_MAXIMUM)


class TopUpOut(serializers.ModelSerializer):
    """A top-up; `checkout_url` is Stripe's payment page for it (pay there; the webhook credits the balance)."""

    class Meta:
        model = TopUp
        fields = ["id", "amount", "status", "checkout_url", "created_at", "completed_at"]
        read_only_fields = fields


class PayoutIn(StrictInputMixin, serializers.Serializer):
    """A payout request: a decimal string, at least PAYOUT_MINIMUM and at most the available balance."""

    amount = serializers.DecimalField(
        max_digits=13, decimal_places=6, min_value=Decimal("0.000001"), max_value=Decimal("1000000")
    )


class PayoutDecisionIn(StrictInputMixin, serializers.Serializer):
    reference = serializers.CharField(max_length=255, help_text="The transfer's reference (bank, chain, ...).")


class PayoutRejectIn(StrictInputMixin, serializers.Serializer):
    reference = serializers.CharField(max_length=255, required=False, allow_blank=True, default="")


class PayoutOut(serializers.ModelSerializer):
    client = serializers.IntegerField(source="client_id", read_only=True)

    class Meta:
        model = Payout
        fields = ["id", "client", "amount", "status", "reference", "created_at", "decided_at"]
        read_only_fields = fields


class StripeWebhookOut(serializers.Serializer):
    received = serializers.BooleanField()
    handled = serializers.BooleanField(help_text="Whether the event changed a top-up (false: ignored or a repeat).")
