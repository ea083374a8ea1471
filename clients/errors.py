"""The clients' domain errors (accounts, keys, the ledger): rendered by core/error_render.py in each mount's shape."""

from rest_framework import status

from core.errors import Conflict, DomainError


class InvalidCredentials(DomainError):
    code = "invalid_credentials"


class InvalidResetToken(DomainError):
    code = "invalid_reset_token"


class InvalidGoogleToken(DomainError):
    code = "invalid_google_token"


class NotAnApplicant(DomainError):
    status, code = status.HTTP_409_CONFLICT, "not_a_provider_applicant"


class GoogleNotConfigured(DomainError):
    status, code = status.HTTP_503_SERVICE_UNAVAILABLE, "google_not_configured"


class InsufficientFunds(DomainError):
    status, code = status.HTTP_402_PAYMENT_REQUIRED, "insufficient_funds"


class LedgerKeyReused(Conflict):
    """A key already posted something else (another client, amount, kind or ref): a caller bug, never a no-op."""

    code = "ledger_key_reused"


class HoldNotFound(Conflict):
    """No hold has this key: settling, charging or releasing money that was never held."""

    code = "hold_not_found"


class HoldClosed(Conflict):
    """The hold was already closed by another operation (settled, or released before a charge came)."""

    code = "hold_closed"


# --- Key limits (API.md §12; clients/key_limits.py) -----------------------------------------------------------


class InsufficientScope(DomainError):
    status, code = status.HTTP_403_FORBIDDEN, "insufficient_scope"


class ModelNotAllowed(DomainError):
    status, code = status.HTTP_403_FORBIDDEN, "model_not_allowed"


class KeyBudgetExceeded(DomainError):
    status, code = status.HTTP_402_PAYMENT_REQUIRED, "key_budget_exceeded"


class RateLimited(DomainError):
    """Over the key's rpm or tpm; `retry_after` seconds until its window ends."""

    status, code = status.HTTP_429_TOO_MANY_REQUESTS, "rate_limited"

    def __init__(self, detail: str, *, retry_after: int, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.retry_after = retry_after
        self.headers = headers or {}
