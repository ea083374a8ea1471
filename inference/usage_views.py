"""`GET /api/v1/client/usage/` (API.md §12): the caller's requests summed by day, key and/or model."""

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from clients.permissions import request_client
from inference.serializers import UsageQueryIn, UsageRowOut
from inference.usage_rollup import span_end, span_start, usage_list_rollup


class UsageRollupView(APIView):
    key_scope = ""  # reading one's own usage needs no scope

    @extend_schema(
        parameters=[
            OpenApiParameter("group_by", str, description="day (default), key, model, or several: `day,model`."),
            OpenApiParameter("from", OpenApiTypes.STR, description="ISO date or datetime (UTC), inclusive."),
            OpenApiParameter("to", OpenApiTypes.STR, description="ISO datetime (exclusive) or date (inclusive)."),
        ],
        responses={200: UsageRowOut(many=True)},
        summary="Your usage summed by day, key or model",
    )
    def get(self, request: Request) -> Response:
        query = UsageQueryIn(data=request.query_params)
        query.is_valid(raise_exception=True)
        v = query.validated_data
        rows = usage_list_rollup(
            client=request_client(request),
            group_by=v["group_by"],
            start=span_start(v.get("from")),
            end=span_end(v.get("to")),
        )
        return Response(UsageRowOut(rows, many=True).data)
