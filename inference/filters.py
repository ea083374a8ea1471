import django_filters

from core.filters import FilterSet
from inference.choices import InferenceChannel, InferenceEndpoint, InferenceStatus
from inference.models import InferenceRequest


class InferenceFilter(FilterSet):
    status = django_filters.ChoiceFilter(choices=InferenceStatus.choices)
    channel = django_filters.ChoiceFilter(choices=InferenceChannel.choices)
    endpoint = django_filters.ChoiceFilter(choices=InferenceEndpoint.choices)

    class Meta:
        model = InferenceRequest
        fields = ["status", "channel", "endpoint", "desired_model", "node", "batch"]
