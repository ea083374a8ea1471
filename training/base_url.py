from django.conf import settings
from django.http import HttpRequest


def public_base_url(request: HttpRequest) -> str:
    """Where nodes reach this service: PUBLIC_BASE_URL, or the request's own scheme and host."""
    return settings.PUBLIC_BASE_URL or request.build_absolute_uri("/").rstrip("/")
