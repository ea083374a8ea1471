"""Seed 004's `llm_models` endpoints: the node registry and the list of available models."""

from collections.abc import Mapping

from django.conf import settings
from drf_spectacular.utils import OpenApiParameter, extend_schema
from drf_standardized_errors.openapi_validation_errors import extend_validation_errors
from rest_framework import status
from rest_framework.exceptions import ValidationError
from rest_framework.generics import GenericAPIView
from rest_framework.permissions import AllowAny, IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from clients.permissions import IsApprovedProvider, request_client
from llm_models import selectors, services
from llm_models.authentication import IsNode, NodeTokenAuthentication, request_node
from llm_models.choices import NodeStatus
from llm_models.serializers import (
    AvailableModelOut,
    DeregisterIn,
    HeartbeatIn,
    HeartbeatOut,
    NodeRegisterIn,
    NodeRegisterOut,
)


def _sent_models_digest(request: Request) -> str | None:
    """The digest of `models` as the node sent it (see services.models_digest)."""
    data = request.data
    return services.models_digest(data["models"]) if isinstance(data, Mapping) and "models" in data else None


@extend_validation_errors(["duplicate_model"], field_name="models")
class NodeRegisterView(APIView):
    permission_classes = [IsAuthenticated, IsApprovedProvider]

    @extend_schema(request=NodeRegisterIn, responses={201: NodeRegisterOut}, summary="Register a GPU node")
    def post(self, request: Request) -> Response:
        data = NodeRegisterIn(data=request.data)
        data.is_valid(raise_exception=True)
        registered = services.node_register(
            owner=request_client(request), **data.validated_data, sent_models_digest=_sent_models_digest(request)
        )
        node = registered.node
        served = node.node_models.select_related("model")
        body = {
            "node_id": node.pk,
            "node_token": registered.raw_token,
            "name": node.name,
            "status": node.status,
            "region": node.region,
            "gpu": node.gpu_id,
            "models": [
                {
                    "name": nm.model.name,
                    "input_price_per_million": nm.input_price_per_million,
                    "output_price_per_million": nm.output_price_per_million,
                    "context_window": nm.context_window,
                }
                for nm in served
            ],
            "heartbeat_interval_s": settings.NODE_HEARTBEAT_INTERVAL_S,
        }
        return Response(NodeRegisterOut(body).data, status=status.HTTP_201_CREATED)


@extend_validation_errors(["duplicate_model"], field_name="models")
class NodeHeartbeatView(APIView):
    authentication_classes = [NodeTokenAuthentication]
    permission_classes = [IsNode]

    @extend_schema(request=HeartbeatIn, responses={200: HeartbeatOut}, summary="Node heartbeat with live metrics")
    def post(self, request: Request) -> Response:
        data = HeartbeatIn(data=request.data)
        data.is_valid(raise_exception=True)
        v = data.validated_data
        commands = services.node_heartbeat(
            node=request_node(request),
            metrics=v.get("metrics", {}),
            models=v.get("models"),
            active_requests=v.get("active_requests"),
            sent_models_digest=_sent_models_digest(request),
            capabilities=v.get("capabilities"),
            results=v.get("results"),
            actions=v.get("actions"),
        )
        return Response(
            {
                "status": NodeStatus.ONLINE,
                "heartbeat_interval_s": settings.NODE_HEARTBEAT_INTERVAL_S,
                "commands": [{"id": c.pk, "action": c.action, "params": c.params} for c in commands],
            }
        )


class NodeDeregisterView(APIView):
    authentication_classes = [NodeTokenAuthentication]
    permission_classes = [IsNode]

    @extend_schema(request=DeregisterIn, responses={204: None}, summary="Deregister the calling node")
    def delete(self, request: Request) -> Response:
        services.node_deregister(node=request_node(request))
        return Response(status=status.HTTP_204_NO_CONTENT)


@extend_validation_errors(["invalid"], field_name="ordering", methods=["get"])
class AllModelsView(GenericAPIView):
    """Models with at least one live node, with their lowest prices. Public: it is the marketplace's menu."""

    permission_classes = [AllowAny]
    serializer_class = AvailableModelOut
    filter_backends: list = []
    ORDERING = ("name", "live_nodes", "input_price_per_million", "output_price_per_million", "context_window")

    @extend_schema(
        parameters=[
            OpenApiParameter("search", str, description="Substring of the model name."),
            OpenApiParameter(
                "ordering",
                str,
                enum=[f"{sign}{key}" for key in ORDERING for sign in ("", "-")],
                description="A field to order by; '-' for descending.",
            ),
        ],
        responses=AvailableModelOut(many=True),
    )
    def get(self, request: Request) -> Response:
        models = selectors.model_list_available_cached()
        search = request.query_params.get("search", "").strip().lower()
        if search:
            models = [m for m in models if search in m["name"].lower()]
        ordering = request.query_params.get("ordering", "").strip()
        if ordering:
            key = ordering.lstrip("-")
            if key not in self.ORDERING:
                raise ValidationError({"ordering": [f"Order by one of: {', '.join(self.ORDERING)}."]})
            models.sort(key=lambda m: (m[key] is None, m[key]), reverse=ordering.startswith("-"))
        page = self.paginate_queryset(models)
        return self.get_paginated_response(AvailableModelOut(page, many=True).data)
