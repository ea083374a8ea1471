import django_filters

from core.filters import FilterSet, IntegerFilter
from payments.choices import PayoutStatus, TopUpStatus
from payments.models import Payout, TopUp


class _MoneyFilter(FilterSet):
    client = IntegerFilter(field_name="client", label="Client id (admins; others see only their own)")
    date_from = django_filters.DateFilter(field_name="created_at", lookup_expr="date__gte", label="Created on or after")
    date_to = django_filters.DateFilter(field_name="created_at", lookup_expr="date__lte", label="Created on or before")


class TopUpFilter(_MoneyFilter):
    status = django_filters.ChoiceFilter(choices=TopUpStatus.choices)

    class Meta:
        model = TopUp
        fields = ["status", "client", "date_from", "date_to"]


class PayoutFilter(_MoneyFilter):
    status = django_filters.ChoiceFilter(choices=PayoutStatus.choices)

    class Meta:
        model = Payout
        fields = ["status", "client", "date_from", "date_to"]
