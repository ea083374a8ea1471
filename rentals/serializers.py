"""Shapes of the rentals API (API.md §6)."""

import base64
import binascii
import re
from datetime import datetime

from django.utils import timezone
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from core.serializers import StrictInputMixin
from gpus.serializers import GpuDiscountsOut
from llm_models.choices import NodeCapability, NodeCommandAction, NodeCommandStatus
from llm_models.models import NodeCommand
from llm_models.serializers import IMAGE_REF_PATTERN
from rentals.choices import RentalBilling, RentalStatus
from rentals.models import MAX_HOURS, MAX_PERIODS, Rental, Snapshot

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


MAX_ENV = 50
MAX_PORTS = 20
MAX_VOLUMES = 8
ENV_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]{0,127}$"
# An absolute path of plain segments: no "..", no spaces or shell characters, not "/" itself.
VOLUME_PATH_PATTERN = r"^(/[A-Za-z0-9._-]+)+/?$"


class _EnvValueField(serializers.CharField):
    """An environment value: a JSON string (a number or a boolean is refused rather than turned into text)."""

    def to_internal_value(self, data):
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


class VolumeIn(StrictInputMixin, serializers.Serializer):
    path = serializers.RegexField(VOLUME_PATH_PATTERN, max_length=255, help_text="Absolute path in the container.")
    size_gb = serializers.IntegerField(min_value=1, max_value=10000)

    def validate_path(self, value: str) -> str:
        if any(part in (".", "..") for part in value.split("/")):
            raise serializers.ValidationError("A volume path may not contain . or .. segments.", code="invalid")
        return value.rstrip("/")


class RentalStartIn(StrictInputMixin, serializers.Serializer):
    node_id = serializers.IntegerField(min_value=1, max_value=2**31 - 1)
    billing = serializers.ChoiceField(choices=RentalBilling.choices, default=RentalBilling.HOURLY)
    hours = serializers.IntegerField(
        min_value=1, max_value=MAX_HOURS, required=False, help_text="`hourly` billing (required there)."
    )
    periods = serializers.IntegerField(
        min_value=1, max_value=MAX_PERIODS, required=False, help_text="`daily`, `weekly`, `monthly` (required there)."
    )
    ssh_public_key = serializers.CharField(
        max_length=SSH_KEY_MAX_LENGTH,
        required=False,
        allow_blank=True,
        validators=[],
        help_text="An OpenSSH public key line; the node installs it for the renter.",
    )
    image = serializers.RegexField(
        IMAGE_REF_PATTERN, max_length=255, required=False, allow_blank=True, help_text="A container image reference."
    )
    env = serializers.DictField(
        child=_EnvValueField(max_length=4096, allow_blank=True),
        required=False,
        help_text=f"Environment variables of the instance, at most {MAX_ENV}.",
    )
    ports = serializers.ListField(
        child=serializers.IntegerField(min_value=1, max_value=65535),
        required=False,
        max_length=MAX_PORTS,
        help_text="Container ports to expose.",
    )
    volumes = serializers.ListField(child=VolumeIn(), required=False, max_length=MAX_VOLUMES)
    jupyter = serializers.BooleanField(required=False, default=False)
    snapshot_id = serializers.IntegerField(
        min_value=1, max_value=2**31 - 1, required=False, allow_null=True, help_text="Start from your snapshot."
    )

    def validate_ssh_public_key(self, value: str) -> str:
        return ssh_public_key_check(value) if value else value

    def validate_env(self, value: dict[str, str]) -> dict[str, str]:
        if len(value) > MAX_ENV:
            raise serializers.ValidationError(f"At most {MAX_ENV} variables.", code="max_length")
        bad = sorted(name for name in value if not re.fullmatch(ENV_NAME_PATTERN, name))
        if bad:
            raise serializers.ValidationError(
                f"Not a valid variable name (letters, digits and _, not starting with a digit): {', '.join(bad)}.",
                code="invalid_env_name",
            )
        return value

    def validate_ports(self, value: list[int]) -> list[int]:
        if len(set(value)) != len(value):
            raise serializers.ValidationError("Each port may be listed once.", code="duplicate_port")
        return value

    def validate_volumes(self, value: list[dict]) -> list[dict]:
        paths = [v["path"] for v in value]
        if len(set(paths)) != len(paths):
            raise serializers.ValidationError("Each volume path may be listed once.", code="duplicate_volume")
        return value

    def validate(self, attrs: dict) -> dict:
        billing = attrs["billing"]
        needs = {RentalBilling.HOURLY: "hours", RentalBilling.PAYG: None}.get(billing, "periods")
        errors: dict[str, list[serializers.ErrorDetail]] = {}
        for name in ("hours", "periods"):
            if name == needs and name not in attrs:
                errors[name] = [serializers.ErrorDetail(f"Required for {billing} billing.", code="required")]
            elif name != needs and name in attrs:
                errors[name] = [serializers.ErrorDetail(f"Not used by {billing} billing.", code="not_allowed")]
        if attrs.get("image") and attrs.get("snapshot_id") is not None:
            errors["image"] = [
                serializers.ErrorDetail("Give an image or a snapshot_id, not both.", code="image_and_snapshot")
            ]
        if errors:
            raise serializers.ValidationError(errors)
        return attrs


class RentalExtendIn(StrictInputMixin, serializers.Serializer):
    hours = serializers.IntegerField(min_value=1, max_value=MAX_HOURS)


class RentalStopIn(StrictInputMixin, serializers.Serializer):
    snapshot = serializers.BooleanField(required=False, default=False, help_text="Save the instance first.")


class AccessOut(serializers.Serializer):
    ssh_host = serializers.CharField(allow_null=True)
    ssh_port = serializers.IntegerField(allow_null=True)
    ssh_user = serializers.CharField(allow_null=True)
    jupyter_url = serializers.CharField(allow_null=True, required=False)
    ports = serializers.DictField(child=serializers.CharField(), required=False, help_text='{"8888": "host:port"}')


class VolumeOut(serializers.Serializer):
    path = serializers.CharField()
    size_gb = serializers.IntegerField()


class RentalOut(serializers.ModelSerializer):
    node_id = serializers.IntegerField()
    node_name = serializers.CharField(source="node.name")
    gpu_model = serializers.SerializerMethodField()
    region = serializers.CharField(source="node.region")
    status = serializers.ChoiceField(choices=RentalStatus.choices)
    time_remaining = serializers.SerializerMethodField(
        help_text="Seconds until ends_at while active, else 0; null for pay as you go (no end)."
    )
    access = serializers.SerializerMethodField(
        help_text="How to reach the instance (as its node reported it, else the node's SSH details); null once the "
        "rental is over."
    )
    billing = serializers.ChoiceField(choices=RentalBilling.choices)
    env = serializers.DictField(child=serializers.CharField())
    ports = serializers.ListField(child=serializers.IntegerField())
    volumes = VolumeOut(many=True)
    snapshot_id = serializers.IntegerField(allow_null=True)

    class Meta:
        model = Rental
        fields = [
            "id",
            "node_id",
            "node_name",
            "gpu_model",
            "region",
            "status",
            "billing",
            "hours",
            "periods",
            "discount",
            "price_per_hour",
            "total",
            "charged",
            "refunded",
            "starts_at",
            "ends_at",
            "ended_at",
            "time_remaining",
            "ssh_public_key",
            "image",
            "env",
            "ports",
            "volumes",
            "jupyter",
            "snapshot_id",
            "access",
            "created_at",
        ]
        read_only_fields = fields

    def _now(self) -> datetime:
        return self.context.get("now") or timezone.now()

    @extend_schema_field(serializers.CharField(allow_null=True))
    def get_gpu_model(self, rental: Rental) -> str | None:
        return rental.node.gpu.gpu_model if rental.node.gpu else None

    @extend_schema_field(serializers.IntegerField(min_value=0, allow_null=True))
    def get_time_remaining(self, rental: Rental) -> int | None:
        if rental.status != RentalStatus.ACTIVE:
            return 0
        if rental.ends_at is None:
            return None
        return max(int((rental.ends_at - self._now()).total_seconds()), 0)

    @extend_schema_field(AccessOut(allow_null=True))
    def get_access(self, rental: Rental) -> dict | None:
        if rental.status != RentalStatus.ACTIVE or (rental.ends_at is not None and rental.ends_at <= self._now()):
            return None
        if rental.access:
            return rental.access
        node = rental.node
        return {"ssh_host": node.ssh_host, "ssh_port": node.ssh_port, "ssh_user": node.ssh_user}


class SnapshotOut(serializers.ModelSerializer):
    rental = serializers.IntegerField(source="rental_id")
    node_id = serializers.IntegerField()

    class Meta:
        model = Snapshot
        fields = ["id", "rental", "node_id", "image_ref", "created_at"]
        read_only_fields = fields


class RegionOut(serializers.Serializer):
    region = serializers.CharField()
    nodes_total = serializers.IntegerField()
    nodes_available = serializers.IntegerField(help_text="Live and not rented now.")
    gpu_models = serializers.ListField(child=serializers.CharField())


class OfferOut(serializers.Serializer):
    node_id = serializers.IntegerField(source="pk")
    gpu_model = serializers.CharField()
    gpu_count = serializers.IntegerField()
    gpu_memory_gb = serializers.IntegerField(allow_null=True)
    region = serializers.CharField()
    price_per_hour = serializers.DecimalField(max_digits=12, decimal_places=6)
    discounts = GpuDiscountsOut(source="gpu.discounts")
    reliability = serializers.FloatField(min_value=0, max_value=1, help_text="Live share of the last 24 h.")
    capabilities = serializers.ListField(child=serializers.ChoiceField(choices=NodeCapability.choices))


class JobOut(serializers.ModelSerializer):
    kind = serializers.ChoiceField(source="action", choices=NodeCommandAction.choices)
    status = serializers.ChoiceField(choices=NodeCommandStatus.choices)
    rental_id = serializers.IntegerField(allow_null=True)

    outcome = serializers.DictField(help_text="Structured fields the node reported (access, snapshot_ref).")

    class Meta:
        model = NodeCommand
        fields = ["id", "kind", "status", "result", "outcome", "rental_id", "created_at", "updated_at"]
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
