"""Failed-login counting: too many failures for one username or from one address → 429.

Counting failures (not requests) keeps honest users who log in often unaffected while stopping guessing.
"""

from django.conf import settings
from django.core.cache import cache
from rest_framework.exceptions import Throttled


def _keys(*, identifier: str, ip: str | None) -> list[str]:
    keys = [f"login-fail:id:{identifier.strip().lower()}"]
    if ip:
        keys.append(f"login-fail:ip:{ip}")
    return keys


def login_throttle_check(*, identifier: str, ip: str | None) -> None:
    """Raise 429 while either counter is at the limit."""
    limit = settings.LOGIN_FAILURE_LIMIT
    counts = cache.get_many(_keys(identifier=identifier, ip=ip))
    if any(count >= limit for count in counts.values()):
        raise Throttled(wait=settings.LOGIN_FAILURE_WINDOW_S, detail="Too many failed logins; try again later.")


def login_throttle_record_failure(*, identifier: str, ip: str | None) -> None:
    window = settings.LOGIN_FAILURE_WINDOW_S
    for key in _keys(identifier=identifier, ip=ip):
        if not cache.add(key, 1, timeout=window):
            try:
                cache.incr(key)
            except ValueError:  # expired between add and incr
                cache.set(key, 1, timeout=window)


def login_throttle_reset(*, identifier: str) -> None:
    cache.delete(f"login-fail:id:{identifier.strip().lower()}")
