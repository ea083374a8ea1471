"""Logging: each record is written once, through the root handler (config/settings/operations.py LOGGING)."""

import logging


def _writers(logger_name: str, record: logging.LogRecord) -> list[logging.Handler]:
    """The handlers that would write `record` logged on `logger_name` (pytest's own capture handlers left out)."""
    found, logger = [], logging.getLogger(logger_name)
    while logger is not None:
        for handler in logger.handlers:
            if type(handler).__module__.startswith("_pytest"):
                continue
            if record.levelno >= handler.level and handler.filter(record):
                found.append(handler)
        if not logger.propagate:
            break
        logger = logger.parent
    return found


def test_an_error_is_written_once_even_in_debug(settings):
    # Django's default logging gives "django" a console handler that writes when DEBUG is on, beside the root's.
    settings.DEBUG = True
    record = logging.LogRecord("django.request", logging.ERROR, __file__, 1, "Internal Server Error: /x/", (), None)

    writers = _writers("django.request", record)

    assert len(writers) == 1, writers
