"""Filters of the market lists: text compared case-insensitively, bad values a 400 naming the parameter."""

import django_filters
from django.db.models import Exists, OuterRef, QuerySet

from core.filters import FilterSet, StrictBooleanFilter, TextFilter
from llm_models.choices import NodeStatus
from llm_models.models import Node, NodeModel


class MarketNodeFilter(FilterSet):
    model = TextFilter(method="filter_model", help_text="Serves the model of this name.")
    region = TextFilter(field_name="region", lookup_expr="iexact")
    gpu_model = TextFilter(field_name="gpu__gpu_model", lookup_expr="iexact", help_text="e.g. H100.")
    status = django_filters.ChoiceFilter(choices=[c for c in NodeStatus.choices if c[0] != NodeStatus.DEREGISTERED])
    live = StrictBooleanFilter(field_name="live")

    class Meta:
        model = Node
        fields = ["model", "region", "gpu_model", "status", "live"]

    def filter_model(self, queryset: QuerySet[Node], name: str, value: str) -> QuerySet[Node]:
        # EXISTS rather than a join, so a node appears once and the list's annotations are not multiplied.
        return queryset.filter(Exists(NodeModel.objects.filter(node_id=OuterRef("pk"), model__name=value)))


class MarketProviderFilter(FilterSet):
    region = TextFilter(field_name="node__region", lookup_expr="iexact")
    gpu_model = TextFilter(field_name="node__gpu__gpu_model", lookup_expr="iexact", help_text="e.g. H100.")

    class Meta:
        model = NodeModel
        fields = ["region", "gpu_model"]
