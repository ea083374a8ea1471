"""Shapes of seed 004's `llm_models` endpoints."""

from decimal import Decimal
from typing import Any

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from core.serializers import StrictInputMixin, StrictTypesMixin
from gpus.models import Gpu
from llm_models.choices import NodeCapability

# Up to 99999.999999 per million tokens: the bound is in the digits, so the documented pattern states it exactly.
PRICE: dict[str, Any] = {"max_digits": 11, "decimal_places": 6, "min_value": Decimal("0")}


class NodeModelIn(StrictInputMixin, serializers.Serializer):
    name = serializers.CharField(max_length=255)
    input_price_per_million = serializers.DecimalField(**PRICE, required=False)
    output_price_per_million = serializers.DecimalField(**PRICE, required=False)
    context_window = serializers.IntegerField(min_value=1, max_value=100_000_000, required=False, allow_null=True)


class NodeModelsField(serializers.ListField):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(child=NodeModelIn(), max_length=256, **kwargs)

    def to_internal_value(self, data: Any) -> list[dict[str, Any]]:
        models = super().to_internal_value(data)
        names = [m["name"] for m in models]
        if len(set(names)) != len(names):
            raise serializers.ValidationError("Each model may be listed once.", code="duplicate_model")
        return models


@extend_schema_field(OpenApiTypes.URI)
class EndpointUrlField(serializers.CharField):
    """A URL checked by the SSRF guard in node_register, so every bad URL gets one code: unsafe_endpoint."""


class CapabilitiesField(serializers.ListField):
    """What the node offers: `inference`, `training`, `containers` (API.md §14); repeats are dropped."""

    def __init__(self, **kwargs):
        super().__init__(child=serializers.ChoiceField(choices=NodeCapability.choices), max_length=8, **kwargs)

    def to_internal_value(self, data):
        if isinstance(data, list) and len(data) > self.max_length:  # before repeats are dropped
            self.fail("max_length", max_length=self.max_length)
        return sorted(set(super().to_internal_value(data)))


class NodeRegisterIn(StrictInputMixin, serializers.Serializer):
    name = serializers.CharField(max_length=128)
    endpoint_url = EndpointUrlField(max_length=500, help_text="OpenAI-compatible base URL, /v1 included.")
    api_key = serializers.CharField(max_length=512, required=False, allow_blank=True, write_only=True)
    gpu = serializers.PrimaryKeyRelatedField(queryset=Gpu.objects.all(), required=False, allow_null=True)
    region = serializers.CharField(max_length=64, required=False, allow_blank=True)
    models = NodeModelsField(required=False)
    # Access details a renter of this node is shown (API.md §6); the operator may also set them in the admin.
    ssh_host = serializers.RegexField(
        r"^[A-Za-z0-9][A-Za-z0-9.:-]*$", max_length=255, required=False, allow_null=True, help_text="Host name or IP."
    )
    ssh_port = serializers.IntegerField(min_value=1, max_value=65535, required=False, allow_null=True)
    ssh_user = serializers.RegexField(r"^[a-z_][a-z0-9_-]{0,31}$", max_length=32, required=False, allow_null=True)
    capabilities = CapabilitiesField(required=False, help_text='Default ["inference"].')


class NodeModelOut(serializers.Serializer):
    name = serializers.CharField()
    input_price_per_million = serializers.DecimalField(max_digits=12, decimal_places=6)
    output_price_per_million = serializers.DecimalField(max_digits=12, decimal_places=6)
    context_window = serializers.IntegerField(allow_null=True)


class NodeRegisterOut(serializers.Serializer):
    node_id = serializers.IntegerField()
    node_token = serializers.CharField(help_text="Shown once; store it on the node.")
    name = serializers.CharField()
    status = serializers.CharField()
    region = serializers.CharField()
    gpu = serializers.IntegerField(allow_null=True)
    models = NodeModelOut(many=True)
    heartbeat_interval_s = serializers.IntegerField()


class HeartbeatGpuIn(StrictTypesMixin, serializers.Serializer):
    index = serializers.IntegerField(min_value=0, max_value=1023, required=False)
    name = serializers.CharField(max_length=128, required=False)
    utilization = serializers.FloatField(min_value=0, max_value=100, required=False)
    memory_used_mb = serializers.FloatField(min_value=0, max_value=1e9, required=False)
    memory_total_mb = serializers.FloatField(min_value=0, max_value=1e9, required=False)
    temperature_c = serializers.FloatField(min_value=-50, max_value=200, required=False)


class HeartbeatMetricsIn(StrictTypesMixin, serializers.Serializer):
    """Live metrics; unknown keys are dropped (agents may be newer than the server), known ones bounded."""

    gpu_utilization = serializers.FloatField(min_value=0, max_value=100, required=False, allow_null=True)
    gpu_memory_used_mb = serializers.FloatField(min_value=0, max_value=1e9, required=False, allow_null=True)
    gpu_memory_total_mb = serializers.FloatField(min_value=0, max_value=1e9, required=False, allow_null=True)
    gpu_temperature_c = serializers.FloatField(min_value=-50, max_value=200, required=False, allow_null=True)
    cpu_percent = serializers.FloatField(min_value=0, max_value=100, required=False, allow_null=True)
    ram_used_mb = serializers.FloatField(min_value=0, max_value=1e10, required=False, allow_null=True)
    ram_total_mb = serializers.FloatField(min_value=0, max_value=1e10, required=False, allow_null=True)
    gpus: "serializers.ListSerializer[Any]" = serializers.ListSerializer(
        child=HeartbeatGpuIn(required=False), required=False, max_length=64
    )


HOST_PATTERN = r"^[A-Za-z0-9\[][A-Za-z0-9.:\[\]-]{0,254}$"  # a host name, an IPv4 or a (bracketed) IPv6 address
# A container image reference: [registry[:port]/]name[:tag][@sha256:digest]; no spaces, no shell characters.
IMAGE_REF_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._/:@+-]{0,254}$"
MAX_REPORTED_PORTS = 20


def _http_url(value: str) -> None:
    if not value.lower().startswith(("http://", "https://")):
        raise serializers.ValidationError("Expected an http:// or https:// URL.", code="invalid")


class CommandAccessIn(StrictInputMixin, serializers.Serializer):
    """How a renter reaches an instance, as its node reported it in a `start` result (API.md §14)."""

    ssh_host = serializers.RegexField(HOST_PATTERN, max_length=255)
    ssh_port = serializers.IntegerField(min_value=1, max_value=65535)
    ssh_user = serializers.RegexField(r"^[a-z_][a-z0-9_-]{0,31}$", max_length=32)
    jupyter_url = serializers.URLField(max_length=500, required=False, allow_null=True, validators=[_http_url])
    ports = serializers.DictField(
        child=serializers.RegexField(r"^[A-Za-z0-9.\[\]:-]{1,255}:[0-9]{1,5}$", max_length=262),
        required=False,
        help_text='Container port -> "host:port" where the renter reaches it.',
    )

    def validate_ports(self, value: dict[str, str]) -> dict[str, str]:
        if len(value) > MAX_REPORTED_PORTS:
            raise serializers.ValidationError(f"At most {MAX_REPORTED_PORTS} ports.", code="max_length")
        for key in value:
            if not (key.isdigit() and 1 <= int(key) <= 65535):
                raise serializers.ValidationError(f"{key!r} is not a port (1..65535).", code="invalid")
        return {str(int(k)): v for k, v in value.items()}


MAX_REPORTED_METRICS = 32
# A model name a node reports (a fine-tuned `ft:<base>:<suffix>:<job id>`): no spaces, no shell characters.
MODEL_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._/:@+-]{0,254}$"


class TrainingMetricsField(serializers.DictField):
    """A training report's metrics (`loss`, `step`, `epoch`, ...): at most 32 finite numbers under short names."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(child=serializers.FloatField(min_value=-1e18, max_value=1e18), **kwargs)

    def to_internal_value(self, data: Any) -> dict[str, float]:
        if isinstance(data, dict) and len(data) > MAX_REPORTED_METRICS:
            raise serializers.ValidationError(f"At most {MAX_REPORTED_METRICS} metrics.", code="max_length")
        if isinstance(data, dict) and any(isinstance(v, bool) or not isinstance(v, int | float) for v in data.values()):
            raise serializers.ValidationError("Every metric must be a JSON number.")
        value = super().to_internal_value(data)
        for key, number in value.items():
            if not (0 < len(key) <= 64) or number != number or number in (float("inf"), float("-inf")):
                raise serializers.ValidationError(f"{key[:64]!r}: a finite number under a name of 1..64 characters.")
        return value


class CommandOutcomeIn(StrictTypesMixin, serializers.Serializer):
    """The structured fields a result may carry beside `output` (validated apart: a node's output is untrusted, and
    a bad one fails its command instead of the whole heartbeat)."""

    access = CommandAccessIn(required=False)
    snapshot_ref = serializers.RegexField(IMAGE_REF_PATTERN, max_length=255, required=False)
    progress = serializers.FloatField(min_value=0, max_value=1, required=False)
    metrics = TrainingMetricsField(required=False)
    fine_tuned_model = serializers.RegexField(MODEL_NAME_PATTERN, max_length=255, required=False)


class CommandResultIn(StrictTypesMixin, serializers.Serializer):
    id = serializers.IntegerField(min_value=1, max_value=2**63 - 1)  # no id is larger (SQLite cannot even compare)
    # `running`: an intermediate report; the command stays open until succeeded, failed or unsupported.
    status = serializers.ChoiceField(choices=["running", "succeeded", "failed", "unsupported"])
    output = serializers.CharField(max_length=8192, required=False, allow_blank=True)
    # Typed here, their contents checked apart (services._structured): a bad value fails its command, not the
    # heartbeat, which would make the agent drop every result it carried.
    access = serializers.DictField(
        required=False,
        help_text="`start`: how the renter reaches the instance: {ssh_host, ssh_port, ssh_user, jupyter_url?, "
        'ports?: {"<container port>": "host:port"}}. An invalid one fails the command.',
    )
    snapshot_ref = serializers.CharField(
        required=False,
        trim_whitespace=False,
        help_text="`stop` with `snapshot`: the saved image's reference. An invalid one fails the command.",
    )
    progress = serializers.FloatField(
        required=False,
        help_text="`train`, status `running`: the job's progress, 0..1. An invalid one fails the command.",
    )
    metrics = serializers.DictField(
        required=False,
        help_text="`train`, status `running`: numbers such as step, epoch, loss. An invalid one fails the command.",
    )
    fine_tuned_model = serializers.CharField(
        required=False,
        trim_whitespace=False,
        help_text="`train`, status `succeeded`: the model the job produced. An invalid one fails the command.",
    )


class HeartbeatIn(StrictInputMixin, serializers.Serializer):
    node_token = serializers.CharField(max_length=128, required=False, write_only=True)
    metrics = HeartbeatMetricsIn(required=False)
    models = NodeModelsField(required=False)
    active_requests = serializers.IntegerField(min_value=0, max_value=1_000_000, required=False)
    results: "serializers.ListSerializer[Any]" = serializers.ListSerializer(
        child=CommandResultIn(required=False), required=False, max_length=100
    )
    actions = serializers.ListField(
        child=serializers.CharField(max_length=64),
        max_length=64,
        required=False,
        help_text="The command actions the agent has hooks for now (sent when it starts): an action it answered "
        "`unsupported` before is accepted again.",
    )
    capabilities = CapabilitiesField(required=False, help_text="Replaces what the node declared before.")


class NodeCommandOut(serializers.Serializer):
    id = serializers.IntegerField()
    action = serializers.CharField()
    params = serializers.DictField()


class HeartbeatOut(serializers.Serializer):
    status = serializers.CharField()
    heartbeat_interval_s = serializers.IntegerField()
    commands = NodeCommandOut(many=True)


class DeregisterIn(StrictInputMixin, serializers.Serializer):
    node_token = serializers.CharField(max_length=128, required=False, write_only=True)


class AvailableModelOut(serializers.Serializer):
    name = serializers.CharField()
    live_nodes = serializers.IntegerField()
    input_price_per_million = serializers.DecimalField(max_digits=12, decimal_places=6)
    output_price_per_million = serializers.DecimalField(max_digits=12, decimal_places=6)
    context_window = serializers.IntegerField(allow_null=True)
