"""Node token authentication: `Authorization: Bearer gmn_...`, or the seed's `node_token` body field."""

from typing import TYPE_CHECKING

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication, exceptions
from rest_framework.permissions import BasePermission
from rest_framework.request import Request

from clients.authentication import bearer_token
from core.tokens import hash_secret
from llm_models.models import Node
from llm_models.selectors import node_get_by_token_digest

if TYPE_CHECKING:
    from drf_spectacular.openapi import AutoSchema
    from rest_framework.views import APIView


class NodeTokenAuthentication(authentication.BaseAuthentication):
    """Authenticates a node; `request.auth` is the Node and `request.user` its owner's user."""

    def authenticate(self, request: Request) -> tuple | None:
        raw = bearer_token(request)
        if raw is None:
            body_token = request.data.get("node_token") if isinstance(request.data, dict) else None
            raw = body_token if isinstance(body_token, str) else None
        if raw is None:
            return None
        node = node_get_by_token_digest(digest=hash_secret(raw))
        if node is None:
            raise exceptions.AuthenticationFailed("Invalid or revoked node token.", code="invalid_node_token")
        owner = node.owner
        if not owner.user.is_active or not (owner.is_gpu_provider_approved or owner.user.is_staff):
            raise exceptions.AuthenticationFailed(
                "This node's provider is not approved; the node may not serve.", code="provider_not_approved"
            )
        return owner.user, node

    def authenticate_header(self, request: Request) -> str:
        return 'Bearer realm="node"'


class IsNode(BasePermission):
    def has_permission(self, request: Request, view: "APIView") -> bool:
        return isinstance(request.auth, Node)


def request_node(request: Request) -> Node:
    """The calling node, in a view behind NodeTokenAuthentication and IsNode (anyone else is a 401)."""
    node = request.auth
    if not isinstance(node, Node):
        raise exceptions.NotAuthenticated()
    return node


class NodeTokenAuthenticationScheme(OpenApiAuthenticationExtension):
    target_class = "llm_models.authentication.NodeTokenAuthentication"
    name = "nodeToken"

    def get_security_definition(self, auto_schema: "AutoSchema") -> dict[str, str]:
        return {"type": "http", "scheme": "bearer", "description": "A node token (`gmn_...`)."}
