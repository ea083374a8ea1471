"""Operator views of clients: provider applications to approve, keys to revoke. Money is read-only here."""

from django.contrib import admin, messages
from django.db import models
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils import timezone

from clients import services
from clients.choices import ClientRole
from clients.models import ApiKey, Client


class PendingProviderFilter(admin.SimpleListFilter):
    title = "provider application"
    parameter_name = "provider_application"

    def lookups(self, request, model_admin):  # type: ignore[no-untyped-def]
        return [("pending", "Pending approval"), ("approved", "Approved"), ("none", "Not a provider")]

    def queryset(self, request, queryset):  # type: ignore[no-untyped-def]
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
    fields = ["name", "masked", "created_at", "last_used_at", "revoked_at"]
    readonly_fields = fields
    can_delete = False

    def has_add_permission(self, request, obj=None) -> bool:  # type: ignore[no-untyped-def]
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
        "balance",
        "created_at",
    ]
    list_filter = [PendingProviderFilter, "role", "is_gpu_provider_approved"]
    search_fields = ["user__username", "user__email", "phone_no"]
    list_select_related = ["user"]
    readonly_fields = ["user", "balance", "ip", "provider_registration_date", "created_at", "updated_at"]
    fields = [
        "user",
        "phone_no",
        "user_image",
        "profile_image_url",
        "terms_accepted",
        "role",
        "is_gpu_provider_approved",
        "provider_registration_date",
        "balance",
        "ip",
        "created_at",
        "updated_at",
    ]
    inlines = [ApiKeyInline]
    actions = ["approve_providers", "revoke_providers"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # accounts are created by sign-up or the API, which issue keys

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
class ApiKeyAdmin(admin.ModelAdmin):
    list_display = ["id", "client", "name", "masked", "created_at", "last_used_at", "revoked_at"]
    list_filter = ["revoked_at"]
    search_fields = ["client__user__username", "name", "last4"]
    list_select_related = ["client__user"]
    fields = ["client", "name", "masked", "created_at", "last_used_at", "revoked_at"]
    readonly_fields = fields
    actions = ["revoke_keys"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    @admin.action(description="Revoke selected keys")
    def revoke_keys(self, request: HttpRequest, queryset: QuerySet[ApiKey]) -> None:
        count = queryset.filter(revoked_at__isnull=True).update(revoked_at=timezone.now())
        self.message_user(request, f"Revoked {count} key(s).", messages.SUCCESS)
