"""The OpenAI-compatible API under /v1/: `POST chat/completions` (stream or not: the web door of the /v1 pipeline),
`POST completions` and `POST embeddings` (the same door and pipeline, another operation: API.md §11), and
`GET models`.

Authentication is the client's API key as `Authorization: Bearer`. Errors use OpenAI's shape
`{"error": {"message", "type", "param", "code"}}` so OpenAI SDKs raise the matching exception. These routes are
not in /api/schema/ (OpenAI publishes their contract); docs/API.md §4 lists what is accepted.
"""

from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import aclosing
from datetime import datetime
from typing import TYPE_CHECKING

from asgiref.sync import async_to_sync
from django.http import Http404
from django.http.response import HttpResponseBase
from drf_spectacular.utils import extend_schema
from rest_framework import exceptions
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from clients.authentication import INVALID_KEY, ApiKeyAuthentication, bearer_token
from clients.key_limit_types import key_limits_of
from clients.permissions import request_client
from core.error_render import openai_body
from core.errors import DomainError
from core.idempotency import with_idempotency
from inference import door_limits
from inference.errors import ModelNotFound
from inference.sse import sse_response, stream_ref
from inference.v1 import keyless, lookups, web
from inference.v1.completions import parse_completion_request
from inference.v1.embeddings import parse_embeddings_request
from inference.v1.pipeline import Caller, ChatCall, Finished, stream_end
from inference.v1.protocol import ChatRequest, error_body, parse_chat_request
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
        body, headers = error_body(exc)
        return Response(body, status=exc.status, headers=headers)
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
    """The client API key from the /v1 doors' one per-process cache (v1/lookups.py), kept INFERENCE_KEY_CACHE_S, so
    a revoked key or deactivated user is refused at most that late on /v1/. Expiry and scope: ApiKeyAuthentication.
    """

    def lookup(self, request: Request) -> tuple | None:
        raw = bearer_token(request)
        if raw is None:
            return None
        known = lookups.known_key(raw)
        if known is None:
            raise exceptions.AuthenticationFailed(INVALID_KEY, code="invalid_api_key")
        return known.user, known.key


class _OpenAIView(APIView):
    authentication_classes = [CachedApiKeyAuthentication]
    permission_classes = [IsAuthenticated]

    def get_exception_handler(self) -> Callable[[Exception, dict], Response | None]:
        return openai_exception_handler


_web = web.PIPELINE


async def _open(chat: ChatRequest, caller: Caller) -> ChatCall:
    call = await _web.open(chat, caller)
    if call is None:  # the web strategies answer every request themselves (they raise instead)
        raise RuntimeError("The web door's pipeline handed a request off.")
    return call


async def _complete(chat: ChatRequest, caller: Caller) -> dict:
    return await _web.complete(await _open(chat, caller))


async def _sse(call: ChatCall) -> AsyncIterator[bytes]:
    """The pipeline's events as SSE: keep-alives, chunks, then its end (v1/pipeline.stream_end). A request nothing
    relayed ends with the error chunk too: the response has started by then."""
    async with aclosing(_web.events(call)) as events:
        async for event in events:
            if isinstance(event, Finished):
                yield stream_end(call, event)
                return
            yield event


def _answer(chat: ChatRequest, caller: Caller) -> HttpResponseBase:
    """Run the pipeline for an authenticated (or paying) caller: a JSON answer, or a stream once it is opened (so
    that routing and money errors are JSON answers, not events)."""
    if not chat.stream:
        return Response(async_to_sync(_complete)(chat, caller))
    return sse_response(_sse(async_to_sync(_open)(chat, caller)))


@extend_schema(exclude=True)
class ChatCompletionsView(_OpenAIView):
    """The web door of the /v1 pipeline (inference/v1/pipeline.py): what the lean door hands over, and SQLite.
    Subclasses run it for another operation (`parse` gives the request its Endpoint)."""

    parse: Callable[[object], ChatRequest] = staticmethod(parse_chat_request)
    keyless_door = True  # x402 pays for chat only (its quote prices a chat body)

    def get_permissions(self) -> Sequence["_SupportsHasPermission"]:
        # No Authorization at all, and a keyless door open (x402): the door answers it (post below).
        if self.keyless_door and "authorization" not in self.request.headers and keyless.door() is not None:
            return []
        return super().get_permissions()

    def post(self, request: Request) -> HttpResponseBase:
        chat = self.parse(request.data)
        if not request.user.is_authenticated:
            return self._keyless(request, chat)
        client = request_client(request)
        limits = key_limits_of(request)
        admitted = door_limits.admit(request, model=chat.model, client=client)  # key limits, plan (API.md §12)
        self.ratelimit_headers = admitted.headers  # on every answer from here, errors too (finalize_response)

        def caller(ref: str | None) -> Caller:
            return Caller(client_id=client.pk, limits=limits, covered=admitted.covered, ref=ref)

        if not chat.stream:  # stored for replay under an Idempotency-Key
            return with_idempotency(request, lambda ref: Response(async_to_sync(_complete)(chat, caller(ref))))
        return _answer(chat, caller(stream_ref(request)))

    def finalize_response(self, request: Request, response: Response, *args: object, **kwargs: object) -> Response:
        response = super().finalize_response(request, response, *args, **kwargs)
        for name, value in getattr(self, "ratelimit_headers", {}).items():
            response[name] = value
        return response

    def _keyless(self, request: Request, chat: ChatRequest) -> HttpResponseBase:  # chat only (keyless_door)
        door = keyless.door()
        if door is None:  # closed since the permission check
            raise exceptions.NotAuthenticated()
        call = keyless.KeylessCall(
            request=request,
            body=chat.body,
            stream=chat.stream,
            quote=lambda: keyless.quote(chat),
            serve=lambda client: _answer(chat, Caller(client_id=client.pk)),
        )
        return door.serve(call)


@extend_schema(exclude=True)
class CompletionsView(ChatCompletionsView):
    """`POST /v1/completions`: a legacy text completion through the same door and pipeline."""

    parse = staticmethod(parse_completion_request)
    keyless_door = False


@extend_schema(exclude=True)
class EmbeddingsView(ChatCompletionsView):
    """`POST /v1/embeddings`: embeddings through the same door and pipeline (never streamed)."""

    parse = staticmethod(parse_embeddings_request)
    keyless_door = False


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
