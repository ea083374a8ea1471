from core.filters import DecimalFilter, FilterSet, IntegerFilter
from gpus.models import Gpu


class GpuFilter(FilterSet):
    min_price_per_hour = DecimalFilter(field_name="price_per_hour", lookup_expr="gte")
    max_price_per_hour = DecimalFilter(field_name="price_per_hour", lookup_expr="lte")
    min_gpu_memory_gb = IntegerFilter(field_name="gpu_memory_gb", lookup_expr="gte")

    class Meta:
        model = Gpu
        fields = ["user", "gpu_model", "region", "gpu_count"]
