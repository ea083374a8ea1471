"""The service's own Prometheus series, counted where things happen (docs/API.md §16).

Counters and histograms live in this process; with PROMETHEUS_MULTIPROC_DIR set (as `make run` does) every web and
worker process writes them to files there and /metrics adds them up (prometheus-client's multiprocess mode), so a
scrape of any one process is correct for all. Figures that are the database's (nodes by status, revenue) are read
at scrape time instead (console/metrics.py). Incrementing is cheap (a lock and a write to a memory-mapped file):
the hot paths call these and nothing else.
"""

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.conf import settings
from django.http import HttpRequest, HttpResponse
from prometheus_client import Counter, Histogram

HTTP_REQUESTS = Counter(
    "gpumarket_http_requests", "HTTP requests answered, by URL pattern.", ["route", "method", "status"]
)
HTTP_DURATION = Histogram(
    "gpumarket_http_request_duration_seconds",
    "Time to answer an HTTP request (to the end of the response, or of its first part for a stream).",
    ["route", "method"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
INFERENCE_REQUESTS = Counter(
    "gpumarket_inference_requests", "Inference requests finished, by model and outcome.", ["model", "outcome"]
)
INFERENCE_TOKENS = Counter(
    "gpumarket_inference_tokens", "Tokens of finished inference requests, by model and kind.", ["model", "kind"]
)
HEARTBEATS = Counter("gpumarket_heartbeats", "Node heartbeats accepted.")

access_log = logging.getLogger("gpumarket.access")
# Methods outside this set are counted as `other`, so a caller cannot mint label values.
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


_children: dict[tuple[int, tuple[str, ...]], Any] = {}


def _child(metric: Counter | Histogram, *labels: str) -> Any:
    """`metric.labels(*labels)`, remembered: prometheus-client looks a child up under a lock on every call, and the
    hot paths count several per request. Label values are bounded (routes, methods, statuses, served models)."""
    key = (id(metric), labels)
    child = _children.get(key)
    if child is None:
        child = _children[key] = metric.labels(*labels)
    return child


def observe_http(*, route: str, method: str, status: int, started: float) -> None:
    """One answered HTTP request; also its access-log line when LOG_REQUESTS is on."""
    elapsed = time.perf_counter() - started
    method = method if method in _METHODS else "other"
    _child(HTTP_REQUESTS, route, method, str(status)).inc()
    _child(HTTP_DURATION, route, method).observe(elapsed)
    if settings.LOG_REQUESTS:
        access_log.info(
            "%s %s %s %.1f ms",
            method,
            route,
            status,
            elapsed * 1000,
            extra={"route": route, "method": method, "status": status, "duration_ms": round(elapsed * 1000, 1)},
        )


def observe_inference(*, model: str, outcome: str, prompt_tokens: int, completion_tokens: int) -> None:
    """One finished inference request, whichever door served it (counted where its outcome is recorded)."""
    _child(INFERENCE_REQUESTS, model, outcome).inc()
    if prompt_tokens:
        _child(INFERENCE_TOKENS, model, "prompt").inc(prompt_tokens)
    if completion_tokens:
        _child(INFERENCE_TOKENS, model, "completion").inc(completion_tokens)


def route_of(request: HttpRequest) -> str:
    """The URL pattern that served the request (`/api/v1/gpu/list/<int:pk>/`), never the raw path: bounded labels.
    A path no pattern matched is `unmatched`."""
    match = getattr(request, "resolver_match", None)
    if match is None or match.route is None:
        return "unmatched"
    return "/" + match.route.replace("^", "").replace("$", "")


_DEFERRED = "_metrics_observed_later"  # a request attribute: the route of an answer observed in front of Django


def defer_http_observation(request: HttpRequest) -> str:
    """This request's answer is sent later by an ASGI layer in front of Django (inference/seed_asgi.py), which
    observes it then with the status it sends (observe_http): the middleware does not. Returns its route label."""
    route = route_of(request)
    setattr(request, _DEFERRED, route)
    return route


class HttpMetricsMiddleware:
    """Count and time every request Django answers (the lean paths count their own: core/asgi.py)."""

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable) -> None:
        self.get_response = get_response
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest) -> HttpResponse | Awaitable[HttpResponse]:
        if self.is_async:
            return self.__acall__(request)
        started = time.perf_counter()
        response = self.get_response(request)
        self._observe(request, response, started)
        return response

    async def __acall__(self, request: HttpRequest) -> HttpResponse:
        started = time.perf_counter()
        response = await self.get_response(request)
        self._observe(request, response, started)
        return response

    @staticmethod
    def _observe(request: HttpRequest, response: Any, started: float) -> None:
        if hasattr(request, _DEFERRED):
            return
        method = request.method or "GET"
        observe_http(route=route_of(request), method=method, status=response.status_code, started=started)
