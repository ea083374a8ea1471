"""Operator views of money in and out. Payouts are approved or rejected here too (with a reference), through the
same services as the API; nothing here edits an amount or a status by hand."""

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.helpers import ActionForm
from django.db.models import QuerySet
from django.http import HttpRequest

from clients.admin import ReadOnlyAdmin
from clients.permissions import request_client
from core.errors import DomainError
from core.formatting import money_html
from payments import services
from payments.models import Payout, TopUp, X402Payer, X402Payment


@admin.register(TopUp)
class TopUpAdmin(ReadOnlyAdmin):
    list_display = ["id", "client", "amount_usd", "status", "stripe_session_id", "created_at", "completed_at"]
    list_filter = ["status"]
    search_fields = ["client__user__username", "stripe_session_id"]
    list_select_related = ["client__user"]

    @admin.display(description="amount (USD)", ordering="amount")
    def amount_usd(self, obj: TopUp) -> str:
        return money_html(obj.amount)  # whole cents: Stripe charges cards by the cent


class PayoutActionForm(ActionForm):
    reference = forms.CharField(max_length=255, required=False, help_text="The transfer's reference")


@admin.register(Payout)
class PayoutAdmin(ReadOnlyAdmin):
    list_display = ["id", "client", "amount_usd", "status", "reference", "decided_by", "created_at", "decided_at"]
    list_filter = ["status"]
    search_fields = ["client__user__username", "reference"]
    list_select_related = ["client__user", "decided_by"]
    action_form = PayoutActionForm
    actions = ["approve_payouts", "reject_payouts"]

    @admin.display(description="amount (USD)", ordering="amount")
    def amount_usd(self, obj: Payout) -> str:
        return money_html(obj.amount, 6)  # what is transferred, to the micro-dollar

    def _decide(self, request: HttpRequest, queryset: QuerySet[Payout], decide, verb: str, *, need_ref: bool) -> None:
        reference = request.POST.get("reference", "").strip()
        if need_ref and not reference:
            self.message_user(request, "Give the transfer's reference to approve payouts.", messages.ERROR)
            return
        done = 0
        for payout in queryset:
            try:
                decide(payout_id=payout.pk, admin=request_client(request), reference=reference)
                done += 1
            except DomainError as exc:
                self.message_user(request, f"Payout #{payout.pk}: {exc.detail}", messages.ERROR)
        if done:
            self.message_user(request, f"{done} payout(s) {verb}.", messages.SUCCESS)

    @admin.action(description="Approve selected payouts (paid, with the reference)")
    def approve_payouts(self, request: HttpRequest, queryset: QuerySet[Payout]) -> None:
        self._decide(request, queryset, services.payout_approve, "approved", need_ref=True)

    @admin.action(description="Reject selected payouts (release the held amount)")
    def reject_payouts(self, request: HttpRequest, queryset: QuerySet[Payout]) -> None:
        self._decide(request, queryset, services.payout_reject, "rejected", need_ref=False)


@admin.register(X402Payer)
class X402PayerAdmin(ReadOnlyAdmin):
    list_display = ["id", "address", "client", "created_at"]
    search_fields = ["address"]
    list_select_related = ["client__user"]


@admin.register(X402Payment)
class X402PaymentAdmin(ReadOnlyAdmin):
    list_display = ["id", "payer", "network", "amount_usd", "status", "transaction", "created_at", "settled_at"]
    list_filter = ["status", "network"]
    search_fields = ["payer__address", "transaction", "nonce"]
    list_select_related = ["payer"]

    @admin.display(description="amount (USD)", ordering="amount")
    def amount_usd(self, obj: X402Payment) -> str:
        return money_html(obj.amount, 6)  # USDC has 6 decimals
