"""`GET /api/v1/client/usage/` (API.md §12): the caller's requests summed by day, key and/or model."""

from drf_spectacular.utils import extend_schema
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from clients.permissions import request_client
from inference.errors import UsageQueryInvalid
from inference.serializers import UsageQueryIn, UsageRowOut
from inference.usage_rollup import span_end, span_start, usage_list_rollup


class UsageRollupView(APIView):
    key_scope = ""  # reading one's own usage needs no scope

    @extend_schema(
        parameters=[UsageQueryIn],
        responses={200: UsageRowOut(many=True)},
        summary="Your usage summed by day, key or model",
    )
    def get(self, request: Request) -> Response:
        # An empty value (`?to=`) means the parameter was not given, as everywhere in this API.
        query = UsageQueryIn(data={k: v for k, v in request.query_params.items() if v != ""})
        if not query.is_valid():  # one 400 naming the first bad parameter, in the shape the schema documents
            name, messages = next(iter(query.errors.items()))
            # Named in the detail: a query parameter is not a body field, and this answer is a plain client_error.
            raise UsageQueryInvalid(f"`{name}`: {messages[0]}")
        v = query.validated_data
        rows = usage_list_rollup(
            client=request_client(request),
            group_by=v["group_by"],
            start=span_start(v.get("from")),
            end=span_end(v.get("to")),
        )
        return Response(UsageRowOut(rows, many=True).data)
