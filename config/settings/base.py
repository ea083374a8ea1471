"""Settings shared by every environment. Everything a deployment changes comes from the environment (API.md §8).

Django's own settings are here; each concern's are in a module of its own, all imported below, so that
`config.settings.base` (and test.py, production.py and local.py over it) holds every name.
"""

from config.settings.api import *  # noqa: F403
from config.settings.auth import *  # noqa: F403
from config.settings.celery import *  # noqa: F403
from config.settings.database import *  # noqa: F403
from config.settings.environment import *  # noqa: F403
from config.settings.environment import BASE_DIR, env
from config.settings.inference import *  # noqa: F403
from config.settings.nodes import *  # noqa: F403
from config.settings.openai_compat import *  # noqa: F403
from config.settings.operations import *  # noqa: F403
from config.settings.payments import *  # noqa: F403
from config.settings.plans import *  # noqa: F403
from config.settings.rentals import *  # noqa: F403
from config.settings.schedule import *  # noqa: F403
from config.settings.training import *  # noqa: F403

SECRET_KEY = env("SECRET_KEY", default="dev-insecure-secret-key-change-me-in-production-0123456789")
DEBUG = env.bool("DEBUG", default=False)
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "testserver"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "console.apps.ConsoleAdminConfig",  # django.contrib.admin, its site the operator's console (console/sites.py)
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.sites",
    "rest_framework",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "drf_standardized_errors",
    "allauth",
    "allauth.account",
    "allauth.socialaccount",
    "allauth.socialaccount.providers.google",
    "core",
    "clients",
    "gpus",
    "llm_models",
    "inference",
    "rentals",
    "market",
    "console",
    "payments",
    "plans",
    "training",
]

MIDDLEWARE = [
    "core.middleware.RequestIdMiddleware",
    "core.metrics.HttpMetricsMiddleware",
    # Errors under /api/ and /v1/ are JSON in the mount's shape whatever DEBUG says (core/middleware.py).
    "core.middleware.JsonErrorMiddleware",
    "core.middleware.RequestBodyLimitMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "core.middleware.CommonMiddleware",  # Django's, with 308 for a non-GET missing its slash
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "allauth.account.middleware.AccountMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"
ASGI_APPLICATION = "config.asgi.application"
SITE_ID = 1

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- Email ----------------------------------------------------------------------------------------
EMAIL_CONFIG = env.email_url("EMAIL_URL", default="consolemail://")
vars().update(EMAIL_CONFIG)
DEFAULT_FROM_EMAIL = env("DEFAULT_FROM_EMAIL", default="GPU Marketplace <no-reply@gpu-marketplace.local>")

# --- Internationalisation and static files ----------------------------------------------------------
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}

# --- Request limits -------------------------------------------------------------------------------
# Bodies larger than this are refused with 413 before any view reads them.
MAX_REQUEST_BODY_BYTES = env.int("MAX_REQUEST_BODY_BYTES", default=1024 * 1024)
DATA_UPLOAD_MAX_MEMORY_SIZE = MAX_REQUEST_BODY_BYTES
