"""Log lines that carry the request id, as text or as one JSON object per line (LOG_FORMAT=json; docs/API.md §16).

config/settings/operations.py's LOGGING puts both on the console handler."""

import json
import logging
from datetime import UTC, datetime

from core import request_id


class RequestIdFilter(logging.Filter):
    """Stamp every record with the id of the request being served (`-` outside a request). Django's own line for a
    4xx/5xx answer is written once the middleware has let the id go: it names its request, which has the id."""

    def filter(self, record: logging.LogRecord) -> bool:
        served = getattr(getattr(record, "request", None), "request_id", None)
        record.request_id = request_id.current.get() or served or "-"
        return True


# Attributes every LogRecord has: anything else on a record was passed in `extra=` and goes into the JSON object.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime", "request_id"}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (UTC, ISO 8601), level, logger, message, request_id, extras, exception."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", None) or request_id.current.get() or "-",
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exc_info"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack_info"] = self.formatStack(record.stack_info)
        return json.dumps(entry, default=str, ensure_ascii=False)
