"""HTTP calls to a node's OpenAI-compatible server, over inference/node_http.py (a small HTTP/1.1 client on
httptools with pooled keep-alive connections, doing only what node calls need).

Every call re-resolves the node's host, checks every address with the SSRF guard and connects to the checked
address (so DNS that changes after registration, "rebinding", cannot point us at an internal service), sending the
original host name as `Host` and as the TLS server name (an IP-literal node's certificate must name its address).
Redirects are not followed (a 3xx is an error status) and no proxy is used. The node's backend key is decrypted only
into the `Authorization` header of the request and never appears in errors or logs. Requests ask for no encoding;
a gzip or deflate answer is decoded all the same.

Timeouts (docs/API.md §9): connecting is bounded by INFERENCE_CONNECT_TIMEOUT_S; everything up to the node's first
event (its response headers and first chunk) by INFERENCE_FIRST_TOKEN_TIMEOUT_S, counted from the start of the
call, so a node that accepts a request and sends nothing is given up while another node may still be tried; after
that each gap between two reads by INFERENCE_STREAM_IDLE_TIMEOUT_S (one timer per connection, nothing per chunk),
so a slow but steady stream is never cut; the whole answer by INFERENCE_MAX_DURATION_S and its size by
INFERENCE_MAX_RESPONSE_BYTES. Answers are always streamed from the node, also for non-stream requests (the relay
assembles those, inference/relay.py), so "first token" means the same on every path.

Errors are `NodeCallError`s. `retryable` says whether another node may be tried; whether that is allowed also
depends on whether anything was relayed yet, which only the caller knows (inference/relay.py).
"""

import asyncio
import contextlib
import functools
import ipaddress
import json
import weakref
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from urllib.parse import urlsplit

from django.conf import settings

from core import json_codec, request_id
from core.crypto import decrypt
from core.loop_resources import close_with_loop
from inference import node_http
from inference.node_http import NodeHttpClient
from inference.routing import Candidate
from llm_models import endpoint_guard

# Statuses that mean the request itself is bad (the client's fault): not retried, the node not cooled down.
_CLIENT_FAULT = {400, 413, 422}
CHAT_PATH = "/chat/completions"
# A node's answer to a path its server does not have (API.md §9 "Nodes that serve an endpoint"): on any path but
# chat's, the next node is tried and this one is not cooled down.
_NOT_SERVED = {404, 405}
_ERROR_SNIPPET_BYTES = 2048


class NodeCallError(Exception):
    def __init__(
        self, code: str, detail: str, *, retryable: bool = True, node_fault: bool = True, status: int | None = None
    ) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail
        self.retryable = retryable
        self.node_fault = node_fault
        self.status = status


@dataclass(frozen=True)
class Pinned:
    origin: node_http.Origin  # the checked address to connect to, and the TLS server name
    target: str  # the request's path
    host_header: str
    sni_hostname: str | None

    @property
    def url(self) -> str:
        host = f"[{self.origin.address}]" if ":" in self.origin.address else self.origin.address
        return f"{self.origin.scheme}://{host}:{self.origin.port}{self.target}"


async def pin(base_url: str, path: str, *, deadline: float | None = None) -> Pinned:
    """`path` under `base_url` with its host replaced by a checked IP address; resolving a host name must end by
    `deadline` (the loop's clock), when given. A node registered by its address needs no look-up: its pin is
    worked out once per process (and setting) and kept; a host name is resolved and checked on every call."""
    allow_private = settings.ALLOW_PRIVATE_NODE_ENDPOINTS
    pinned = _pin_address(base_url, path, allow_private)
    if pinned is not None:
        return pinned
    scheme, host, port, explicit_port, prefix = _split(base_url)
    try:
        # Looked up on the module, so tests can stand in for DNS (endpoint_guard.resolve_host).
        async with asyncio.timeout_at(deadline):
            addresses = await asyncio.to_thread(endpoint_guard.resolve_host, host, port)
    except TimeoutError as exc:
        raise NodeCallError("node_timeout", "The node's host did not resolve in time.") from exc
    except (OSError, UnicodeError) as exc:
        raise NodeCallError("node_unresolvable", "The node's host does not resolve.") from exc
    _check(addresses, allow_private)
    origin = node_http.Origin(scheme, str(addresses[0]), port, host)
    return Pinned(
        origin=origin, target=f"{prefix}{path}", host_header=_host_header(host, explicit_port), sni_hostname=host
    )


@functools.lru_cache(maxsize=4096)
def _split(base_url: str) -> tuple[str, str, int, int | None, str]:
    """(scheme, host, port, the port as written or None, the path prefix) of a node's base URL."""
    parts = urlsplit(base_url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return parts.scheme, (parts.hostname or "").rstrip("."), port, parts.port, parts.path.rstrip("/")


@functools.lru_cache(maxsize=4096)
def _pin_address(base_url: str, path: str, allow_private: bool) -> Pinned | None:
    """The pin of a base URL whose host is an IP address (None: a host name); raises NodeCallError for an address
    nodes may not use (not kept)."""
    scheme, host, port, explicit_port, prefix = _split(base_url)
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return None
    _check([address], allow_private)
    origin = node_http.Origin(scheme, str(address), port, None)
    return Pinned(
        origin=origin, target=f"{prefix}{path}", host_header=_host_header(host, explicit_port), sni_hostname=None
    )


def _host_header(host: str, explicit_port: int | None) -> str:
    """The `Host` header for a base URL's host: an IPv6 address in brackets (RFC 9110), the port where written."""
    name = f"[{host}]" if ":" in host else host
    return name if explicit_port is None else f"{name}:{explicit_port}"


def _check(addresses: list[endpoint_guard.IPAddress], allow_private: bool) -> None:
    if not addresses:
        raise NodeCallError("node_unresolvable", "The node's host does not resolve.")
    for ip in addresses:
        if endpoint_guard.address_problem(ip, allow_private=allow_private):
            raise NodeCallError("node_unsafe_endpoint", "The node's host resolves to an address nodes may not use.")


def new_http_client() -> NodeHttpClient:
    """A pooled HTTP client for node calls (keep-alive; no redirects, no proxies: inference/node_http.py)."""
    return NodeHttpClient()


_shared: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, NodeHttpClient]" = weakref.WeakKeyDictionary()


def shared_http_client() -> NodeHttpClient:
    """One pooled client per event loop (the web process has one loop; a worker makes a client per task), closed
    when its loop shuts down (core/loop_resources.py), so short-lived loops leak nothing."""
    loop = asyncio.get_running_loop()
    client = _shared.get(loop)
    if client is not None and not client.closed:
        return client
    client = _shared[loop] = new_http_client()
    close_with_loop(client.close)
    return client


async def _send(
    http: NodeHttpClient,
    candidate: Candidate,
    body: dict,
    *,
    accept: str,
    deadline: float,
    path: str = CHAT_PATH,
) -> node_http.Response:
    """Send the request; the response once its headers arrived (before `deadline`, the loop's clock) with 200.
    Its reads stay bounded by `deadline` until the caller moves it."""
    pinned = await pin(candidate.base_url, path, deadline=deadline)
    headers = {"Host": pinned.host_header, "Accept": accept, "Content-Type": "application/json"}
    rid = request_id.current.get()
    if rid is not None:
        headers["X-Request-Id"] = rid  # the node's logs can be matched with ours
    key = decrypt(candidate.api_key_encrypted)
    if key:
        headers["Authorization"] = f"Bearer {key}"
    try:
        response = await http.post(
            pinned.origin,
            pinned.target,
            headers,
            json_codec.dumps(body),
            deadline=deadline,
            limits=node_http.Limits(
                settings.INFERENCE_CONNECT_TIMEOUT_S,
                settings.INFERENCE_STREAM_IDLE_TIMEOUT_S,
                settings.INFERENCE_MAX_RESPONSE_BYTES,
            ),
        )
    except TimeoutError as exc:
        raise NodeCallError("node_timeout", "The node did not answer in time.") from exc
    except node_http.BadResponse as exc:
        raise NodeCallError("node_bad_response", "The node's answer is not valid HTTP.") from exc
    except (node_http.ConnectError, OSError, ValueError) as exc:  # ValueError: a header that cannot be sent
        raise NodeCallError("node_unreachable", "The node could not be reached.") from exc
    if response.status != 200:
        snippet = b""
        try:
            snippet = await response.read()
        except (node_http.BrokenResponse, node_http.BadResponse, node_http.TooLarge, TimeoutError):
            pass
        finally:
            response.release()
        if response.status in _NOT_SERVED and path != CHAT_PATH:
            raise NodeCallError(
                "endpoint_not_served", f"The node does not serve {path}.", node_fault=False, status=response.status
            )
        raise _status_error(response.status, snippet[:_ERROR_SNIPPET_BYTES])
    return response


def _status_error(status: int, snippet: bytes) -> NodeCallError:
    if status in _CLIENT_FAULT:
        message = ""
        with contextlib.suppress(ValueError, KeyError, TypeError):
            message = str(json.loads(snippet)["error"]["message"])[:500]
        detail = "The model server refused the request" + (f": {message}" if message else ".")
        return NodeCallError("upstream_rejected", detail, retryable=False, node_fault=False, status=400)
    return NodeCallError("node_bad_status", f"The node answered HTTP {status}.", status=status)


@asynccontextmanager
async def stream(
    http: NodeHttpClient, candidate: Candidate, body: dict, *, path: str = CHAT_PATH
) -> AsyncIterator[AsyncIterator[list[tuple[dict, bytes]]]]:
    """Open a streamed chat completion; yields an iterator of the node's chunks, ending at `[DONE]`, in batches (the
    chunks of one read, never none): each chunk the parsed object and its JSON as sent (one line, checked to parse
    as an object, so it may be relayed as it is). A batch is what arrived together: a caller assembling a whole
    answer handles it in one loop, without a step of the event loop per chunk.

    Raises NodeCallError when opening fails (nothing received yet) or from the iterator when the stream breaks,
    `node_timeout` when the first event has not arrived INFERENCE_FIRST_TOKEN_TIMEOUT_S after the call began.
    Leaving the `async with` before `[DONE]` closes the upstream connection, which stops the node's generation.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + settings.INFERENCE_FIRST_TOKEN_TIMEOUT_S
    upstream = {**body, "stream": True}
    if candidate.model is not None:  # a fallback model of the request's `models`
        upstream["model"] = candidate.model
    response = await _send(http, candidate, upstream, accept="text/event-stream", deadline=deadline, path=path)
    try:
        yield _events(response, end_by=loop.time() + settings.INFERENCE_MAX_DURATION_S)
    finally:
        response.close()  # a no-op after `[DONE]` (released); else the node's generation is stopped


async def _events(response: node_http.Response, *, end_by: float) -> AsyncIterator[list[tuple[dict, bytes]]]:
    """The stream's events, a batch per read. Until the first, reads are bounded by the first-token deadline (set by
    `_send`); then by `end_by`, and each gap between two reads by INFERENCE_STREAM_IDLE_TIMEOUT_S (node_http's
    timer). A malformed event fails the stream after the good ones before it were yielded."""
    buffer = b""
    waiting = True
    try:
        while data := await response.read():
            buffer += data
            *lines, buffer = buffer.split(b"\n")
            batch: list[tuple[dict, bytes]] = []
            for line in lines:
                line = line.rstrip(b"\r")
                if not line.startswith(b"data:"):
                    continue  # comments, event names, blank separators
                payload = line[5:].strip()
                if payload == b"[DONE]":
                    response.release()  # the connection goes back to the pool once the body's end arrives
                    if batch:
                        yield batch
                    return
                try:
                    chunk = json_codec.loads(payload)
                except ValueError as exc:
                    if batch:
                        yield batch
                    raise NodeCallError("node_bad_response", "The node sent a malformed event.") from exc
                if isinstance(chunk, dict):
                    if waiting:
                        waiting = False
                        response.set_deadline(end_by)
                    batch.append((chunk, payload))
            if batch:
                yield batch
    except _READ_ERRORS as exc:
        detail = "The node sent no first token in time." if waiting else "The node stopped streaming, or took too long."
        raise _read_error(exc, timeout_detail=detail) from exc
    raise NodeCallError("node_broken_stream", "The node's stream ended without [DONE].")


_READ_ERRORS = (TimeoutError, node_http.BrokenResponse, node_http.BadResponse, node_http.TooLarge)


def _read_error(exc: BaseException, *, timeout_detail: str) -> NodeCallError:
    if isinstance(exc, TimeoutError):
        return NodeCallError("node_timeout", timeout_detail)
    if isinstance(exc, node_http.TooLarge):
        return NodeCallError("node_response_too_large", "The node's answer is too large.")
    if isinstance(exc, node_http.BadResponse):
        return NodeCallError("node_bad_response", "The node sent a malformed answer.")
    return NodeCallError("node_broken_stream", "The node's answer was cut off.")


async def post_json(http: NodeHttpClient, candidate: Candidate, body: dict, *, path: str) -> dict:
    """One request answered by one JSON object (embeddings: nothing to stream): its status and headers within
    INFERENCE_FIRST_TOKEN_TIMEOUT_S, as a stream's first event, the whole answer within INFERENCE_MAX_DURATION_S and
    INFERENCE_MAX_RESPONSE_BYTES."""
    began = asyncio.get_running_loop().time()
    deadline = began + settings.INFERENCE_FIRST_TOKEN_TIMEOUT_S
    response = await _send(http, candidate, body, accept="application/json", deadline=deadline, path=path)
    response.set_deadline(began + settings.INFERENCE_MAX_DURATION_S)
    parts = []
    try:
        while data := await response.read():
            parts.append(data)
    except _READ_ERRORS as exc:
        raise _read_error(exc, timeout_detail="The node did not answer in time.") from exc
    finally:
        response.close()  # back to the pool when read to the end
    try:
        payload = json_codec.loads(b"".join(parts))
    except ValueError as exc:
        raise NodeCallError("node_bad_response", "The node sent a malformed answer.") from exc
    if not isinstance(payload, dict):
        raise NodeCallError("node_bad_response", "The node sent a malformed answer.")
    return payload
