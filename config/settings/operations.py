"""Operators: the console, metrics and logs (docs/API.md §16)."""

from pathlib import Path

from config.settings.environment import env

LOG_LEVEL = env("LOG_LEVEL", default="INFO")
# LOG_FORMAT=json: one JSON object per line (time, level, logger, message, request_id, ...); "plain" otherwise.
LOG_FORMAT = env("LOG_FORMAT", default="plain")
# One access-log line per answered request (gpumarket.access: method, route, status, duration).
LOG_REQUESTS = env.bool("LOG_REQUESTS", default=False)

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
