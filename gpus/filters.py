import django_filters

from gpus.models import Gpu


class GpuFilter(django_filters.FilterSet):
    min_price_per_hour = django_filters.NumberFilter(field_name="price_per_hour", lookup_expr="gte")
    max_price_per_hour = django_filters.NumberFilter(field_name="price_per_hour", lookup_expr="lte")
    min_gpu_memory_gb = django_filters.NumberFilter(field_name="gpu_memory_gb", lookup_expr="gte")

    class Meta:
        model = Gpu
        fields = ["user", "gpu_model", "region", "gpu_count"]
