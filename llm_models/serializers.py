"""Shapes of seed 004's `llm_models` endpoints."""

from decimal import Decimal
from typing import Any

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from core.serializers import StrictInputMixin, StrictTypesMixin
from gpus.models import Gpu

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


class CommandResultIn(StrictTypesMixin, serializers.Serializer):
    id = serializers.IntegerField(min_value=1)
    status = serializers.ChoiceField(choices=["succeeded", "failed", "unsupported"])
    output = serializers.CharField(max_length=8192, required=False, allow_blank=True)


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
