"""A door for `POST /v1/chat/completions` without an API key (docs/API.md §15, seed 000's x402).

An app that can be paid per request (payments/x402.py) registers here from its AppConfig.ready(), so inference
never imports it. The Django view lets a request without `Authorization` through only while a registered door is
enabled, and hands it the checked request with two steps of its own: `quote` (the most the request may cost,
exactly what `inference_open` will hold) and `serve` (answer it, billed to a given client, as for a key).
The lean ASGI door (inference/v1/asgi.py) hands every request without a bearer key to the Django view.
"""

from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal

from django.http.response import HttpResponseBase
from rest_framework.request import Request

from clients.models import Client
from inference.v1.pipeline import needs_window, sized
from inference.v1.protocol import ChatRequest
from inference.v1.routes import live_route, live_window


@dataclass(frozen=True)
class KeylessCall:
    request: Request
    body: dict  # the checked body (v1/protocol.parse_chat_request)
    stream: bool
    quote: Callable[[], Decimal]
    serve: Callable[[Client], HttpResponseBase]


@dataclass(frozen=True)
class Door:
    enabled: Callable[[], bool]
    serve: Callable[[KeylessCall], HttpResponseBase]


_doors: list[Door] = []


def register(*, enabled: Callable[[], bool], serve: Callable[[KeylessCall], HttpResponseBase]) -> None:
    door = Door(enabled=enabled, serve=serve)
    if door not in _doors:
        _doors.append(door)


def door() -> Door | None:
    """The first enabled door, or None: then a request without a key is a 401 as ever."""
    return next((d for d in _doors if d.enabled()), None)


def quote(request: ChatRequest) -> Decimal:
    """What the request will hold: its most possible cost on the dearest routable node, sized as the pipeline sizes
    it (v1/pipeline.sized: image and audio parts counted, an omitted max_tokens by the context window). Raises
    ModelNotFound (404), NoCapacity (503) or NoNodeWithinPrice (400) as the route step does."""
    candidates = live_route(request, client_id=None)
    window = live_window(request, candidates) if needs_window(request) else None
    return sized(request, candidates, window)[2]
