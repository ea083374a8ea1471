"""Operators manage plans here; subscriptions are read-only (their money moved through the ledger)."""

from django.contrib import admin
from django.http import HttpRequest

from plans.models import Plan, PlanDailyUsage, Subscription


@admin.register(Plan)
class PlanAdmin(admin.ModelAdmin):
    list_display = ["name", "price_per_month", "daily_requests", "overage", "is_active"]
    list_filter = ["overage", "is_active"]
    search_fields = ["name"]


@admin.register(Subscription)
class SubscriptionAdmin(admin.ModelAdmin):
    list_display = ["client", "plan", "status", "started_at", "renews_at", "renew"]
    list_filter = ["status", "plan"]
    readonly_fields = [f.name for f in Subscription._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


@admin.register(PlanDailyUsage)
class PlanDailyUsageAdmin(admin.ModelAdmin):
    list_display = ["subscription", "day", "requests"]
    readonly_fields = ["subscription", "day", "requests"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False
