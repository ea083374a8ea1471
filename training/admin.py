"""Read-mostly admin of fine-tuning: money is never edited here (STYLE.md §1)."""

from django.contrib import admin
from django.http import HttpRequest

from training.models import TrainingEvent, TrainingFile, TrainingJob


@admin.register(TrainingJob)
class TrainingJobAdmin(admin.ModelAdmin):
    list_display = ["id", "client", "base_model", "node", "status", "progress", "charged", "created_at"]
    list_filter = ["status"]
    search_fields = ["base_model", "fine_tuned_model"]
    readonly_fields = [f.name for f in TrainingJob._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False


@admin.register(TrainingFile)
class TrainingFileAdmin(admin.ModelAdmin):
    list_display = ["id", "client", "filename", "bytes", "lines", "created_at"]
    readonly_fields = [f.name for f in TrainingFile._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False


@admin.register(TrainingEvent)
class TrainingEventAdmin(admin.ModelAdmin):
    list_display = ["id", "job", "step", "epoch", "loss", "message", "created_at"]
    readonly_fields = [f.name for f in TrainingEvent._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False
