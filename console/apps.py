from django.apps import AppConfig
from django.contrib.admin import apps as admin_apps


class ConsoleConfig(AppConfig):
    """The operator's console: the admin's index, /metrics, and the last ledger reconciliation (docs/API.md §16)."""

    default = True
    name = "console"
    default_auto_field = "django.db.models.BigAutoField"


class ConsoleAdminConfig(admin_apps.AdminConfig):
    """django.contrib.admin with the console's site as `admin.site` (every app registers its admins there)."""

    default = False
    default_site = "console.sites.ConsoleAdminSite"
