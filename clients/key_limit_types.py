"""What the key-limit checks (clients/key_limits.py) take and give: a key's limits, and an admission's headers."""

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from clients.models import ApiKey

_FIELDS = ("pk", "client_id", "scopes", "allowed_models", "budget", "budget_period", "rpm", "tpm", "created_at")


@dataclass(frozen=True)
class KeyLimits:
    """What key_admit needs of a key (cached per process with the key on /v1)."""

    key_id: int
    client_id: int
    scopes: frozenset[str]
    models: frozenset[str]
    budget: Decimal | None
    budget_period: str
    rpm: int | None
    tpm: int | None
    created_at: datetime

    @classmethod
    def of(cls, key: ApiKey) -> "KeyLimits":
        return cls._from(tuple(getattr(key, name) for name in _FIELDS))

    @classmethod
    def _from(cls, row: tuple) -> "KeyLimits":
        pk, client_id, scopes, models, budget, period, rpm, tpm, created_at = row
        return cls(
            pk, client_id, frozenset(scopes or ()), frozenset(models or ()), budget, period, rpm, tpm, created_at
        )

    @classmethod
    def load(cls, key_id: int) -> "KeyLimits | None":
        row = ApiKey.objects.filter(pk=key_id).values_list(*_FIELDS).first()
        return None if row is None else cls._from(row)


def key_limits_of(request: Any) -> KeyLimits | None:
    """The limits of the key a DRF request was made with (None: a session or a keyless payer)."""
    auth = getattr(request, "auth", None)
    return KeyLimits.of(auth) if isinstance(auth, ApiKey) else None


@dataclass
class Admission:
    """An admitted request: the headers to add to its response."""

    headers: dict[str, str] = field(default_factory=dict)

    def as_asgi(self) -> list[tuple[bytes, bytes]]:
        return [(k.encode(), v.encode()) for k, v in self.headers.items()]
