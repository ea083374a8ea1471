"""Shapes of the public market API. Public fields only: no endpoint URL, token, backend key, email or API key."""

from typing import Any

from rest_framework import serializers

from llm_models.choices import NodeStatus
from market.selectors import provider_public_name

PRICE: dict[str, Any] = {"max_digits": 13, "decimal_places": 6}
MONEY: dict[str, Any] = {"max_digits": 20, "decimal_places": 6}


class RoundedFloatField(serializers.FloatField):
    """A measured figure, rounded to 4 decimal places (null when nothing was measured)."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("read_only", True)
        kwargs.setdefault("allow_null", True)
        super().__init__(**kwargs)

    def to_representation(self, value: Any) -> float:  # type: ignore[override]  # stubs: FloatField gives str
        return round(float(value), 4)


UPTIME_HELP = "Fraction (0..1) of heartbeat slots in the window in which the node was heard; null before one passed."


class MarketModelOut(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    live_nodes = serializers.IntegerField()
    input_price_per_million = serializers.DecimalField(**PRICE, allow_null=True, help_text="Lowest among live nodes.")
    output_price_per_million = serializers.DecimalField(**PRICE, allow_null=True, help_text="Lowest among live nodes.")
    context_window = serializers.IntegerField(source="context_window_served", allow_null=True)
    latency_p50_ms = RoundedFloatField(help_text="Median latency of completed requests for it in the last 24 h.")


class MarketGpuOut(serializers.Serializer):
    gpu_model = serializers.CharField()
    gpu_count = serializers.IntegerField()
    gpu_memory_gb = serializers.IntegerField(allow_null=True)
    gpu_info = serializers.CharField()
    cpu_name = serializers.CharField()
    cpu_core = serializers.CharField()
    ram = serializers.CharField()


class ProviderNameField(serializers.CharField):
    """The node owner's public name (provider_public_name): never its email."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(read_only=True, **kwargs)

    def to_representation(self, value: Any) -> str:
        return provider_public_name(value)


class MarketMeasuredOut(serializers.Serializer):
    latency_p50_ms = RoundedFloatField(help_text="Median latency of its completed requests in the last 24 h.")
    throughput_tps = RoundedFloatField(help_text="Output tokens per second over those requests.")
    uptime_5m = RoundedFloatField(help_text=UPTIME_HELP)
    uptime_30m = RoundedFloatField(help_text=UPTIME_HELP)
    uptime_1d = RoundedFloatField(help_text=UPTIME_HELP)


class MarketProviderOut(MarketMeasuredOut):
    node_id = serializers.IntegerField()
    node_name = serializers.CharField(source="node.name")
    provider = ProviderNameField(source="node.owner")
    region = serializers.CharField(source="node.region")
    gpu_model = serializers.CharField(source="node.gpu.gpu_model", allow_null=True, default=None)
    gpu_count = serializers.IntegerField(source="node.gpu.gpu_count", allow_null=True, default=None)
    input_price_per_million = serializers.DecimalField(**PRICE)
    output_price_per_million = serializers.DecimalField(**PRICE)
    context_window = serializers.IntegerField(allow_null=True)
    last_heartbeat_at = serializers.DateTimeField(source="node.last_heartbeat_at", allow_null=True)


class MarketNodeModelOut(serializers.Serializer):
    model_id = serializers.IntegerField()
    name = serializers.CharField(source="model.name")
    input_price_per_million = serializers.DecimalField(**PRICE)
    output_price_per_million = serializers.DecimalField(**PRICE)
    context_window = serializers.IntegerField(allow_null=True)


class MarketNodeOut(MarketMeasuredOut):
    id = serializers.IntegerField()
    name = serializers.CharField()
    provider = ProviderNameField(source="owner")
    status = serializers.ChoiceField(choices=NodeStatus.choices)
    live = serializers.BooleanField(help_text="Online, heard from within the timeout, of an approved provider.")
    region = serializers.CharField()
    gpu = MarketGpuOut(allow_null=True)
    models = MarketNodeModelOut(source="node_models", many=True)
    active_requests = serializers.IntegerField()
    last_heartbeat_at = serializers.DateTimeField(allow_null=True)
    registered_at = serializers.DateTimeField()


class MarketNodeDetailOut(MarketNodeOut):
    latest_metrics = serializers.DictField(help_text="The metrics of its last heartbeat.")


class MonitoringQueryIn(serializers.Serializer):
    since = serializers.DateTimeField(required=False, help_text="ISO 8601; samples recorded at or after this.")
    until = serializers.DateTimeField(required=False, help_text="ISO 8601; samples recorded at or before this.")

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if "since" in attrs and "until" in attrs and attrs["since"] > attrs["until"]:
            raise serializers.ValidationError({"until": ["Must not be before since."]}, code="invalid")
        return attrs


class MetricSampleOut(serializers.Serializer):
    recorded_at = serializers.DateTimeField()
    metrics = serializers.DictField()
    active_requests = serializers.IntegerField()


class MonitoringOut(serializers.Serializer):
    node_id = serializers.IntegerField()
    status = serializers.ChoiceField(choices=NodeStatus.choices)
    live = serializers.BooleanField()
    last_heartbeat_at = serializers.DateTimeField(allow_null=True)
    latest_metrics = serializers.DictField()
    active_requests = serializers.IntegerField()
    count = serializers.IntegerField(help_text="Samples matching the time filters.")
    next = serializers.URLField(allow_null=True)
    previous = serializers.URLField(allow_null=True)
    results = MetricSampleOut(many=True, help_text="Samples, newest first.")


class StatsTotalLiveOut(serializers.Serializer):
    total = serializers.IntegerField()
    live = serializers.IntegerField()


class StatsGpusOut(serializers.Serializer):
    total_machines = serializers.IntegerField(help_text="GPU machines registered.")
    live_machines = serializers.IntegerField(help_text="GPU machines a live node runs on.")
    live_gpus = serializers.IntegerField(help_text="Sum of gpu_count over those machines.")


class StatsInferencesOut(serializers.Serializer):
    today = serializers.IntegerField(help_text="Completed since 00:00 UTC.")
    total = serializers.IntegerField(help_text="Completed, all time.")


class StatsRevenueOut(serializers.Serializer):
    operator = serializers.DecimalField(**MONEY)
    platform = serializers.DecimalField(**MONEY)
    treasury = serializers.DecimalField(**MONEY)


class MarketStatsOut(serializers.Serializer):
    nodes = StatsTotalLiveOut()
    gpus = StatsGpusOut()
    models = StatsTotalLiveOut()
    inferences = StatsInferencesOut()
    average_latency_ms = RoundedFloatField(help_text="Mean latency of completed requests in the last 24 h.")
    revenue = StatsRevenueOut(help_text="Totals of the shares of every settled charge.")
