"""Domain errors and the one place that turns them into API responses (STYLE.md §6).

Services raise `DomainError` subclasses; they know nothing of HTTP beyond a status and a stable `code`.
The exception handler renders them in drf-standardized-errors' shape, like every other API error.
"""

from django.core.exceptions import RequestDataTooBig
from django.db import IntegrityError
from drf_standardized_errors.handler import ExceptionHandler as StandardExceptionHandler
from drf_standardized_errors.handler import exception_handler  # noqa: F401  (settings point here)
from rest_framework import exceptions, status
from rest_framework.response import Response


class DomainError(Exception):
    """A known business condition: rendered as a 4xx with `code`, never a 500."""

    status: int = status.HTTP_400_BAD_REQUEST
    code: str = "bad_request"
    attr: str | None = None

    def __init__(self, detail: str, *, attr: str | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        if attr is not None:
            self.attr = attr


class NotFound(DomainError):
    status, code = status.HTTP_404_NOT_FOUND, "not_found"


class Conflict(DomainError):
    status, code = status.HTTP_409_CONFLICT, "conflict"


class PermissionDenied(DomainError):
    status, code = status.HTTP_403_FORBIDDEN, "permission_denied"


class InvalidIdempotencyKey(DomainError):
    code = "invalid_idempotency_key"


class IdempotencyKeyReused(DomainError):
    status, code = status.HTTP_422_UNPROCESSABLE_ENTITY, "idempotency_key_reused"


class IdempotencyKeyInUse(Conflict):
    code = "idempotency_key_in_use"


class PayloadTooLarge(exceptions.APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_detail = "The request body is too large."
    default_code = "payload_too_large"


class _DomainAPIException(exceptions.APIException):
    def __init__(self, err: DomainError) -> None:
        self.status_code = err.status
        # drf-standardized-errors turns `wait` into a Retry-After header (503 no_capacity sets `retry_after`).
        self.wait = getattr(err, "retry_after", None)
        if err.attr:
            # A field-level error: rendered as a validation error naming the field.
            super().__init__({err.attr: [exceptions.ErrorDetail(err.detail, err.code)]}, err.code)
        else:
            super().__init__(err.detail, err.code)


class ExceptionHandler(StandardExceptionHandler):
    """drf-standardized-errors' handler, taught our domain errors and a few Django ones."""

    def convert_known_exceptions(self, exc: Exception) -> Exception:
        if isinstance(exc, DomainError):
            if exc.attr:
                return exceptions.ValidationError({exc.attr: [exceptions.ErrorDetail(exc.detail, exc.code)]})
            return _DomainAPIException(exc)
        if isinstance(exc, RequestDataTooBig):
            return PayloadTooLarge()
        if isinstance(exc, IntegrityError):
            # A unique/check constraint lost a race with a concurrent request: a conflict, not a crash.
            return _DomainAPIException(Conflict("The request conflicts with the current state; retry."))
        return super().convert_known_exceptions(exc)

    def report_exception(self, exc: exceptions.APIException, response: Response) -> None:
        # A DomainError with a 5xx status (501 action_not_supported) is a known condition, not a crash to report.
        if isinstance(self.exc, DomainError):
            return
        super().report_exception(exc, response)
