"""JSON 404/500 pages: an API client never gets HTML, whatever URL it tried."""

from django.http import HttpRequest, JsonResponse


def _error(status: int, code: str, detail: str) -> JsonResponse:
    kind = "client_error" if status < 500 else "server_error"
    return JsonResponse({"type": kind, "errors": [{"code": code, "detail": detail, "attr": None}]}, status=status)


def not_found(request: HttpRequest, exception: Exception | None = None) -> JsonResponse:
    return _error(404, "not_found", "Not found.")


def server_error(request: HttpRequest) -> JsonResponse:
    return _error(500, "error", "A server error occurred.")


def bad_request(request: HttpRequest, exception: Exception | None = None) -> JsonResponse:
    return _error(400, "bad_request", "Bad request.")


def permission_denied(request: HttpRequest, exception: Exception | None = None) -> JsonResponse:
    return _error(403, "permission_denied", "You do not have permission to perform this action.")
