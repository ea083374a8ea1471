"""Fine-tuning, shown to operators: nothing here adds, edits or deletes a job, a dataset or an event (deleting a
running job would leave its hold open; its money moves only through training/billing.py)."""

from django.contrib import admin

from clients.admin import ReadOnlyAdmin
from core.formatting import money_html
from training.models import TrainingEvent, TrainingFile, TrainingJob


@admin.register(TrainingJob)
class TrainingJobAdmin(ReadOnlyAdmin):
    list_display = ["id", "client", "base_model", "node", "status", "progress", "charged_usd", "created_at"]
    list_filter = ["status"]
    search_fields = ["base_model", "fine_tuned_model"]
    list_select_related = ["client__user", "node"]

    @admin.display(description="charged (USD)", ordering="charged")
    def charged_usd(self, obj: TrainingJob) -> str:
        return money_html(obj.charged, 6)


@admin.register(TrainingFile)
class TrainingFileAdmin(ReadOnlyAdmin):
    list_display = ["id", "client", "filename", "bytes", "lines", "created_at"]
    list_select_related = ["client__user"]


@admin.register(TrainingEvent)
class TrainingEventAdmin(ReadOnlyAdmin):
    list_display = ["id", "job", "step", "epoch", "loss", "message", "created_at"]
