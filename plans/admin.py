"""Operators manage plans here; subscriptions are read-only (their money moved through the ledger)."""

from django.contrib import admin

from clients.admin import ReadOnlyAdmin
from core.formatting import money_html
from plans.models import Plan, PlanDailyUsage, Subscription


@admin.register(Plan)
class PlanAdmin(admin.ModelAdmin):
    list_display = ["name", "price", "daily_requests", "overage", "is_active"]
    list_filter = ["overage", "is_active"]
    search_fields = ["name"]

    @admin.display(description="price per month (USD)", ordering="price_per_month")
    def price(self, obj: Plan) -> str:
        return money_html(obj.price_per_month)


@admin.register(Subscription)
class SubscriptionAdmin(ReadOnlyAdmin):
    list_display = ["client", "plan", "status", "started_at", "renews_at", "renew"]
    list_filter = ["status", "plan"]


@admin.register(PlanDailyUsage)
class PlanDailyUsageAdmin(ReadOnlyAdmin):
    """What a subscription's day used: counted by the chat path, never edited (it decides what is covered)."""

    list_display = ["subscription", "day", "requests"]
