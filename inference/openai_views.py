"""The OpenAI-compatible API under /v1/: `POST chat/completions` (stream or not) and `GET models`.

Authentication is the client's API key as `Authorization: Bearer`. Errors use OpenAI's shape
`{"error": {"message", "type", "param", "code"}}` so OpenAI SDKs raise the matching exception. These routes are
not in /api/schema/ (OpenAI publishes their contract); docs/API.md §4 lists what is accepted.
"""

import time
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING

from asgiref.sync import async_to_sync, sync_to_async
from django.conf import settings
from django.db import transaction
from django.http import Http404
from django.http.response import HttpResponseBase
from drf_spectacular.utils import extend_schema
from rest_framework import exceptions
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from clients.authentication import ApiKeyAuthentication, bearer_token
from clients.key_limits import KeyLimits
from clients.models import ApiKey, Client
from clients.permissions import request_client
from core.error_render import openai_body, openai_sse_error
from core.errors import DomainError
from core.idempotency import with_idempotency
from core.tokens import hash_secret
from inference import door_limits, keyless, relay, services
from inference.choices import InferenceChannel
from inference.direct import Finished, relay_and_finish
from inference.errors import ModelNotFound
from inference.openai_protocol import parse_chat_request, question_of, relay_failure, usage_chunk
from inference.relay import Delivery, sse
from inference.services import Opened
from inference.sse import sse_response, stream_ref
from llm_models.models import LlmModel
from llm_models.selectors import model_get_available, model_get_private, model_list_available, model_list_private

if TYPE_CHECKING:
    from rest_framework.permissions import _SupportsHasPermission


def openai_error(
    status: int, *, message: str, code: str, param: str | None = None, headers: dict[str, str] | None = None
) -> Response:
    return Response(openai_body(status, message=message, code=code, param=param), status=status, headers=headers)


def _first_error(detail: object, path: str = "") -> tuple[str | None, str, str]:
    """(param, message, code) of the first error in a DRF ValidationError detail."""
    if isinstance(detail, dict):
        for key, value in detail.items():
            return _first_error(value, f"{path}.{key}" if path else str(key))
    if isinstance(detail, list) and detail:
        return _first_error(detail[0], path)
    return path or None, str(detail), getattr(detail, "code", "invalid") or "invalid"


def openai_exception_handler(exc: Exception, context: dict) -> Response | None:
    """Render every known error in OpenAI's shape; unknown ones stay 500s (bugs)."""
    if isinstance(exc, DomainError):
        retry_after = getattr(exc, "retry_after", None)
        headers = {**getattr(exc, "headers", {}), **({"Retry-After": str(retry_after)} if retry_after else {})}
        return openai_error(exc.status, message=exc.detail, code=exc.code, param=exc.attr, headers=headers)
    if isinstance(exc, Http404):
        return openai_error(404, message="Not found.", code="not_found")
    if isinstance(exc, exceptions.ValidationError):
        param, message, code = _first_error(exc.detail)
        return openai_error(400, message=message, code=code, param=param)
    if isinstance(exc, exceptions.NotAuthenticated | exceptions.AuthenticationFailed):
        return openai_error(401, message=str(exc.detail), code="invalid_api_key")
    if isinstance(exc, exceptions.Throttled):
        return openai_error(
            429,
            message=str(exc.detail),
            code="rate_limit_exceeded",
            headers={"Retry-After": str(getattr(exc, "wait", None) or 1)},  # DRF sets `wait`; its stubs omit it
        )
    if isinstance(exc, exceptions.APIException):
        codes = exc.get_codes()
        return openai_error(exc.status_code, message=str(exc.detail), code=codes if isinstance(codes, str) else "error")
    return None


class CachedApiKeyAuthentication(ApiKeyAuthentication):
    """The client API key, remembered per process for INFERENCE_KEY_CACHE_S so the hot path skips the lookup.

    A revoked key or deactivated user is therefore refused at most INFERENCE_KEY_CACHE_S late on /v1/.
    """

    _cache: dict[str, tuple[float, tuple]] = {}
    _MAX_ENTRIES = 10_000

    def lookup(self, request: Request) -> tuple | None:
        raw = bearer_token(request)
        if raw is None:
            return None
        digest = hash_secret(raw)
        now = time.monotonic()
        hit = self._cache.get(digest)
        if hit is not None and hit[0] > now:
            return hit[1]
        result = super().lookup(request)  # raises for a bad key: failures are never cached
        if len(self._cache) >= self._MAX_ENTRIES:
            self._cache.clear()
        if result is not None and settings.INFERENCE_KEY_CACHE_S > 0:
            self._cache[digest] = (now + settings.INFERENCE_KEY_CACHE_S, result)
        return result


class _OpenAIView(APIView):
    authentication_classes = [CachedApiKeyAuthentication]
    permission_classes = [IsAuthenticated]

    def get_exception_handler(self) -> Callable[[Exception, dict], Response | None]:
        return openai_exception_handler


async def _openai_stream(
    opened: Opened, *, include_usage: bool, limits: KeyLimits | None = None
) -> AsyncIterator[bytes]:
    """The node's chunks as SSE; a final usage chunk if asked; `[DONE]`. A failure ends with an `error` event."""
    last: dict = {}
    async for item in relay_and_finish(opened):
        if not isinstance(item, Finished):
            last = item
            yield sse(item)
            continue
        await sync_to_async(door_limits.request_finished)(req=item.request, limits=limits)
        if item.error is not None:
            yield openai_sse_error(message=item.error.detail, code=item.error.code)
            return
        if include_usage and item.usage is not None:
            model = opened.request.desired_model
            yield sse(usage_chunk(last, model=model, usage=item.usage, fallback_id=f"chatcmpl-{item.request.pk}"))
        yield sse("[DONE]")


@extend_schema(exclude=True)
class ChatCompletionsView(_OpenAIView):
    def get_permissions(self) -> Sequence["_SupportsHasPermission"]:
        # No Authorization at all, and a keyless door open (x402): the door answers it (post below).
        if "authorization" not in self.request.headers and keyless.door() is not None:
            return []
        return super().get_permissions()

    def post(self, request: Request) -> HttpResponseBase:
        body, stream, include_usage = parse_chat_request(request.data)
        if not request.user.is_authenticated:
            return self._keyless(request, body, stream=stream, include_usage=include_usage)
        client = request_client(request)
        limits = door_limits.limits_of(request)
        admitted = door_limits.admit(request, model=body["model"], client=client)  # key limits, plan (API.md §12)
        self.ratelimit_headers = admitted.headers  # on every answer from here, errors too (finalize_response)
        key = door_limits.calling_key(request)
        response: HttpResponseBase
        if not stream:
            response = with_idempotency(
                request, lambda ref: self._complete(client, body, ref, key=key, limits=limits, covered=admitted.covered)
            )
        else:
            opened = self._open(client, body, ref=stream_ref(request), key=key, covered=admitted.covered)
            response = sse_response(_openai_stream(opened, include_usage=include_usage, limits=limits))
        return response

    def finalize_response(self, request: Request, response: Response, *args: object, **kwargs: object) -> Response:
        response = super().finalize_response(request, response, *args, **kwargs)
        for name, value in getattr(self, "ratelimit_headers", {}).items():
            response[name] = value
        return response

    def _keyless(self, request: Request, body: dict, *, stream: bool, include_usage: bool) -> HttpResponseBase:
        door = keyless.door()
        if door is None:  # closed since the permission check
            raise exceptions.NotAuthenticated()

        def serve(client: Client) -> HttpResponseBase:
            if not stream:
                return self._complete(client, body, None)
            opened = self._open(client, body, ref=None)
            return sse_response(_openai_stream(opened, include_usage=include_usage))

        call = keyless.KeylessCall(
            request=request, body=body, stream=stream, quote=lambda: keyless.quote(body), serve=serve
        )
        return door.serve(call)

    @staticmethod
    def _open(
        client: Client, body: dict, *, ref: str | None, key: ApiKey | None = None, covered: bool = False
    ) -> Opened:
        with transaction.atomic():
            opened = services.inference_open(
                client=client,
                desired_model=body["model"],
                question_text=question_of(body),
                max_tokens=body["max_tokens"],
                body=body,
                channel=InferenceChannel.DIRECT,
                ref=ref,
                plan_covered=covered,  # no hold, no charge (API.md §12)
            )
            door_limits.request_attach(request_ids=[opened.request.pk], key=key)
        return opened

    def _complete(
        self,
        client: Client,
        body: dict,
        ref: str | None,
        *,
        key: ApiKey | None = None,
        limits: KeyLimits | None = None,
        covered: bool = False,
    ) -> Response:
        opened = self._open(client, body, ref=ref, key=key, covered=covered)
        delivery = Delivery()
        payload = async_to_sync(relay.relay_complete)(candidates=opened.candidates, body=opened.body, delivery=delivery)
        finished = services.inference_finish(
            req=opened.request, attempt=opened.request.attempts, delivery=delivery, prompt=opened.prompt
        )
        if finished is not None:
            door_limits.request_finished(req=finished, limits=limits)
        if payload is None:
            raise relay_failure(delivery)
        usage = relay.meter(delivery, prompt=opened.prompt, max_tokens=opened.request.max_tokens)
        payload["model"] = opened.request.desired_model
        payload["usage"] = usage.as_openai()
        return Response(payload)


def _model_object(name: str, created_at: datetime) -> dict:
    """OpenAI's model object."""
    return {"id": name, "object": "model", "created": int(created_at.timestamp()), "owned_by": "gpu-marketplace"}


@extend_schema(exclude=True)
class ModelListView(_OpenAIView):
    def get(self, request: Request) -> Response:
        available = model_list_available()
        created = dict(
            LlmModel.objects.filter(name__in=[m["name"] for m in available]).values_list("name", "created_at")
        )
        data = [_model_object(m["name"], created[m["name"]]) for m in available]
        # The caller's own fine-tuned models (API.md §13): in its list only.
        own = model_list_private(client_id=request_client(request).pk).order_by("name")
        data += [_model_object(m.name, m.created_at) for m in own]
        return Response({"object": "list", "data": data})


@extend_schema(exclude=True)
class ModelDetailView(_OpenAIView):
    """`GET /v1/models/{id}`: a model the list shows (a live node serves it); any other id is 404 model_not_found.
    Ids hold slashes (`meta-llama/Llama-3.1-8B-Instruct`): the URL takes the rest of the path."""

    def get(self, request: Request, model_id: str) -> Response:
        model = model_get_available(name=model_id) or model_get_private(
            name=model_id, client_id=request_client(request).pk
        )
        if model is None:
            raise ModelNotFound(f"The model `{model_id}` does not exist or no node serves it now.", attr="model")
        return Response(_model_object(model.name, model.created_at))
