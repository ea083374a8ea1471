"""Tests: real PostgreSQL (and Redis for the worker tests), fast password hashing, captured email."""

from config.settings.base import *  # noqa: F403
from config.settings.base import DATABASES, env

DATABASES["default"] = env.db("DATABASE_URL", default="postgres://postgres@127.0.0.1:5432/gpu_marketplace")
DATABASES["default"]["CONN_MAX_AGE"] = 0
if DATABASES["default"]["ENGINE"] != "django.db.backends.postgresql":
    raise RuntimeError("The test suite runs on PostgreSQL only: set DATABASE_URL=postgres://...")

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
CELERY_BROKER_URL = env("CELERY_BROKER_URL", default="redis://127.0.0.1:6379/15")
CELERY_BROKER_TRANSPORT_OPTIONS = {}
USAGE_JOURNAL_URL = env("USAGE_JOURNAL_URL", default=CELERY_BROKER_URL)
KEY_LIMITS_REDIS_URL = env("KEY_LIMITS_REDIS_URL", default=USAGE_JOURNAL_URL)  # as base.py derives it
INFERENCE_SESSION_REDIS_URL = env("INFERENCE_SESSION_REDIS_URL", default=KEY_LIMITS_REDIS_URL)  # likewise
# Tests run tasks inline; a real worker started by a worker test sets this false, so that tasks it runs
# publish further tasks to the broker as in production instead of running them inline.
CELERY_TASK_ALWAYS_EAGER = env.bool("CELERY_TASK_ALWAYS_EAGER", default=True)
CELERY_TASK_EAGER_PROPAGATES = True
ALL_MODELS_CACHE_S = 0  # tests see every change at once; test_api_all_models checks the cache on its own
MARKET_STATS_CACHE_S = 0  # likewise; test_stats_and_secrets checks it
# Off for the suite's SSRF tests; the node-agent tests turn it on for the service they start as a subprocess.
ALLOW_PRIVATE_NODE_ENDPOINTS = env.bool("ALLOW_PRIVATE_NODE_ENDPOINTS", default=False)
GOOGLE_TEST_CLIENT_ID = "test-client-id.apps.googleusercontent.com"
SOCIALACCOUNT_PROVIDERS = {
    "google": {
        "APPS": [{"client_id": GOOGLE_TEST_CLIENT_ID, "secret": "test-secret", "key": ""}],
        "SCOPE": ["profile", "email"],
    }
}
