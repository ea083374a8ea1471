"""Shapes of the client resource (seed 004), its auth endpoints and its money."""

from decimal import Decimal
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.validators import UnicodeUsernameValidator
from django.core.validators import RegexValidator
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from clients.choices import BudgetPeriod, KeyScope, LedgerAccountKind, LedgerEntryKind
from clients.key_periods import key_usage
from clients.models import ApiKey, Client, LedgerEntry
from clients.selectors import client_held, client_newest_key_last4
from core.serializers import StrictInputMixin
from core.tokens import CLIENT_KEY_PREFIX, mask

User = get_user_model()


# Usernames never contain "@", so a login identifier with one is always an email and never ambiguous.
# (A validator object, not a function, so the OpenAPI schema can document its code.)
_no_at_sign = RegexValidator(
    r"@", inverse_match=True, message="A username may not contain '@'.", code="invalid_username"
)


USERNAME_VALIDATORS = [UnicodeUsernameValidator(), _no_at_sign]


class UserOut(serializers.ModelSerializer):
    class Meta:
        model = User
        fields = ["id", "username", "email"]
        read_only_fields = fields


class UserIn(StrictInputMixin, serializers.Serializer):
    username = serializers.CharField(max_length=150, validators=USERNAME_VALIDATORS)
    email = serializers.EmailField(max_length=254)


class ClientOut(serializers.ModelSerializer):
    """A client as everyone but its creator sees it: `user_token` masked.

    Pass `raw_token` in the context to show a just-issued key in full (register, login, create).
    """

    user = UserOut(read_only=True)
    user_token = serializers.SerializerMethodField()
    held = serializers.SerializerMethodField(
        help_text="Money on hold for work in progress (requests in flight, leases); `balance` excludes it."
    )

    class Meta:
        model = Client
        fields = [
            "id",
            "user",
            "phone_no",
            "user_token",
            "user_image",
            "ip",
            "terms_accepted",
            "role",
            "profile_image_url",
            "is_gpu_provider_approved",
            "provider_registration_date",
            "balance",
            "held",
        ]
        read_only_fields = fields

    @extend_schema_field(serializers.DecimalField(max_digits=20, decimal_places=6))
    def get_held(self, obj: Client) -> str:
        return serializers.DecimalField(max_digits=20, decimal_places=6).to_representation(client_held(client=obj))

    @extend_schema_field(serializers.CharField())
    def get_user_token(self, obj: Client) -> str:
        raw = self.context.get("raw_token")
        return raw if raw else mask(CLIENT_KEY_PREFIX, client_newest_key_last4(client=obj))


class ClientUpdateIn(StrictInputMixin, serializers.Serializer):
    """What a client may change about itself (seed 004's request body)."""

    user = UserIn(required=False)
    phone_no = serializers.CharField(max_length=12, allow_null=True, allow_blank=True, required=False)
    user_image = serializers.IntegerField(min_value=0, max_value=32767, required=False)
    terms_accepted = serializers.BooleanField(allow_null=True, required=False)


class ClientCreateIn(ClientUpdateIn):
    user = UserIn()


class RegisterIn(StrictInputMixin, serializers.Serializer):
    username = serializers.CharField(max_length=150, validators=USERNAME_VALIDATORS)
    email = serializers.EmailField(max_length=254)
    password = serializers.CharField(max_length=128, write_only=True, style={"input_type": "password"})
    phone_no = serializers.CharField(max_length=12, allow_null=True, allow_blank=True, required=False)
    terms_accepted = serializers.BooleanField()

    def validate_terms_accepted(self, value: bool) -> bool:
        if value is not True:
            raise serializers.ValidationError("You must accept the terms to register.", code="terms_not_accepted")
        return value


class LoginIn(StrictInputMixin, serializers.Serializer):
    username = serializers.CharField(max_length=254, required=False, help_text="Username or email.")
    email = serializers.EmailField(max_length=254, required=False)
    password = serializers.CharField(max_length=128, write_only=True, style={"input_type": "password"})

    def validate(self, attrs: dict) -> dict:
        identifier = attrs.get("username") or attrs.get("email")
        if not identifier:
            raise serializers.ValidationError({"username": ["Give a username or an email."]}, code="required")
        attrs["identifier"] = identifier
        return attrs


class PasswordResetIn(StrictInputMixin, serializers.Serializer):
    email = serializers.EmailField(max_length=254)


class PasswordResetConfirmIn(StrictInputMixin, serializers.Serializer):
    new_password = serializers.CharField(max_length=128, write_only=True, style={"input_type": "password"})


class GoogleAuthIn(StrictInputMixin, serializers.Serializer):
    id_token = serializers.CharField(max_length=8192, required=False)
    access_token = serializers.CharField(max_length=8192, required=False)

    def validate(self, attrs: dict) -> dict:
        if not attrs.get("id_token") and not attrs.get("access_token"):
            raise serializers.ValidationError({"id_token": ["Give an id_token or an access_token."]}, code="required")
        return attrs


class ApiKeyIn(StrictInputMixin, serializers.Serializer):
    """A key and its limits (API.md §12); every limit is optional (null: none)."""

    name = serializers.CharField(max_length=64)
    scopes = serializers.ListField(
        child=serializers.ChoiceField(choices=KeyScope.choices), allow_empty=True, max_length=4, required=False
    )
    models = serializers.ListField(
        child=serializers.CharField(max_length=255),
        source="allowed_models",
        allow_empty=True,
        max_length=100,
        required=False,
        help_text="Models this key may use; empty or absent: any.",
    )
    budget = serializers.DecimalField(
        max_digits=13,
        decimal_places=6,
        min_value=Decimal("0"),
        max_value=Decimal("1000000"),
        allow_null=True,
        required=False,
    )
    budget_period = serializers.ChoiceField(choices=BudgetPeriod.choices, required=False)
    rpm = serializers.IntegerField(min_value=1, max_value=1_000_000, allow_null=True, required=False)
    tpm = serializers.IntegerField(min_value=1, max_value=1_000_000_000, allow_null=True, required=False)
    expires_at = serializers.DateTimeField(allow_null=True, required=False)

    def to_internal_value(self, data: Any) -> Any:
        # DRF reads an empty string as null for a nullable number; "no budget" is spelled null, never "".
        if hasattr(data, "get") and data.get("budget") == "":
            error = serializers.ErrorDetail("A decimal number, or null for no budget.", code="invalid")
            raise serializers.ValidationError({"budget": [error]})
        return super().to_internal_value(data)

    def validate_scopes(self, value: list[str]) -> list[str]:
        return sorted(set(value), key=KeyScope.values.index)


class ApiKeyUsageOut(serializers.Serializer):
    spent = serializers.DecimalField(max_digits=20, decimal_places=6)
    period_started_at = serializers.DateTimeField()
    resets_at = serializers.DateTimeField(allow_null=True, help_text="null for a `total` budget period.")
    remaining = serializers.DecimalField(
        max_digits=20, decimal_places=6, allow_null=True, help_text="null when the key has no budget."
    )


class ApiKeyOut(serializers.ModelSerializer):
    """An API key with its limits and its spend; `key` is in full only in the response that created it."""

    key = serializers.SerializerMethodField()
    models = serializers.ListField(child=serializers.CharField(), source="allowed_models", read_only=True)
    scopes = serializers.ListField(child=serializers.CharField(), read_only=True)
    usage = serializers.SerializerMethodField()

    class Meta:
        model = ApiKey
        fields = [
            "id",
            "name",
            "key",
            "scopes",
            "models",
            "budget",
            "budget_period",
            "rpm",
            "tpm",
            "expires_at",
            "usage",
            "created_at",
            "last_used_at",
        ]
        read_only_fields = fields

    @extend_schema_field(serializers.CharField())
    def get_key(self, obj: ApiKey) -> str:
        return self.context.get("raw_token") or obj.masked

    @extend_schema_field(ApiKeyUsageOut)
    def get_usage(self, obj: ApiKey) -> dict:
        return ApiKeyUsageOut(key_usage(key=obj)).data


# --- Money ---------------------------------------------------------------------------------------------------


class CreditIn(StrictInputMixin, serializers.Serializer):
    """An admin top-up: a decimal string, more than 0 and at most 1,000,000, with up to 6 decimal places."""

    amount = serializers.DecimalField(
        max_digits=13, decimal_places=6, min_value=Decimal("0.000001"), max_value=Decimal("1000000")
    )
    memo = serializers.CharField(max_length=255, required=False, allow_blank=True, default="")


class LedgerEntryOut(serializers.ModelSerializer):
    """One ledger entry from its account's side: `amount` is its effect on that balance (negative: money out)."""

    transaction = serializers.IntegerField(source="transaction_id", read_only=True)
    kind = serializers.ChoiceField(
        choices=LedgerEntryKind.choices,
        read_only=True,
        help_text=(
            "What the line is: a charge's kind (`inference`, `rental`), `credit`, `hold`, `release`, `refund`, or "
            "money in and out (`topup`, `x402`, `payout`)."
        ),
    )
    ref = serializers.CharField(
        read_only=True, allow_null=True, help_text="The object it is for (`inference:12`, `rental:3`); null if none."
    )
    memo = serializers.CharField(source="transaction.memo", read_only=True)
    account = serializers.ChoiceField(source="account.kind", choices=LedgerAccountKind.choices, read_only=True)
    client = serializers.IntegerField(
        source="account.client_id",
        read_only=True,
        allow_null=True,
        help_text="The account's client; null for system accounts.",
    )
    created_at = serializers.DateTimeField(source="transaction.created_at", read_only=True)

    class Meta:
        model = LedgerEntry
        fields = ["id", "transaction", "kind", "ref", "memo", "account", "client", "amount", "created_at"]
        read_only_fields = fields
