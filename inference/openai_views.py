"""The OpenAI-compatible API under /v1/: `POST chat/completions` (stream or not) and `GET models`.

Authentication is the client's API key as `Authorization: Bearer`. Errors use OpenAI's shape
`{"error": {"message", "type", "param", "code"}}` so OpenAI SDKs raise the matching exception. These routes are
not in /api/schema/ (OpenAI publishes their contract); docs/API.md §4 lists what is accepted.
"""

import time
from collections.abc import AsyncIterator
from datetime import datetime

from asgiref.sync import async_to_sync
from django.conf import settings
from django.http import Http404
from drf_spectacular.utils import extend_schema
from rest_framework import exceptions
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from clients.authentication import ApiKeyAuthentication, bearer_token
from core.error_render import openai_body, openai_sse_error
from core.errors import DomainError
from core.idempotency import with_idempotency
from core.tokens import hash_secret
from inference import relay, services
from inference.choices import InferenceChannel
from inference.direct import Finished, relay_and_finish
from inference.errors import BadChatRequest, ModelNotFound, NoCapacity, UpstreamRejected
from inference.relay import Delivery, sse
from inference.services import Opened
from inference.views import sse_response, stream_ref
from llm_models.models import LlmModel
from llm_models.selectors import model_get_available, model_list_available

# Request keys passed through to the node as they are (after the checks below).
PASSTHROUGH = (
    "temperature",
    "top_p",
    "stop",
    "tools",
    "tool_choice",
    "response_format",
    "seed",
    "presence_penalty",
    "frequency_penalty",
    "logit_bias",
    "logprobs",
    "top_logprobs",
    "user",
    "parallel_tool_calls",
)
ROLES = {"system", "developer", "user", "assistant", "tool", "function"}
MAX_MESSAGES = 1000


def openai_error(status: int, *, message: str, code: str, param: str | None = None, headers=None) -> Response:  # type: ignore[no-untyped-def]
    return Response(openai_body(status, message=message, code=code, param=param), status=status, headers=headers)


def relay_failure(delivery: Delivery) -> DomainError:
    """Why nothing was relayed, as the error to answer: the node refused the request itself (400), or no node
    could answer it (503 with Retry-After)."""
    error = delivery.error
    if error is not None and not error.node_fault:
        return UpstreamRejected(error.detail)
    return NoCapacity("No node could answer the request; retry later.", retry_after=settings.INFERENCE_RETRY_AFTER_S)


def usage_chunk(last: dict, *, model: str, usage: relay.Usage, fallback_id: str) -> dict:
    """The stream's closing `chat.completion.chunk` carrying `usage` (stream_options.include_usage)."""
    return {
        "id": last.get("id", fallback_id),
        "object": "chat.completion.chunk",
        "created": last.get("created", int(time.time())),
        "model": model,
        "choices": [],
        "usage": usage.as_openai(),
    }


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
        headers = {"Retry-After": str(retry_after)} if retry_after else None
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
            429, message=str(exc.detail), code="rate_limit_exceeded", headers={"Retry-After": str(exc.wait or 1)}
        )
    if isinstance(exc, exceptions.APIException):
        return openai_error(
            exc.status_code,
            message=str(exc.detail),
            code=exc.get_codes() if isinstance(exc.get_codes(), str) else "error",
        )
    return None


class CachedApiKeyAuthentication(ApiKeyAuthentication):
    """The client API key, remembered per process for INFERENCE_KEY_CACHE_S so the hot path skips the lookup.

    A revoked key or deactivated user is therefore refused at most INFERENCE_KEY_CACHE_S late on /v1/.
    """

    _cache: dict[str, tuple[float, tuple]] = {}
    _MAX_ENTRIES = 10_000

    def authenticate(self, request: Request) -> tuple | None:
        raw = bearer_token(request)
        if raw is None:
            return None
        digest = hash_secret(raw)
        now = time.monotonic()
        hit = self._cache.get(digest)
        if hit is not None and hit[0] > now:
            return hit[1]
        result = super().authenticate(request)  # raises for a bad key: failures are never cached
        if len(self._cache) >= self._MAX_ENTRIES:
            self._cache.clear()
        if result is not None and settings.INFERENCE_KEY_CACHE_S > 0:
            self._cache[digest] = (now + settings.INFERENCE_KEY_CACHE_S, result)
        return result


class _OpenAIView(APIView):
    authentication_classes = [CachedApiKeyAuthentication]
    permission_classes = [IsAuthenticated]

    def get_exception_handler(self):  # type: ignore[no-untyped-def]
        return openai_exception_handler


def _int(data: dict, key: str, *, low: int, high: int) -> int | None:
    value = data.get(key)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise BadChatRequest(f"`{key}` must be an integer from {low} to {high}.", attr=key)
    return value


def parse_chat_request(data: object) -> tuple[dict, bool, bool]:
    """Check an OpenAI chat request; returns (body for the node, stream?, include usage in the stream?)."""
    if not isinstance(data, dict):
        raise BadChatRequest("The body must be a JSON object.")
    model = data.get("model")
    if not isinstance(model, str) or not model.strip() or len(model) > 255:
        raise BadChatRequest("`model` must be a model name.", attr="model")
    messages = data.get("messages")
    if not isinstance(messages, list) or not 1 <= len(messages) <= MAX_MESSAGES:
        raise BadChatRequest(f"`messages` must be a list of 1 to {MAX_MESSAGES} messages.", attr="messages")
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or message.get("role") not in ROLES:
            raise BadChatRequest(f"`messages[{i}]` must be an object with a valid `role`.", attr=f"messages.{i}")
        content = message.get("content")
        if content is not None and not isinstance(content, str | list):
            raise BadChatRequest(f"`messages[{i}].content` must be a string or a list.", attr=f"messages.{i}")
    limit = settings.INFERENCE_MAX_TOKENS_LIMIT
    max_tokens = _int(data, "max_completion_tokens", low=1, high=limit) or _int(data, "max_tokens", low=1, high=limit)
    if data.get("n", 1) != 1:
        raise BadChatRequest("Only `n` = 1 is supported.", attr="n")
    stream = data.get("stream", False)
    if not isinstance(stream, bool):
        raise BadChatRequest("`stream` must be a boolean.", attr="stream")
    options = data.get("stream_options") or {}
    if not isinstance(options, dict):
        raise BadChatRequest("`stream_options` must be an object.", attr="stream_options")
    for key in ("temperature", "top_p", "presence_penalty", "frequency_penalty"):
        value = data.get(key)
        if value is not None and (not isinstance(value, int | float) or isinstance(value, bool)):
            raise BadChatRequest(f"`{key}` must be a number.", attr=key)
    body = {"model": model, "messages": messages, "max_tokens": max_tokens or settings.INFERENCE_DEFAULT_MAX_TOKENS}
    body.update({key: data[key] for key in PASSTHROUGH if key in data})
    return body, stream, bool(options.get("include_usage"))


def question_of(body: dict) -> str:
    """The last user message's text, kept as the record's question_text."""
    for message in reversed(body["messages"]):
        if message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, list):
                content = " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
            return str(content or "")[:100_000]
    return ""


async def _openai_stream(opened: Opened, *, include_usage: bool) -> AsyncIterator[bytes]:
    """The node's chunks as SSE; a final usage chunk if asked; `[DONE]`. A failure ends with an `error` event."""
    last: dict = {}
    async for item in relay_and_finish(opened):
        if not isinstance(item, Finished):
            last = item
            yield sse(item)
            continue
        if item.error is not None:
            yield openai_sse_error(message=item.error.detail, code=item.error.code)
            return
        if include_usage and item.usage is not None:
            model = opened.request.desired_model
            yield sse(usage_chunk(last, model=model, usage=item.usage, fallback_id=f"chatcmpl-{item.request.pk}"))
        yield sse("[DONE]")


@extend_schema(exclude=True)
class ChatCompletionsView(_OpenAIView):
    def post(self, request: Request):  # type: ignore[no-untyped-def]
        body, stream, include_usage = parse_chat_request(request.data)
        if not stream:
            return with_idempotency(request, lambda ref: self._complete(request, body, ref))
        opened = self._open(request, body, ref=stream_ref(request))
        return sse_response(_openai_stream(opened, include_usage=include_usage))

    @staticmethod
    def _open(request: Request, body: dict, *, ref: str | None) -> Opened:
        return services.inference_open(
            client=request.user.client,
            desired_model=body["model"],
            question_text=question_of(body),
            max_tokens=body["max_tokens"],
            body=body,
            channel=InferenceChannel.DIRECT,
            ref=ref,
        )

    def _complete(self, request: Request, body: dict, ref: str) -> Response:
        opened = self._open(request, body, ref=ref)
        delivery = Delivery()
        payload = async_to_sync(relay.relay_complete)(candidates=opened.candidates, body=opened.body, delivery=delivery)
        services.inference_finish(
            req=opened.request, attempt=opened.request.attempts, delivery=delivery, prompt=opened.prompt
        )
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
        return Response({"object": "list", "data": [_model_object(m["name"], created[m["name"]]) for m in available]})


@extend_schema(exclude=True)
class ModelDetailView(_OpenAIView):
    """`GET /v1/models/{id}`: a model the list shows (a live node serves it); any other id is 404 model_not_found.
    Ids hold slashes (`meta-llama/Llama-3.1-8B-Instruct`): the URL takes the rest of the path."""

    def get(self, request: Request, model_id: str) -> Response:
        model = model_get_available(name=model_id)
        if model is None:
            raise ModelNotFound(f"The model `{model_id}` does not exist or no node serves it now.", attr="model")
        return Response(_model_object(model.name, model.created_at))
