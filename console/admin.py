"""The record of ledger reconciliations, for operators to look back on (view only)."""

from django.contrib import admin

from console.models import Reconciliation


@admin.register(Reconciliation)
class ReconciliationAdmin(admin.ModelAdmin):
    list_display = ["ran_at", "ok", "mismatch_count", "trigger"]
    list_filter = ["ok", "trigger"]
    date_hierarchy = "ran_at"
    fields = ["ran_at", "ok", "mismatch_count", "trigger", "mismatches"]

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False
