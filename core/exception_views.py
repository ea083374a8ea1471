"""Django's error handlers (config/urls.py): JSON in the shape of the mount the URL is under (core/error_render.py).

With DEBUG on, Django answers an unmatched URL and a crash with its own HTML pages instead of calling these;
core/middleware.py's JsonErrorMiddleware turns those into the same JSON, so the API answers alike either way.
"""

from django.http import HttpRequest, JsonResponse

from core.error_render import error_response


def not_found(request: HttpRequest, exception: Exception | None = None) -> JsonResponse:
    return error_response(request.path, 404)


def server_error(request: HttpRequest) -> JsonResponse:
    return error_response(request.path, 500)


def bad_request(request: HttpRequest, exception: Exception | None = None) -> JsonResponse:
    return error_response(request.path, 400)


def permission_denied(request: HttpRequest, exception: Exception | None = None) -> JsonResponse:
    return error_response(request.path, 403)
