"""Operator views of rentals: read-only (money moves only through services and the ledger)."""

from datetime import timedelta

from django.contrib import admin
from django.http import HttpRequest
from django.utils import timezone

from clients.admin import ReadOnlyAdmin
from core.formatting import money_html
from rentals.choices import RentalStatus
from rentals.models import Rental, Snapshot


@admin.register(Rental)
class RentalAdmin(admin.ModelAdmin):
    """Filter by node for a node's calendar of rentals."""

    list_display = [
        "id", "node", "client", "status", "billing", "starts_at", "ends_at", "time_remaining", "total_usd",
        "refunded_usd",
    ]  # fmt: skip
    list_filter = ["status", "billing", "node"]
    search_fields = ["node__name", "client__user__username"]
    list_select_related = ["node", "client__user"]
    date_hierarchy = "starts_at"
    ordering = ["-starts_at"]
    readonly_fields = [f.name for f in Rental._meta.fields] + ["time_remaining"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Rental | None = None) -> bool:
        return False  # never edits money: cancel through the API

    def has_delete_permission(self, request: HttpRequest, obj: Rental | None = None) -> bool:
        return False

    @admin.display(description="total (USD)", ordering="total")
    def total_usd(self, obj: Rental) -> str:
        return money_html(obj.total)

    @admin.display(description="refunded (USD)", ordering="refunded")
    def refunded_usd(self, obj: Rental) -> str:
        return money_html(obj.refunded)

    @admin.display(description="time remaining")
    def time_remaining(self, obj: Rental) -> str:
        if obj.status != RentalStatus.ACTIVE or obj.ends_at is None:
            return "-"
        left = max(obj.ends_at - timezone.now(), timedelta(0))
        return str(left).split(".")[0]


@admin.register(Snapshot)
class SnapshotAdmin(ReadOnlyAdmin):
    """Saved instances (read-only: renters delete their own through the API)."""

    list_display = ["id", "client", "rental", "node", "image_ref", "created_at"]
    search_fields = ["image_ref", "client__user__username"]
    list_select_related = ["client__user", "node"]
