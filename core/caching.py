"""Figures that are the same for every caller and dear to compute, kept in the shared cache (CACHE_URL) a while."""

from collections.abc import Callable
from typing import TypeVar

from django.core.cache import cache

T = TypeVar("T")


def computed_at_most_every(seconds: float, key: str, compute: Callable[[], T]) -> T:
    """`compute()`, run at most once per `seconds` per cache (0 or less: on every call)."""
    if seconds <= 0:
        return compute()
    value = cache.get_or_set(key, compute, timeout=seconds)
    return value if value is not None else compute()
