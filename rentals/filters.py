import django_filters

from core.filters import FilterSet, IntegerFilter
from rentals.choices import RentalStatus
from rentals.models import Rental


class RentalFilter(FilterSet):
    status = django_filters.ChoiceFilter(choices=RentalStatus.choices)
    node = IntegerFilter(field_name="node_id", label="Node id")

    class Meta:
        model = Rental
        fields = ["status", "node"]
