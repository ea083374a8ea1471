"""`GET /api/v1/generation/?id=chatcmpl-...` (API.md §11): one of the caller's /v1 requests, found by its id."""

from drf_spectacular.utils import extend_schema
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from clients.permissions import request_client
from inference.errors import GenerationQueryInvalid
from inference.selectors import inference_get_by_generation_id
from inference.serializers import GenerationOut, GenerationQueryIn


class GenerationView(APIView):
    key_scope = ""  # reading one's own requests needs no scope, as usage does

    @extend_schema(
        parameters=[GenerationQueryIn],
        responses={200: GenerationOut},
        summary="One of your /v1 requests by its completion id",
    )
    def get(self, request: Request) -> Response:
        query = GenerationQueryIn(data={k: v for k, v in request.query_params.items() if v != ""})
        if not query.is_valid():  # one 400 naming the parameter, in the shape the schema documents (as usage)
            name, messages = next(iter(query.errors.items()))
            raise GenerationQueryInvalid(f"`{name}`: {messages[0]}")
        row = inference_get_by_generation_id(client=request_client(request), generation_id=query.validated_data["id"])
        return Response(GenerationOut(row).data)
