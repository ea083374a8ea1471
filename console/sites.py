"""The admin site as an operator's console: its index shows what needs attention and the day's numbers."""

from decimal import Decimal
from typing import Any

from django.contrib import admin, messages
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.views.decorators.http import require_POST


def chart_data(days: list[dict[str, Any]]) -> dict[str, Any]:
    """The daily rows as the console's charts read them (JSON: money as numbers of dollars, 6 places)."""
    return {
        "labels": [d["date"].isoformat() for d in days],
        "requests": [d["requests"] for d in days],
        "tokens": [d["tokens"] for d in days],
        "revenue": {share: [float(Decimal(d[share])) for d in days] for share in ("operator", "platform", "treasury")},
    }


class ConsoleAdminSite(admin.AdminSite):
    site_header = "GPU Marketplace operations"
    site_title = "GPU Marketplace operations"
    index_title = "Console"
    index_template = "console/index.html"
    # The stock sidebar of every app takes 300 of 1280 px beside each list; the breadcrumbs and this index (every
    # app and model) lead everywhere, and the lists' columns get the room (docs/API.md §9).
    enable_nav_sidebar = False

    def index(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> TemplateResponse:
        from console import selectors  # the models of every app are loaded by the time a page is served

        overview = selectors.overview()
        context = {
            "overview": overview,
            "periods": [("Today", overview.today), (f"Last {len(overview.days)} days", overview.month)],
            "chart_data": chart_data(overview.days),
            **(extra_context or {}),
        }
        return super().index(request, extra_context=context)

    def get_urls(self):
        reconcile = path(
            "console/reconcile/", self.admin_view(require_POST(self.reconcile_view)), name="console_reconcile"
        )
        return [reconcile, *super().get_urls()]

    def reconcile_view(self, request: HttpRequest) -> HttpResponse:
        """Reconcile the ledger now and keep the result (it changes nothing in the ledger). Staff only, POST only."""
        from console import services

        run = services.reconciliation_run(trigger="operator")
        if run.ok:
            messages.success(request, "The ledger and every cached balance agree.")
        else:
            shown = "; ".join(run.mismatches[:10])
            messages.error(request, f"{run.mismatch_count} mismatch(es): {shown}")
        return HttpResponseRedirect(reverse("admin:index"))
