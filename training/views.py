"""Seed 000's training endpoints (/api/v1/training/, API.md §13) and the node's dataset download."""

from django.db.models import QuerySet
from django.http import FileResponse
from drf_spectacular.utils import extend_schema
from drf_standardized_errors.openapi_validation_errors import extend_validation_errors
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from clients.choices import KeyScope
from clients.key_limit_types import key_limits_of
from clients.key_limits import key_admit
from clients.permissions import request_client
from core.openapi import error_response
from llm_models.authentication import IsNode, NodeTokenAuthentication, request_node
from training import selectors, services
from training.base_url import public_base_url
from training.filters import TrainingJobFilter
from training.models import TrainingJob
from training.serializers import TrainingEventOut, TrainingJobCreateIn, TrainingJobOut


class TrainingJobViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """The caller's training jobs. Another client's job is a 404."""

    serializer_class = TrainingJobOut
    lookup_value_regex = r"\d+"
    filterset_class = TrainingJobFilter
    search_fields = ["base_model"]
    ordering_fields = ["id", "created_at", "status", "progress"]
    ordering = ["-id"]

    def get_queryset(self) -> QuerySet[TrainingJob]:
        if getattr(self, "swagger_fake_view", False):
            return TrainingJob.objects.none()
        return selectors.training_job_list_own(client=request_client(self.request))

    @extend_schema(request=None, responses={200: TrainingJobOut, 409: error_response(409)}, summary="Cancel a job")
    def destroy(self, request: Request, pk: str | None = None) -> Response:
        job = services.training_job_cancel(job=self.get_object())
        return Response(TrainingJobOut(job).data)

    @extend_schema(responses={200: TrainingEventOut(many=True)}, summary="A job's progress history")
    @action(detail=True, methods=["get"], filter_backends=[])
    def events(self, request: Request, pk: str | None = None) -> Response:
        job = self.get_object()
        page = self.paginate_queryset(selectors.training_event_list(job=job))
        return self.get_paginated_response(TrainingEventOut(page, many=True).data)


@extend_validation_errors(["unsafe_dataset_url", "dataset_required"], field_name="dataset_url", methods=["post"])
class TrainingJobCreateView(APIView):
    @extend_schema(
        request=TrainingJobCreateIn,
        responses={201: TrainingJobOut, 402: error_response(402), 409: error_response(409), 503: error_response(503)},
        summary="Create a fine-tuning job (holds price_per_hour x max_hours)",
    )
    def post(self, request: Request) -> Response:
        data = TrainingJobCreateIn(data=request.data)
        data.is_valid(raise_exception=True)
        v = dict(data.validated_data)
        client = request_client(request)
        limits = key_limits_of(request)
        key_admit(limits=limits, model=None, scope=KeyScope.TRAINING)  # budget, rpm (API.md §12)
        file_id = v.pop("file_id", None)
        training_file = selectors.training_file_get_own(client=client, file_id=file_id) if file_id else None
        job = services.training_job_create(
            client=client,
            training_file=training_file,
            public_base_url=public_base_url(request),
            api_key_id=None if limits is None else limits.key_id,  # its charge counts to the key's budget
            **v,
        )
        return Response(TrainingJobOut(job).data, status=status.HTTP_201_CREATED)


class TrainingFileDownloadView(APIView):
    """An uploaded dataset, for the node its job was sent to (node token); anyone else: 404."""

    authentication_classes = [NodeTokenAuthentication]
    permission_classes = [IsNode]

    @extend_schema(
        responses={(200, "application/octet-stream"): bytes, 404: error_response(404)},
        summary="Download a training job's dataset (the assigned node only)",
    )
    def get(self, request: Request, file_id: int) -> FileResponse:
        found = selectors.training_file_get_for_node(node=request_node(request), file_id=file_id)
        return FileResponse(found.file.open("rb"), content_type="application/jsonl", filename=found.filename)
