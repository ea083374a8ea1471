"""Small request helpers shared by views."""

from django.http import HttpRequest


def client_ip(request: HttpRequest) -> str | None:
    """The peer address. Proxies' X-Forwarded-For is not trusted: the deployment's proxy sets REMOTE_ADDR."""
    return request.META.get("REMOTE_ADDR") or None
