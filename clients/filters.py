import django_filters

from clients.choices import ClientRole
from clients.models import Client
from core.filters import FilterSet, StrictBooleanFilter


class ClientFilter(FilterSet):
    role = django_filters.ChoiceFilter(choices=ClientRole.choices)
    pending_provider = StrictBooleanFilter(method="filter_pending", label="Applied, not yet approved")

    class Meta:
        model = Client
        fields = ["role", "is_gpu_provider_approved"]

    def filter_pending(self, queryset, name, value):  # type: ignore[no-untyped-def]
        pending = {"role": ClientRole.GPU_PROVIDER, "is_gpu_provider_approved": False}
        return queryset.filter(**pending) if value else queryset.exclude(**pending)
