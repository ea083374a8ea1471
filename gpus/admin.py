from django.contrib import admin

from core.formatting import money_html
from gpus.models import Gpu


@admin.register(Gpu)
class GpuAdmin(admin.ModelAdmin):
    list_display = ["id", "user", "gpu_model", "gpu_count", "gpu_memory_gb", "region", "price", "created_at"]
    list_filter = ["gpu_model", "region"]
    search_fields = ["gpu_info", "gpu_model", "cpu_name", "user__username"]
    list_select_related = ["user"]
    raw_id_fields = ["user"]

    @admin.display(description="price per hour (USD)", ordering="price_per_hour")
    def price(self, obj: Gpu) -> str:
        return money_html(obj.price_per_hour)
