from rest_framework import status

from core.errors import Conflict, DomainError


class AlreadySubscribed(Conflict):
    code = "already_subscribed"


class PlanNotAvailable(Conflict):
    code = "plan_not_available"


class DailyQuotaExceeded(DomainError):
    """The plan's daily requests are used up and it refuses more (overage `block`) until the next UTC day."""

    status, code = status.HTTP_429_TOO_MANY_REQUESTS, "daily_quota_exceeded"

    def __init__(self, detail: str, *, retry_after: int) -> None:
        super().__init__(detail)
        self.retry_after = retry_after
