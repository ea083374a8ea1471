import django_filters
from drf_spectacular.utils import extend_schema_field

from core.filters import DecimalFilter, FilterSet, IntegerFilter, TextFilter
from llm_models.models import Node
from rentals.choices import RentalStatus
from rentals.models import Rental


class RentalFilter(FilterSet):
    status = django_filters.ChoiceFilter(choices=RentalStatus.choices)
    node = IntegerFilter(field_name="node_id", label="Node id")

    class Meta:
        model = Rental
        fields = ["status", "node"]


@extend_schema_field({"type": "number", "minimum": 0, "maximum": 1})
class ReliabilityFilter(django_filters.NumberFilter):
    """A share 0..1."""


class OfferFilter(FilterSet):
    """Filters of GET rentals/offers/ (API.md §14), on the annotations of rentals.selectors.offer_list."""

    gpu_model = TextFilter(field_name="gpu_model", lookup_expr="iexact")
    region = TextFilter(field_name="region", lookup_expr="iexact")
    gpu_count__gte = IntegerFilter(field_name="gpu_count", lookup_expr="gte")
    gpu_memory_gb__gte = IntegerFilter(field_name="gpu_memory_gb", lookup_expr="gte")
    price_per_hour__lte = DecimalFilter(field_name="price_per_hour", lookup_expr="lte")
    reliability__gte = ReliabilityFilter(field_name="reliability", lookup_expr="gte", min_value=0, max_value=1)

    class Meta:
        model = Node
        fields: list[str] = []
