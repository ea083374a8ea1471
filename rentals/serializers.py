"""Shapes of the rentals API (API.md §6)."""

import base64
import binascii
import re
from datetime import datetime

from django.utils import timezone
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from core.serializers import StrictInputMixin
from llm_models.choices import NodeCommandAction, NodeCommandStatus
from llm_models.models import NodeCommand
from rentals.choices import RentalStatus
from rentals.models import MAX_HOURS, Rental

SSH_KEY_MAX_LENGTH = 16384  # an RSA-16384 key is about 2,800 characters; a cap keeps commands small
SSH_KEY_TYPES = (
    "ssh-ed25519",
    "ssh-rsa",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "sk-ssh-ed25519@openssh.com",
    "sk-ecdsa-sha2-nistp256@openssh.com",
)
SSH_KEY_PATTERN = "^(" + "|".join(map(re.escape, SSH_KEY_TYPES)) + r") [A-Za-z0-9+/]+={0,2}( [!-~][ -~]{0,254})?$"
MAX_BULK_IDS = 50


def ssh_public_key_check(value: str) -> str:
    """One OpenSSH public key line: `<type> <base64 body> [comment]`, the body's own type matching."""
    if not re.fullmatch(SSH_KEY_PATTERN, value):
        raise serializers.ValidationError(
            "Expected one OpenSSH public key line: ssh-ed25519, ssh-rsa or ecdsa-sha2-*, its base64 body and an "
            "optional comment.",
            code="invalid_ssh_key",
        )
    kind, body = value.split(" ")[:2]
    try:
        blob = base64.b64decode(body, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise serializers.ValidationError("The key's body is not valid base64.", code="invalid_ssh_key") from exc
    # The blob starts with its own type as an SSH string: 4-byte length, then the name.
    length = int.from_bytes(blob[:4], "big") if len(blob) >= 4 else -1
    if blob[4 : 4 + length].decode("ascii", "replace") != kind or len(blob) < 4 + length + 16:
        raise serializers.ValidationError("The key's body does not match its type.", code="invalid_ssh_key")
    return value


class RentalStartIn(StrictInputMixin, serializers.Serializer):
    node_id = serializers.IntegerField(min_value=1, max_value=2**31 - 1)
    hours = serializers.IntegerField(min_value=1, max_value=MAX_HOURS)
    ssh_public_key = serializers.CharField(
        max_length=SSH_KEY_MAX_LENGTH,
        required=False,
        allow_blank=True,
        validators=[],
        help_text="An OpenSSH public key line; the node installs it for the renter.",
    )

    def validate_ssh_public_key(self, value: str) -> str:
        return ssh_public_key_check(value) if value else value


class AccessOut(serializers.Serializer):
    ssh_host = serializers.CharField(allow_null=True)
    ssh_port = serializers.IntegerField(allow_null=True)
    ssh_user = serializers.CharField(allow_null=True)


class RentalOut(serializers.ModelSerializer):
    node_id = serializers.IntegerField()
    node_name = serializers.CharField(source="node.name")
    gpu_model = serializers.SerializerMethodField()
    region = serializers.CharField(source="node.region")
    status = serializers.ChoiceField(choices=RentalStatus.choices)
    time_remaining = serializers.SerializerMethodField(help_text="Seconds until ends_at while active, else 0.")
    access = serializers.SerializerMethodField(help_text="How to reach the node; null once the rental is over.")

    class Meta:
        model = Rental
        fields = [
            "id",
            "node_id",
            "node_name",
            "gpu_model",
            "region",
            "status",
            "hours",
            "price_per_hour",
            "total",
            "charged",
            "refunded",
            "starts_at",
            "ends_at",
            "ended_at",
            "time_remaining",
            "ssh_public_key",
            "access",
            "created_at",
        ]
        read_only_fields = fields

    def _now(self) -> datetime:
        return self.context.get("now") or timezone.now()

    @extend_schema_field(serializers.CharField(allow_null=True))
    def get_gpu_model(self, rental: Rental) -> str | None:
        return rental.node.gpu.gpu_model if rental.node.gpu else None

    @extend_schema_field(serializers.IntegerField(min_value=0))
    def get_time_remaining(self, rental: Rental) -> int:
        if rental.status != RentalStatus.ACTIVE:
            return 0
        return max(int((rental.ends_at - self._now()).total_seconds()), 0)

    @extend_schema_field(AccessOut(allow_null=True))
    def get_access(self, rental: Rental) -> dict | None:
        if rental.status != RentalStatus.ACTIVE or rental.ends_at <= self._now():
            return None
        node = rental.node
        return {"ssh_host": node.ssh_host, "ssh_port": node.ssh_port, "ssh_user": node.ssh_user}


class JobOut(serializers.ModelSerializer):
    kind = serializers.ChoiceField(source="action", choices=NodeCommandAction.choices)
    status = serializers.ChoiceField(choices=NodeCommandStatus.choices)
    rental_id = serializers.IntegerField(allow_null=True)

    class Meta:
        model = NodeCommand
        fields = ["id", "kind", "status", "result", "rental_id", "created_at", "updated_at"]
        read_only_fields = fields


class InventoryQueryIn(serializers.Serializer):
    """The inventory's filters: text without NUL (which no stored value can hold; PostgreSQL refuses it)."""

    gpu_model = serializers.CharField(required=False, allow_blank=True, default="")
    region = serializers.CharField(required=False, allow_blank=True, default="")


class InventoryItemOut(serializers.Serializer):
    gpu_model = serializers.CharField()
    region = serializers.CharField()
    nodes_total = serializers.IntegerField()
    nodes_available = serializers.IntegerField()
    gpus_available = serializers.IntegerField()
    lowest_price_per_hour = serializers.DecimalField(
        max_digits=12, decimal_places=6, allow_null=True, help_text="Among available nodes; null if none."
    )


class BulkIn(StrictInputMixin, serializers.Serializer):
    ids = serializers.ListField(
        child=serializers.IntegerField(min_value=1, max_value=2**31 - 1), min_length=1, max_length=MAX_BULK_IDS
    )

    def validate_ids(self, value: list[int]) -> list[int]:
        return list(dict.fromkeys(value))  # a repeated id is answered once, in its first place


class BulkErrorOut(serializers.Serializer):
    code = serializers.CharField()
    detail = serializers.CharField()


class BulkResultOut(serializers.Serializer):
    id = serializers.IntegerField()
    ok = serializers.BooleanField()
    status = serializers.IntegerField(help_text="The HTTP status the single-id call would have answered.")
    job_id = serializers.IntegerField(required=False)
    error = BulkErrorOut(required=False)
