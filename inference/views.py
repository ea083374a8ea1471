"""Seed 004's `inference` resource: ask (sync or async), stream, batch; read, change and delete your own records."""

import json
from collections.abc import AsyncIterator
from contextlib import aclosing

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import transaction
from django.db.models import QuerySet
from django.http import StreamingHttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from drf_standardized_errors.openapi_validation_errors import extend_validation_errors
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response

from clients.key_limit_types import key_limits_of
from clients.key_limits import key_admit
from clients.permissions import request_client
from core import metrics
from core.error_render import openai_sse_error
from core.idempotency import (
    HEADER,
    IDEMPOTENCY_KEY_PARAMETER,
    IDEMPOTENCY_RESPONSES,
    KEY_PATTERN,
    with_idempotency,
)
from core.openapi import error_response
from inference import door_limits, selectors, services, waits
from inference.choices import InferenceChannel
from inference.filters import InferenceFilter
from inference.models import InferenceRequest
from inference.serializers import (
    InferenceBatchIn,
    InferenceBatchOut,
    InferenceIn,
    InferenceOut,
    InferenceUpdateIn,
)
from inference.services import Opened
from inference.sse import sse_response, stream_ref
from inference.v1 import web
from inference.v1.pipeline import Caller, ChatCall, Finished
from inference.v1.protocol import sse

PREFER = OpenApiParameter(
    "Prefer",
    str,
    OpenApiParameter.HEADER,
    enum=["respond-async"],
    description="`respond-async`: answer 202 at once with the queued record instead of waiting for the answer.",
)
STREAM_IDEMPOTENCY_KEY = OpenApiParameter(
    HEADER,
    {"type": "string", "pattern": KEY_PATTERN},
    OpenApiParameter.HEADER,
    description="A stream cannot be replayed: a second stream with the same key is a 409 `stream_not_replayable` "
    "and charges nothing.",
)


def _wants_async(request: Request) -> bool:
    return "respond-async" in request.headers.get("Prefer", "").lower()


def _open_question(request: Request, *, ref: str | None, channel: str) -> Opened:
    """Check a seed-style question (InferenceIn), admit it under the key's limits and open it: row written (with
    the key that asked), hold placed."""
    client = request_client(request)
    data = InferenceIn(data=request.data, context={"client": client})
    data.is_valid(raise_exception=True)
    v = data.validated_data
    admitted = door_limits.admit(request, model=v["desired_model"], client=client)  # key limits, plan (API.md §12)
    with transaction.atomic():
        opened = services.inference_open(
            client_id=client.pk,
            desired_model=v["desired_model"],
            question_text=v["question_text"],
            max_tokens=v.get("max_tokens"),
            channel=channel,
            ref=ref,
            plan_covered=admitted.covered,  # no hold, no charge (API.md §12)
            api_key_id=door_limits.calling_key_id(request),
        )
    return opened


def _wait_or_hand_over(request: Request, *, req: InferenceRequest, ref: str) -> InferenceRequest:
    """Hand the wait to the ASGI layer in front of Django when there is one (inference/seed_asgi.py: it answers 201
    once the row is finished, this 202 meanwhile, with no thread held); else wait here (test client, WSGI). The
    layer renders JSON only: a caller that negotiated another format is waited for here."""
    slot = waits.wait_in_front(request._request)
    if slot is not None and isinstance(request.accepted_renderer, JSONRenderer):
        slot.request_id, slot.ref = req.pk, ref
        slot.route = metrics.defer_http_observation(request._request)  # counted as the layer answers
        return req
    return waits.inference_wait_finished(req=req, timeout=settings.INFERENCE_SYNC_WAIT_S)


async def _seed_stream(call: ChatCall) -> AsyncIterator[bytes]:
    """Chunk events, then `event: inference` with the saved record, then `[DONE]` (no `[DONE]` after an error).
    Relayed and recorded by the web door's /v1 pipeline (inference/v1/web.py)."""
    async with aclosing(web.PIPELINE.events(call)) as events:
        async for event in events:
            if not isinstance(event, Finished):
                yield event
                continue
            record = await sync_to_async(lambda r: InferenceOut(r).data)(event.row)
            if event.error is not None:
                yield openai_sse_error(message=event.error.detail, code=event.error.code)
            yield f"event: inference\ndata: {json.dumps(record, default=str)}\n\n".encode()
            if event.error is None:
                yield sse("[DONE]")


# InferenceIn.validate_client: `client` may name only the caller (API.md §4).
@extend_validation_errors(["not_yours"], field_name="client", actions=["create", "stream"])
class InferenceViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    viewsets.GenericViewSet,
):
    """Your inference requests. Others' ids are 404."""

    serializer_class = InferenceOut
    lookup_value_regex = r"\d+"
    filterset_class = InferenceFilter
    search_fields = ["question_text", "answer_text", "desired_model"]
    ordering_fields = ["id", "created_at", "finished_at", "cost", "latency_ms", "status", "desired_model"]
    ordering = ["-created_at", "-id"]

    def get_queryset(self) -> QuerySet[InferenceRequest]:
        if getattr(self, "swagger_fake_view", False):
            return InferenceRequest.objects.none()
        return selectors.inference_list_visible(viewer=request_client(self.request))

    @extend_schema(
        request=InferenceIn,
        parameters=[PREFER, IDEMPOTENCY_KEY_PARAMETER],
        responses={
            **IDEMPOTENCY_RESPONSES,
            201: InferenceOut,
            202: OpenApiResponse(InferenceOut, description="Still queued or running: poll `GET {id}/`."),
            402: error_response(402),
            404: error_response(404),
            503: error_response(503),
        },
        summary="Ask a model; waits for the answer unless `Prefer: respond-async`",
    )
    def create(self, request: Request) -> Response:
        def ask(ref: str) -> Response:
            req = _open_question(request, ref=ref, channel=InferenceChannel.WORKER).request
            if not (req.is_finished or _wants_async(request)):
                req = _wait_or_hand_over(request, req=req, ref=ref)
            code = status.HTTP_201_CREATED if req.is_finished else status.HTTP_202_ACCEPTED
            return Response(InferenceOut(req).data, status=code)

        return with_idempotency(request, ask)

    @extend_schema(
        request=InferenceUpdateIn,
        responses={200: InferenceOut, 402: error_response(402), 503: error_response(503)},
        summary="Change a queued request",
    )
    def update(self, request: Request, pk: str | None = None) -> Response:
        return self._update(request, partial=False)

    @extend_schema(
        request=InferenceUpdateIn,
        responses={200: InferenceOut, 402: error_response(402), 503: error_response(503)},
        summary="Change a queued request",
    )
    def partial_update(self, request: Request, pk: str | None = None) -> Response:
        return self._update(request, partial=True)

    def _update(self, request: Request, *, partial: bool) -> Response:
        req = self.get_object()
        data = InferenceUpdateIn(data=request.data, partial=partial)
        data.is_valid(raise_exception=True)
        req = services.inference_update(req=req, **data.validated_data)
        return Response(InferenceOut(req).data)

    @extend_schema(responses={204: None}, summary="Delete a finished record, or cancel a queued one")
    def destroy(self, request: Request, pk: str | None = None) -> Response:
        services.inference_delete(req=self.get_object())
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(
        request=InferenceIn,
        parameters=[STREAM_IDEMPOTENCY_KEY],
        responses={
            (200, "text/event-stream"): OpenApiResponse(
                OpenApiTypes.STR,
                description="`data: {chat.completion.chunk}` events, then `event: inference` with the saved record, "
                "then `data: [DONE]`. A failure ends with `event: error` and the record, without `[DONE]`.",
            ),
            402: error_response(402),
            404: error_response(404),
            503: error_response(503),
        },
        summary="Ask a model and stream the answer (server-sent events)",
    )
    @action(detail=False, methods=["post"], url_path="stream")
    def stream(self, request: Request) -> StreamingHttpResponse:
        opened = _open_question(request, ref=stream_ref(request), channel=InferenceChannel.WEB)
        caller = Caller(
            client_id=opened.request.client_id,
            limits=key_limits_of(request),
            covered=opened.request.plan_covered,
        )
        return sse_response(_seed_stream(web.call_of(opened, caller)))

    @extend_schema(
        request=InferenceBatchIn,
        parameters=[IDEMPOTENCY_KEY_PARAMETER],
        responses={
            **IDEMPOTENCY_RESPONSES,
            202: InferenceBatchOut,
            402: error_response(402),
            404: error_response(404),
            503: error_response(503),
        },
        summary="Ask up to 100 prompts at once; each is dispatched and billed on its own",
    )
    @action(detail=False, methods=["post"], url_path="batch")
    def batch(self, request: Request) -> Response:
        def submit(ref: str) -> Response:
            data = InferenceBatchIn(data=request.data)
            data.is_valid(raise_exception=True)
            v = data.validated_data
            # A batch is one request to the key's rpm; its items are covered by the plan while its quota lasts.
            key_admit(limits=key_limits_of(request), model=v["model"])
            client = request_client(request)
            with transaction.atomic():
                batch = services.inference_batch_create(
                    client=client,
                    model=v["model"],
                    prompts=v["prompts"],
                    max_tokens=v.get("max_tokens"),
                    ref=ref,
                    covered=door_limits.batch_covered(client=client, model=v["model"], count=len(v["prompts"])),
                    api_key_id=door_limits.calling_key_id(request),
                )
            batch = selectors.inference_batch_get_visible(viewer=request_client(request), batch_id=batch.pk)
            return Response(InferenceBatchOut(batch).data, status=status.HTTP_202_ACCEPTED)

        return with_idempotency(request, submit)

    @extend_schema(responses={200: InferenceBatchOut}, summary="A batch's progress and answers")
    @action(
        detail=False, methods=["get"], url_path=r"batch/(?P<batch_id>\d+)", filter_backends=[], pagination_class=None
    )
    def batch_detail(self, request: Request, batch_id: str) -> Response:
        batch = selectors.inference_batch_get_visible(viewer=request_client(request), batch_id=int(batch_id))
        return Response(InferenceBatchOut(batch).data)
