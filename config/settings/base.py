"""Settings shared by every environment. Everything a deployment changes comes from the environment (API.md §8)."""

from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent.parent

env = environ.Env()

# Where `make run`'s defaults keep their files: the SQLite database, the filesystem broker, beat's schedule.
DATA_DIR = Path(env("DATA_DIR", default=str(BASE_DIR / ".data")))

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

# --- Database -------------------------------------------------------------------------------------
# SQLite by default so `make run` needs no server; DATABASE_URL=postgres://... for PostgreSQL.
DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{DATA_DIR / 'db.sqlite3'}")}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Web, worker and beat share one file: wait for locks instead of failing at once.
    DATABASES["default"].setdefault("OPTIONS", {}).update({"timeout": 20, "transaction_mode": "IMMEDIATE"})
else:
    # Under ASGI a request's queries may run on any thread, so Django's persistent connections pile up instead of
    # being reused (Django's docs warn of this); a psycopg pool per process is the way (Django >= 5.1).
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
        "min_size": 1,
        "max_size": env.int("DB_POOL_MAX_SIZE", default=10),
        "timeout": 10,
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

CACHES = {"default": env.cache_url("CACHE_URL", default="locmemcache://")}

# --- Auth -----------------------------------------------------------------------------------------
PASSWORD_HASHERS = [
    "django.contrib.auth.hashers.Argon2PasswordHasher",
    "django.contrib.auth.hashers.PBKDF2PasswordHasher",
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 10}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
AUTHENTICATION_BACKENDS = [
    "django.contrib.auth.backends.ModelBackend",
    "allauth.account.auth_backends.AuthenticationBackend",
]

# django-allauth: accounts by username or email; verification is a deployment choice.
ACCOUNT_LOGIN_METHODS = {"username", "email"}
ACCOUNT_SIGNUP_FIELDS = ["email*", "username*", "password1*"]
ACCOUNT_UNIQUE_EMAIL = True
ACCOUNT_EMAIL_VERIFICATION = env("ACCOUNT_EMAIL_VERIFICATION", default="optional")
SOCIALACCOUNT_EMAIL_AUTHENTICATION = False
SOCIALACCOUNT_PROVIDERS = {
    "google": {
        "APPS": [
            {
                "client_id": env("GOOGLE_CLIENT_ID", default=""),
                "secret": env("GOOGLE_CLIENT_SECRET", default=""),
                "key": "",
            }
        ]
        if env("GOOGLE_CLIENT_ID", default="")
        else [],
        "SCOPE": ["profile", "email"],
    }
}

# Login throttling: this many failed logins per username or per IP within the window → 429.
LOGIN_FAILURE_LIMIT = env.int("LOGIN_FAILURE_LIMIT", default=5)
LOGIN_FAILURE_WINDOW_S = env.int("LOGIN_FAILURE_WINDOW_S", default=900)

# Where the password-reset email points; the frontend owns this page and posts to reset-password/.
PASSWORD_RESET_URL = env(
    "PASSWORD_RESET_URL",
    default="http://127.0.0.1:8000/api/v1/client/reset-password/{uidb64}/{token}/",
)

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

# --- REST framework -------------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "clients.authentication.ApiKeyAuthentication",
        "rest_framework.authentication.BasicAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PAGINATION_CLASS": "core.pagination.StandardPagination",
    "PAGE_SIZE": 20,
    "DEFAULT_FILTER_BACKENDS": [
        "django_filters.rest_framework.DjangoFilterBackend",
        "core.filters.SearchFilter",
        "rest_framework.filters.OrderingFilter",
    ],
    # JSON bodies parse one way on every path (core/parsers.py): any body that cannot be parsed is a 400.
    "DEFAULT_PARSER_CLASSES": [
        "core.parsers.JSONParser",
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    "DEFAULT_SCHEMA_CLASS": "core.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "core.errors.exception_handler",
    "DEFAULT_THROTTLE_RATES": {
        "auth": env("AUTH_THROTTLE_RATE", default="30/min"),
    },
    "TEST_REQUEST_DEFAULT_FORMAT": "json",
}
DRF_STANDARDIZED_ERRORS = {
    "ENABLE_IN_DEBUG_FOR_UNHANDLED_EXCEPTIONS": True,
    "EXCEPTION_HANDLER_CLASS": "core.errors.ExceptionHandler",
}

SPECTACULAR_SETTINGS = {
    "TITLE": "GPU Marketplace API",
    "DESCRIPTION": "Clients, GPU providers, nodes, inference and rentals. See docs/API.md.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    # Tags (the groups of Swagger UI and ReDoc) from the path's first part after this, not "api" for everything.
    "SCHEMA_PATH_PREFIX": r"/api/v[0-9]+",
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    # Request bodies are documented as JSON, the API's format (the form parsers stay for the browsable API).
    "PARSER_WHITELIST": ["core.parsers.JSONParser"],
    "ENUM_NAME_OVERRIDES": {
        "ValidationErrorEnum": "drf_standardized_errors.openapi_serializers.ValidationErrorEnum.choices",
        "ClientErrorEnum": "drf_standardized_errors.openapi_serializers.ClientErrorEnum.choices",
        "ServerErrorEnum": "drf_standardized_errors.openapi_serializers.ServerErrorEnum.choices",
        "ClientRoleEnum": "clients.choices.ClientRole.choices",
        "NodeStatusEnum": "llm_models.choices.NodeStatus.choices",
        "InferenceStatusEnum": "inference.choices.InferenceStatus.choices",
        "InferenceChannelEnum": "inference.choices.InferenceChannel.choices",
        "RentalStatusEnum": "rentals.choices.RentalStatus.choices",
        "NodeCommandStatusEnum": "llm_models.choices.NodeCommandStatus.choices",
        "NodeCommandActionEnum": "llm_models.choices.NodeCommandAction.choices",
        "LedgerAccountKindEnum": "clients.choices.LedgerAccountKind.choices",
        "LedgerEntryKindEnum": "clients.choices.LedgerEntryKind.choices",
    },
    "POSTPROCESSING_HOOKS": ["drf_standardized_errors.openapi_hooks.postprocess_schema_enums"],
}

# --- Celery ---------------------------------------------------------------------------------------
# Default broker needs no server: kombu's filesystem transport under .data/broker.
CELERY_BROKER_URL = env("CELERY_BROKER_URL", default="filesystem://")
_BROKER_DIR = DATA_DIR / "broker"
CELERY_BROKER_TRANSPORT_OPTIONS = (
    {
        "data_folder_in": str(_BROKER_DIR / "queue"),
        "data_folder_out": str(_BROKER_DIR / "queue"),
        "processed_folder": str(_BROKER_DIR / "processed"),
        "store_processed": False,
    }
    if CELERY_BROKER_URL.startswith("filesystem")
    else {}
)
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TIMEZONE = "UTC"
CELERY_BEAT_SCHEDULE_FILENAME = str(DATA_DIR / "celerybeat-schedule")

# --- Nodes ----------------------------------------------------------------------------------------
NODE_HEARTBEAT_INTERVAL_S = env.int("NODE_HEARTBEAT_INTERVAL_S", default=30)
NODE_HEARTBEAT_TIMEOUT_S = env.int("NODE_HEARTBEAT_TIMEOUT_S", default=3 * NODE_HEARTBEAT_INTERVAL_S)
NODE_SWEEP_INTERVAL_S = env.int("NODE_SWEEP_INTERVAL_S", default=15)
# One metrics sample per node is kept per this many seconds, for this long.
NODE_METRICS_SAMPLE_EVERY_S = env.int("NODE_METRICS_SAMPLE_EVERY_S", default=60)
NODE_METRICS_RETENTION_S = env.int("NODE_METRICS_RETENTION_S", default=24 * 3600)
ALLOW_PRIVATE_NODE_ENDPOINTS = env.bool("ALLOW_PRIVATE_NODE_ENDPOINTS", default=False)
# all-models is served from the cache for this long (0: computed on every request).
ALL_MODELS_CACHE_S = env.int("ALL_MODELS_CACHE_S", default=2)
# The heartbeat's common case is answered beside Django in one statement (llm_models/heartbeat_fastpath.py),
# on PostgreSQL, over its own pool of this many connections per web process.
HEARTBEAT_FAST_PATH = env.bool("HEARTBEAT_FAST_PATH", default=True)
HEARTBEAT_FAST_PATH_POOL_SIZE = env.int("HEARTBEAT_FAST_PATH_POOL_SIZE", default=4)

# --- Market read API (docs/API.md §7, §9) -------------------------------------------------------------
# Measured latency and throughput are taken over completed requests that finished within this window.
MARKET_TRAFFIC_WINDOW_S = env.int("MARKET_TRAFFIC_WINDOW_S", default=24 * 3600)
# The public market endpoints, for anonymous callers, per address (DRF rate: "<n>/<second|minute|hour|day>").
MARKET_ANON_THROTTLE_RATE = env("MARKET_ANON_THROTTLE_RATE", default="120/min")

CELERY_BEAT_SCHEDULE = {
    "node-mark-stale-offline": {
        "task": "llm_models.tasks.node_mark_stale_offline",
        "schedule": timedelta(seconds=NODE_SWEEP_INTERVAL_S),
    },
    "node-metrics-prune": {
        "task": "llm_models.tasks.node_metrics_prune",
        "schedule": timedelta(hours=1),
    },
    "rentals-complete-ended": {
        "task": "rentals.tasks.rentals_complete_ended",
        "schedule": timedelta(seconds=NODE_SWEEP_INTERVAL_S),
    },
    "idempotency-record-prune": {
        "task": "core.tasks.idempotency_record_prune",
        "schedule": timedelta(hours=1),
    },
}

LOG_LEVEL = env("LOG_LEVEL", default="INFO")

# --- Operators: the console, metrics and logs (docs/API.md §16) ---------------------------------------------------
# LOG_FORMAT=json: one JSON object per line (time, level, logger, message, request_id, ...); "plain" otherwise.
LOG_FORMAT = env("LOG_FORMAT", default="plain")
# One access-log line per answered request (gpumarket.access: method, route, status, duration).
LOG_REQUESTS = env.bool("LOG_REQUESTS", default=False)
# --- Payments: card top-ups (Stripe), provider payouts, x402 (payments/; docs/API.md §8, §15) ------------------
# Unset STRIPE_SECRET_KEY: top-ups answer 503 payments_not_configured; unset STRIPE_WEBHOOK_SECRET: the webhook does.
STRIPE_SECRET_KEY = env("STRIPE_SECRET_KEY", default="")
STRIPE_WEBHOOK_SECRET = env("STRIPE_WEBHOOK_SECRET", default="")
STRIPE_API_BASE = env("STRIPE_API_BASE", default="https://api.stripe.com")
# Where Stripe's Checkout page sends the payer afterwards (the frontend's pages).
STRIPE_SUCCESS_URL = env("STRIPE_SUCCESS_URL", default="http://127.0.0.1:8000/api/v1/client/topups/?checkout=success")
STRIPE_CANCEL_URL = env("STRIPE_CANCEL_URL", default="http://127.0.0.1:8000/api/v1/client/topups/?checkout=cancel")
PAYOUT_MINIMUM = Decimal(env("PAYOUT_MINIMUM", default="10"))
# x402 (seed 000): keyless per-request payment of /v1/chat/completions in USDC; off while X402_PAY_TO is unset.
X402_PAY_TO = env("X402_PAY_TO", default="")
X402_NETWORK = env("X402_NETWORK", default="base-sepolia")
X402_ASSET = env("X402_ASSET", default="0x036CbD53842c5426634e7929541eC2318f3dCF7e")  # USDC on base-sepolia
X402_FACILITATOR_URL = env("X402_FACILITATOR_URL", default="https://x402.org/facilitator")
X402_MAX_TIMEOUT_S = env.int("X402_MAX_TIMEOUT_S", default=60)
X402_FACILITATOR_TIMEOUT_S = env.float("X402_FACILITATOR_TIMEOUT_S", default=15.0)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"request_id": {"()": "core.logging.RequestIdFilter"}},
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s [%(request_id)s]: %(message)s"},
        "json": {"()": "core.logging.JsonFormatter"},
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": "json" if LOG_FORMAT == "json" else "plain",
            "filters": ["request_id"],
        }
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        "django.db.backends": {"level": "WARNING"},
        # Django's own default handlers on "django" (a console one when DEBUG, mail_admins) would log each error a
        # second time beside the root handler's line: everything goes through the root handler, once.
        "django": {"handlers": [], "level": LOG_LEVEL, "propagate": True},
        # uvicorn sets up its own handlers before Django starts: they are taken over so that its lines match ours.
        "uvicorn": {"handlers": ["console"], "propagate": False},
        "uvicorn.access": {"handlers": ["console"], "propagate": False},
    },
}
# GET /metrics: with a token, only `Authorization: Bearer <METRICS_TOKEN>`; without one, loopback callers only.
METRICS_TOKEN = env("METRICS_TOKEN", default="")
# Where every process writes its counters (prometheus-client's multiprocess mode); `make run` sets and empties it.
# prometheus-client reads this variable from the environment itself; it is read here to know which mode /metrics is.
PROMETHEUS_MULTIPROC_DIR = env("PROMETHEUS_MULTIPROC_DIR", default="")
if PROMETHEUS_MULTIPROC_DIR:
    Path(PROMETHEUS_MULTIPROC_DIR).mkdir(parents=True, exist_ok=True)  # before the first counter is made
# How often the ledger is reconciled and the result kept for the console (console/tasks.py).
LEDGER_RECONCILE_INTERVAL_S = env.int("LEDGER_RECONCILE_INTERVAL_S", default=3600)
CELERY_WORKER_HIJACK_ROOT_LOGGER = False  # Celery's lines go through LOGGING too, request ids and format alike
CELERY_BEAT_SCHEDULE["ledger-reconcile"] = {
    "task": "console.tasks.ledger_reconcile",
    "schedule": timedelta(seconds=LEDGER_RECONCILE_INTERVAL_S),
}

# Prices a node's model gets when its registration names none (US dollars per million tokens).
DEFAULT_INPUT_PRICE_PER_MILLION = Decimal(env("DEFAULT_INPUT_PRICE_PER_MILLION", default="0.50"))
DEFAULT_OUTPUT_PRICE_PER_MILLION = Decimal(env("DEFAULT_OUTPUT_PRICE_PER_MILLION", default="1.50"))

# --- Inference (docs/API.md §4, §9) -----------------------------------------------------------------
# Nodes tried per request before giving up (failover happens only before anything was relayed).
INFERENCE_MAX_ATTEMPTS = env.int("INFERENCE_MAX_ATTEMPTS", default=3)
INFERENCE_CONNECT_TIMEOUT_S = env.float("INFERENCE_CONNECT_TIMEOUT_S", default=5.0)
# A hung node is dropped fast (docs/API.md §10): a node that has sent no first token (its first streamed event;
# non-stream requests are streamed from the node too) this long after the call began is given up, cooled down and
# the request failed over. Once tokens flow, a stream is cut only after a gap between two reads of this long.
INFERENCE_FIRST_TOKEN_TIMEOUT_S = env.float("INFERENCE_FIRST_TOKEN_TIMEOUT_S", default=15.0)
INFERENCE_STREAM_IDLE_TIMEOUT_S = env.float("INFERENCE_STREAM_IDLE_TIMEOUT_S", default=60.0)
# Longest a single answer may take, and most bytes a node may send for it.
INFERENCE_MAX_DURATION_S = env.float("INFERENCE_MAX_DURATION_S", default=300.0)
INFERENCE_MAX_RESPONSE_BYTES = env.int("INFERENCE_MAX_RESPONSE_BYTES", default=4 * 1024 * 1024)
# How long POST /api/v1/inference/ waits for the worker before answering 202.
INFERENCE_SYNC_WAIT_S = env.float("INFERENCE_SYNC_WAIT_S", default=30.0)
# A request not finished this long after it was queued or claimed is re-queued (worker path) or failed.
INFERENCE_DEADLINE_S = env.float("INFERENCE_DEADLINE_S", default=INFERENCE_MAX_DURATION_S + 60)
# Dispatches (claims) per request before the sweeper fails it for good and releases its hold.
INFERENCE_MAX_DISPATCHES = env.int("INFERENCE_MAX_DISPATCHES", default=3)
INFERENCE_SWEEP_INTERVAL_S = env.int("INFERENCE_SWEEP_INTERVAL_S", default=30)
INFERENCE_DEFAULT_MAX_TOKENS = env.int("INFERENCE_DEFAULT_MAX_TOKENS", default=512)
INFERENCE_MAX_TOKENS_LIMIT = env.int("INFERENCE_MAX_TOKENS_LIMIT", default=32768)
# Price (USD per 1M tokens, input and output) used for a hold when no routable node names one.
INFERENCE_DEFAULT_PRICE_PER_MILLION = Decimal(env("INFERENCE_DEFAULT_PRICE_PER_MILLION", default="10.00"))
# Routing: a node's latency estimate before it has answered, smoothing of measured latency, score weights.
INFERENCE_LATENCY_PRIOR_MS = env.float("INFERENCE_LATENCY_PRIOR_MS", default=1000.0)
INFERENCE_LATENCY_EWMA_ALPHA = env.float("INFERENCE_LATENCY_EWMA_ALPHA", default=0.3)
INFERENCE_WEIGHT_LATENCY = env.float("INFERENCE_WEIGHT_LATENCY", default=1.0)
INFERENCE_WEIGHT_LOAD = env.float("INFERENCE_WEIGHT_LOAD", default=1.0)
INFERENCE_WEIGHT_PRICE = env.float("INFERENCE_WEIGHT_PRICE", default=1.0)
# A failing node sits out base * 2^(failures-1) seconds, at most max.
INFERENCE_COOLDOWN_BASE_S = env.float("INFERENCE_COOLDOWN_BASE_S", default=5.0)
INFERENCE_COOLDOWN_MAX_S = env.float("INFERENCE_COOLDOWN_MAX_S", default=300.0)
# /v1/ remembers a verified API key this long per process (a revoked key works at most this much longer there).
INFERENCE_KEY_CACHE_S = env.float("INFERENCE_KEY_CACHE_S", default=5.0)
# Retry-After of a 503 no_capacity when no cooling-down node says better.
INFERENCE_RETRY_AFTER_S = env.int("INFERENCE_RETRY_AFTER_S", default=10)

CELERY_BEAT_SCHEDULE["inference-requeue-stuck"] = {
    "task": "inference.tasks.inference_requeue_stuck",
    "schedule": timedelta(seconds=INFERENCE_SWEEP_INTERVAL_S),
}

# --- The lean /v1/chat/completions path (inference/v1/asgi.py; docs/API.md §8) ---------------------------
# On PostgreSQL with a usage journal, POST /v1/chat/completions is served beside Django without a database round
# trip per request. The journal is a Redis stream: by default the Celery broker's Redis, if that is Redis.
INFERENCE_LEAN_PATH = env.bool("INFERENCE_LEAN_PATH", default=True)
USAGE_JOURNAL_URL = env(
    "USAGE_JOURNAL_URL", default=CELERY_BROKER_URL if CELERY_BROKER_URL.startswith(("redis://", "rediss://")) else ""
)
# Journal entries are applied to PostgreSQL this often; entries a dead drainer left are taken over after this long.
USAGE_DRAIN_INTERVAL_S = env.float("USAGE_DRAIN_INTERVAL_S", default=1.0)
USAGE_DRAIN_CLAIM_IDLE_S = env.float("USAGE_DRAIN_CLAIM_IDLE_S", default=30.0)
# A web process holds a client's money in leases of this much (or this many requests' most possible cost, if more,
# or all the client has, if less), taking new requests on one lease for INFERENCE_LEASE_TTL_S.
INFERENCE_LEASE_AMOUNT = Decimal(env("INFERENCE_LEASE_AMOUNT", default="2.00"))
INFERENCE_LEASE_REQUESTS = env.int("INFERENCE_LEASE_REQUESTS", default=20)
INFERENCE_LEASE_TTL_S = env.float("INFERENCE_LEASE_TTL_S", default=30.0)
# --- Ledger readability: a lease no request has used for this long gives its money back (API.md §10) ---------
INFERENCE_LEASE_IDLE_S = env.float("INFERENCE_LEASE_IDLE_S", default=0.5)
# A model's route (live nodes, ranked) is reused this long per process.
INFERENCE_ROUTE_CACHE_S = env.float("INFERENCE_ROUTE_CACHE_S", default=1.0)

# The drain and the stale-lease sweep run only where the lean path can be on (PostgreSQL and a journal): on
# `make run`'s defaults there is nothing to drain, and a task a second would only fill the worker's log.
if INFERENCE_LEAN_PATH and USAGE_JOURNAL_URL and DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    CELERY_BEAT_SCHEDULE["inference-usage-drain"] = {
        "task": "inference.tasks.inference_usage_drain",
        "schedule": timedelta(seconds=USAGE_DRAIN_INTERVAL_S),
    }
    CELERY_BEAT_SCHEDULE["inference-leases-release-stale"] = {
        "task": "inference.tasks.inference_leases_release_stale",
        "schedule": timedelta(seconds=60),
    }

# --- Key limits, plans and usage roll-ups (docs/API.md §12, §8) ------------------------------------------------
# The per-minute rpm/tpm counters of API keys live in this Redis (by default the usage journal's); empty: in the
# database (the embedded default).
KEY_LIMITS_REDIS_URL = env("KEY_LIMITS_REDIS_URL", default=USAGE_JOURNAL_URL)
# Subscriptions due are renewed (or lapse) this often.
PLANS_RENEW_INTERVAL_S = env.int("PLANS_RENEW_INTERVAL_S", default=300)
CELERY_BEAT_SCHEDULE["plans-renew-due"] = {
    "task": "plans.tasks.plans_renew_due",
    "schedule": timedelta(seconds=PLANS_RENEW_INTERVAL_S),
}

# --- Instances: pay-as-you-go rentals (docs/API.md §14, §8) ---------------------------------------------------
# A pay-as-you-go rental holds this many hours of its price (a decimal, at least 2 minutes); each minute the started
# minute is charged from the hold and the hold is topped back up; when it cannot be, the rental ends.
try:
    RENTAL_PAYG_HOLD_HOURS = Decimal(env("RENTAL_PAYG_HOLD_HOURS", default="1"))
except ArithmeticError:
    RENTAL_PAYG_HOLD_HOURS = Decimal("NaN")
if not RENTAL_PAYG_HOLD_HOURS.is_finite() or RENTAL_PAYG_HOLD_HOURS * 60 < 2:
    raise ImproperlyConfigured("RENTAL_PAYG_HOLD_HOURS must be a number of hours of at least 2 minutes (0.034).")
CELERY_BEAT_SCHEDULE["rentals-payg-charge"] = {
    "task": "rentals.tasks.rentals_payg_charge",
    "schedule": timedelta(seconds=60),
}

# --- Fine-tuning: training jobs on providers' nodes (training/; docs/API.md §13, §8) -------------------------------
# Where the default storage (FileSystemStorage) keeps uploaded datasets; set STORAGES["default"] to a
# django-storages backend (S3, GCS, ...) to keep them there instead.
MEDIA_ROOT = env("MEDIA_ROOT", default=str(DATA_DIR / "media"))
# A dataset uploaded through POST /v1/files: at most this many bytes (the upload path's body cap follows it).
TRAINING_FILE_MAX_BYTES = env.int("TRAINING_FILE_MAX_BYTES", default=8 * 1024 * 1024)
# A job no node has taken this long after it was created fails, everything released.
TRAINING_QUEUE_TIMEOUT_S = env.int("TRAINING_QUEUE_TIMEOUT_S", default=3600)
# How often the training sweep runs: dispatch queued jobs, fail timed-out ones, stop jobs past max_hours or on a
# node that stopped heartbeating.
TRAINING_SWEEP_INTERVAL_S = env.int("TRAINING_SWEEP_INTERVAL_S", default=15)
# This service's public URL (https://api.example.com): the dataset URL a node fetches an uploaded file from. Unset:
# the URL of the request that created the job.
PUBLIC_BASE_URL = env("PUBLIC_BASE_URL", default="")
# Progress events kept per job (the oldest reports beyond it are not stored).
TRAINING_MAX_EVENTS_PER_JOB = env.int("TRAINING_MAX_EVENTS_PER_JOB", default=10000)
CELERY_BEAT_SCHEDULE["training-sweep"] = {
    "task": "training.tasks.training_sweep",
    "schedule": timedelta(seconds=TRAINING_SWEEP_INTERVAL_S),
}
