"""Operator views of clients: provider applications to approve, keys to revoke. Money is read-only here: the
ledger, its entries and holds can be looked at and reconciled, never added, changed or deleted (clients/ledger/
is the only writer)."""

from decimal import Decimal
from typing import TYPE_CHECKING, TypedDict

from django.contrib import admin, messages
from django.db import models
from django.db.models import DecimalField, Model, QuerySet, Sum, Value
from django.db.models.functions import Coalesce
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import URLPattern, path, reverse
from django.utils import timezone

from clients import ledger, services
from clients.choices import ClientRole, HoldStatus
from clients.models import ApiKey, Client, Hold, LedgerAccount, LedgerEntry, LedgerTransaction
from core.formatting import money_html

if TYPE_CHECKING:
    from django_stubs_ext import WithAnnotations


class _LedgerBalance(TypedDict):
    ledger_balance: Decimal  # LedgerAccountAdmin.get_queryset's annotation


class ReadOnlyAdmin(admin.ModelAdmin):
    """Viewable by staff; nothing can be added, changed or deleted from the admin (its actions, where it has
    any, call services). The base of every admin that only shows (docs/API.md §16)."""

    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


class PendingProviderFilter(admin.SimpleListFilter):
    title = "provider application"
    parameter_name = "provider_application"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        return [("pending", "Pending approval"), ("approved", "Approved"), ("none", "Not a provider")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Client]) -> QuerySet[Client]:
        value = self.value()
        if value == "pending":
            return queryset.filter(role=ClientRole.GPU_PROVIDER, is_gpu_provider_approved=False)
        if value == "approved":
            return queryset.filter(role=ClientRole.GPU_PROVIDER, is_gpu_provider_approved=True)
        if value == "none":
            return queryset.exclude(role=ClientRole.GPU_PROVIDER)
        return queryset


class ApiKeyInline(admin.TabularInline):
    model = ApiKey
    extra = 0
    readonly_fields = ("name", "masked", "created_at", "last_used_at", "revoked_at")
    fields = readonly_fields
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False


@admin.register(Client)
class ClientAdmin(admin.ModelAdmin):
    formfield_overrides = {models.URLField: {"assume_scheme": "https"}}  # Django 6's default, chosen now
    list_display = [
        "id",
        "user",
        "role",
        "is_gpu_provider_approved",
        "provider_registration_date",
        "balance_usd",
        "created_at",
    ]
    list_filter = [PendingProviderFilter, "role", "is_gpu_provider_approved"]
    search_fields = ["user__username", "user__email", "phone_no"]
    list_select_related = ["user"]
    readonly_fields = ["user", "balance_usd", "ip", "provider_registration_date", "created_at", "updated_at"]
    fields = [
        "user",
        "phone_no",
        "user_image",
        "profile_image_url",
        "terms_accepted",
        "role",
        "is_gpu_provider_approved",
        "provider_registration_date",
        "balance_usd",
        "ip",
        "created_at",
        "updated_at",
    ]
    inlines = [ApiKeyInline]
    actions = ["approve_providers", "revoke_providers"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # accounts are created by sign-up or the API, which issue keys

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False  # the ledger refers to accounts; a user is deactivated instead (auth's user page)

    @admin.display(description="balance (USD)", ordering="balance")
    def balance_usd(self, obj: Client) -> str:
        return money_html(obj.balance)

    @admin.action(description="Approve selected provider applications")
    def approve_providers(self, request: HttpRequest, queryset: QuerySet[Client]) -> None:
        done = 0
        for client in queryset.filter(role=ClientRole.GPU_PROVIDER):
            services.client_approve_provider(client=client)
            done += 1
        self.message_user(request, f"Approved {done} provider(s).", messages.SUCCESS)

    @admin.action(description="Revoke selected providers' approval")
    def revoke_providers(self, request: HttpRequest, queryset: QuerySet[Client]) -> None:
        done = 0
        for client in queryset.filter(role=ClientRole.GPU_PROVIDER):
            services.client_revoke_provider(client=client)
            done += 1
        self.message_user(request, f"Revoked {done} provider(s).", messages.SUCCESS)


@admin.register(ApiKey)
class ApiKeyAdmin(ReadOnlyAdmin):
    """Revoked (the action), never edited or deleted: what a key did stays attributable."""

    list_display = ["id", "client", "name", "masked", "created_at", "last_used_at", "revoked_at"]
    list_filter = ["revoked_at"]
    search_fields = ["client__user__username", "name", "last4"]
    list_select_related = ["client__user"]
    readonly_fields = ("client", "name", "masked", "created_at", "last_used_at", "revoked_at")
    fields = readonly_fields
    actions = ["revoke_keys"]

    @admin.action(description="Revoke selected keys")
    def revoke_keys(self, request: HttpRequest, queryset: QuerySet[ApiKey]) -> None:
        count = queryset.filter(revoked_at__isnull=True).update(revoked_at=timezone.now())
        self.message_user(request, f"Revoked {count} key(s).", messages.SUCCESS)


# --- The ledger: read-only -------------------------------------------------------------------------------------


class LedgerEntryInline(admin.TabularInline):
    model = LedgerEntry
    fields = ("account", "kind", "ref", "amount_usd")
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False

    @admin.display(description="amount (USD)")
    def amount_usd(self, obj: LedgerEntry) -> str:
        return money_html(obj.amount, 6)


@admin.register(LedgerTransaction)
class LedgerTransactionAdmin(ReadOnlyAdmin):
    list_display = ["id", "created_at", "kind", "key", "memo", "hold"]
    list_filter = ["kind"]
    search_fields = ["key", "memo"]
    list_select_related = ["hold"]
    date_hierarchy = "created_at"
    inlines = [LedgerEntryInline]

    def get_urls(self) -> list[URLPattern]:
        reconcile = path(
            "reconcile/",
            self.admin_site.admin_view(self.reconcile_view),
            name="clients_ledgertransaction_reconcile",
        )
        return [reconcile, *super().get_urls()]

    def reconcile_view(self, request: HttpRequest) -> HttpResponse:
        """Compare every cached balance with the ledger and say what disagrees (it changes nothing)."""
        if not self.has_view_permission(request):
            return HttpResponseRedirect(reverse("admin:index"))
        mismatches = ledger.reconcile()
        if mismatches:
            shown = "; ".join(str(m) for m in mismatches[:20])
            more = f" (and {len(mismatches) - 20} more)" if len(mismatches) > 20 else ""
            self.message_user(request, f"{len(mismatches)} mismatch(es): {shown}{more}", messages.ERROR)
        else:
            self.message_user(request, "The ledger and every cached balance agree.", messages.SUCCESS)
        return HttpResponseRedirect(reverse("admin:clients_ledgertransaction_changelist"))


@admin.register(LedgerEntry)
class LedgerEntryAdmin(ReadOnlyAdmin):
    list_display = ["id", "transaction", "account", "kind", "ref", "amount_usd"]
    list_filter = ["account__kind", "kind"]
    search_fields = ["ref", "transaction__key", "account__client__user__username"]
    list_select_related = ["transaction", "account"]

    @admin.display(description="amount (USD)", ordering="amount")
    def amount_usd(self, obj: LedgerEntry) -> str:
        return money_html(obj.amount, 6)


@admin.register(LedgerAccount)
class LedgerAccountAdmin(ReadOnlyAdmin):
    list_display = ["id", "kind", "client", "balance"]
    list_filter = ["kind"]
    search_fields = ["client__user__username"]
    list_select_related = ["client__user"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[LedgerAccount]:
        zero = Value(0, output_field=DecimalField(max_digits=20, decimal_places=6))
        return super().get_queryset(request).annotate(ledger_balance=Coalesce(Sum("entries__amount"), zero))

    @admin.display(description="balance (USD, sum of entries)", ordering="ledger_balance")
    def balance(self, obj: "WithAnnotations[LedgerAccount, _LedgerBalance]") -> str:
        return money_html(obj.ledger_balance, 6)


@admin.register(Hold)
class HoldAdmin(ReadOnlyAdmin):
    list_display = [
        "id",
        "key",
        "client",
        "kind",
        "ref",
        "amount_usd",
        "still_held",
        "status",
        "created_at",
        "settled_at",
    ]
    list_filter = ["status"]
    search_fields = ["key", "client__user__username"]
    list_select_related = ["client__user"]
    date_hierarchy = "created_at"

    @admin.display(description="amount (USD)", ordering="amount")
    def amount_usd(self, obj: Hold) -> str:
        return money_html(obj.amount, 6)

    @admin.display(description="still held (USD)")
    def still_held(self, obj: Hold) -> str:
        return money_html(obj.amount - obj.consumed if obj.status == HoldStatus.HELD else 0, 6)
