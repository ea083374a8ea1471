from django.contrib import admin

from gpus.models import Gpu


@admin.register(Gpu)
class GpuAdmin(admin.ModelAdmin):
    list_display = ["id", "user", "gpu_model", "gpu_count", "gpu_memory_gb", "region", "price_per_hour", "created_at"]
    list_filter = ["gpu_model", "region"]
    search_fields = ["gpu_info", "gpu_model", "cpu_name", "user__username"]
    list_select_related = ["user"]
    raw_id_fields = ["user"]
