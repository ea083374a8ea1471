from rest_framework import status

from core.errors import Conflict, DomainError, PermissionDenied


class PaymentsNotConfigured(DomainError):
    status, code = status.HTTP_503_SERVICE_UNAVAILABLE, "payments_not_configured"


class PaymentProviderError(DomainError):
    status, code = status.HTTP_502_BAD_GATEWAY, "payment_provider_error"


class InvalidSignature(DomainError):
    code = "invalid_signature"


class InvalidWebhookPayload(DomainError):
    code = "invalid_payload"


class PayoutNotPending(Conflict):
    code = "payout_not_pending"


class CannotApproveOwnPayout(PermissionDenied):
    code = "cannot_approve_own_payout"


class PayoutAmountInvalid(DomainError):
    code = "payout_amount_invalid"
