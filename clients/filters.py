import django_filters
from django.db.models import QuerySet

from clients.choices import ClientRole, LedgerAccountKind, LedgerEntryKind
from clients.models import Client, LedgerEntry
from core.filters import FilterSet, IntegerFilter, StrictBooleanFilter, TextFilter


class ClientFilter(FilterSet):
    role = django_filters.ChoiceFilter(choices=ClientRole.choices)
    pending_provider = StrictBooleanFilter(method="filter_pending", label="Applied, not yet approved")

    class Meta:
        model = Client
        fields = ["role", "is_gpu_provider_approved"]

    def filter_pending(self, queryset: QuerySet[Client], name: str, value: bool) -> QuerySet[Client]:
        pending = {"role": ClientRole.GPU_PROVIDER, "is_gpu_provider_approved": False}
        return queryset.filter(**pending) if value else queryset.exclude(**pending)


class LedgerEntryFilter(FilterSet):
    kind = django_filters.ChoiceFilter(choices=LedgerEntryKind.choices)
    ref = TextFilter(label="The object an entry is for, e.g. `inference:12`")
    account = django_filters.ChoiceFilter(field_name="account__kind", choices=LedgerAccountKind.choices)
    client = IntegerFilter(field_name="account__client", label="Client id (admins; others see only their own)")
    date_from = django_filters.DateFilter(
        field_name="transaction__created_at", lookup_expr="date__gte", label="On or after this day (UTC)"
    )
    date_to = django_filters.DateFilter(
        field_name="transaction__created_at", lookup_expr="date__lte", label="On or before this day (UTC)"
    )

    class Meta:
        model = LedgerEntry
        fields = ["kind", "ref", "account", "client", "date_from", "date_to"]
