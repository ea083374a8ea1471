"""The nodes' domain errors: rendered by core/error_render.py in each mount's shape."""

from core.errors import DomainError


class UnsafeEndpoint(DomainError):
    code = "unsafe_endpoint"
    attr = "endpoint_url"


class NodeDeregistered(DomainError):
    status, code = 401, "node_deregistered"
