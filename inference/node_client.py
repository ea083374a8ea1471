"""HTTP calls to a node's OpenAI-compatible server (aiohttp: the cheapest Python HTTP client per request).

Every call re-resolves the node's host, checks every address with the SSRF guard and connects to the checked
address (so DNS that changes after registration, "rebinding", cannot point us at an internal service), sending the
original host name as `Host` and as the TLS server name. Redirects are not followed. The node's backend key is
decrypted only into the `Authorization` header of the request and never appears in errors or logs.

Timeouts (docs/API.md §9): connecting is bounded by INFERENCE_CONNECT_TIMEOUT_S; everything up to the node's first
event (its response headers and first chunk) by INFERENCE_FIRST_TOKEN_TIMEOUT_S, counted from the start of the
call, so a node that accepts a request and sends nothing is given up while another node may still be tried; after
that each gap between two reads by INFERENCE_STREAM_IDLE_TIMEOUT_S (aiohttp's `sock_read`, which costs nothing per
chunk), so a slow but steady stream is never cut; the whole answer by INFERENCE_MAX_DURATION_S and its size by
INFERENCE_MAX_RESPONSE_BYTES. Answers are always streamed from the node, also for non-stream requests (the relay
assembles those, inference/relay.py), so "first token" means the same on every path.

Errors are `NodeCallError`s. `retryable` says whether another node may be tried; whether that is allowed also
depends on whether anything was relayed yet, which only the caller knows (inference/relay.py).
"""

import asyncio
import contextlib
import ipaddress
import json
import time
import weakref
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from aiohttp import ClientResponse
from django.conf import settings
from yarl import URL

from core import json_codec, request_id
from core.crypto import decrypt
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
    url: str
    host_header: str
    sni_hostname: str | None


async def pin(base_url: str, path: str) -> Pinned:
    """The URL of `path` under `base_url` with its host replaced by a checked IP address."""
    parts = urlsplit(base_url)
    host = (parts.hostname or "").rstrip(".")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        addresses: list[endpoint_guard.IPAddress] = [ipaddress.ip_address(host)]
        literal = True
    except ValueError:
        literal = False
        try:
            # Looked up on the module, so tests can stand in for DNS (endpoint_guard.resolve_host).
            addresses = await asyncio.to_thread(endpoint_guard.resolve_host, host, port)
        except (OSError, UnicodeError) as exc:
            raise NodeCallError("node_unresolvable", "The node's host does not resolve.") from exc
    if not addresses:
        raise NodeCallError("node_unresolvable", "The node's host does not resolve.")
    for ip in addresses:
        if endpoint_guard.address_problem(ip, allow_private=settings.ALLOW_PRIVATE_NODE_ENDPOINTS):
            raise NodeCallError("node_unsafe_endpoint", "The node's host resolves to an address nodes may not use.")
    ip = addresses[0]
    netloc = f"[{ip}]:{port}" if ip.version == 6 else f"{ip}:{port}"
    url = f"{parts.scheme}://{netloc}{parts.path.rstrip('/')}{path}"
    host_header = host if parts.port is None else f"{host}:{parts.port}"
    return Pinned(url=url, host_header=host_header, sni_hostname=None if literal else host)


def new_http_client() -> aiohttp.ClientSession:
    """A pooled HTTP client for node calls (keep-alive; no redirects, no proxies from the environment)."""
    timeout = aiohttp.ClientTimeout(
        total=None,
        connect=settings.INFERENCE_CONNECT_TIMEOUT_S,
        sock_connect=settings.INFERENCE_CONNECT_TIMEOUT_S,
        sock_read=settings.INFERENCE_STREAM_IDLE_TIMEOUT_S,
    )
    connector = aiohttp.TCPConnector(limit=0, ttl_dns_cache=None, use_dns_cache=False)
    return aiohttp.ClientSession(
        connector=connector, timeout=timeout, trust_env=False, auto_decompress=True, skip_auto_headers=("User-Agent",)
    )


_shared: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, tuple[aiohttp.ClientSession, AsyncIterator[None]]]" = (
    weakref.WeakKeyDictionary()
)


async def _closed_with_the_loop(session: aiohttp.ClientSession) -> AsyncGenerator[None, None]:
    try:
        yield
    finally:
        await session.close()


def shared_http_client() -> aiohttp.ClientSession:
    """One pooled client per event loop (the web process has one loop; a worker makes a client per task).

    The client is closed when its loop shuts down (`asyncio.run` and uvicorn finalize a loop's async generators
    then; a started generator registered with the loop does the closing), so short-lived loops leak nothing.
    """
    loop = asyncio.get_running_loop()
    entry = _shared.get(loop)
    if entry is not None and not entry[0].closed:
        return entry[0]
    session = new_http_client()
    closer = _closed_with_the_loop(session)
    step = closer.__anext__()  # registers the generator with this loop's shutdown hook
    with contextlib.suppress(StopIteration):
        step.send(None)  # run it to its `yield` (nothing there awaits), so closing it runs the `finally`
    _shared[loop] = (session, closer)
    return session


async def _send(
    http: aiohttp.ClientSession,
    candidate: Candidate,
    body: dict,
    *,
    accept: str,
    deadline: float,
    path: str = CHAT_PATH,
) -> ClientResponse:
    """Send the request; the response once its headers arrived (before `deadline`, the loop's clock) with 200."""
    try:
        async with asyncio.timeout_at(deadline):
            return await _post(http, candidate, body, accept=accept, path=path)
    except TimeoutError as exc:
        raise NodeCallError("node_timeout", "The node did not answer in time.") from exc


async def _post(
    http: aiohttp.ClientSession, candidate: Candidate, body: dict, *, accept: str, path: str = CHAT_PATH
) -> ClientResponse:
    pinned = await pin(candidate.base_url, path)
    headers = {"Host": pinned.host_header, "Accept": accept, "Content-Type": "application/json"}
    rid = request_id.current.get()
    if rid is not None:
        headers["X-Request-Id"] = rid  # the node's logs can be matched with ours
    key = decrypt(candidate.api_key_encrypted)
    if key:
        headers["Authorization"] = f"Bearer {key}"
    extra: dict[str, Any] = {"server_hostname": pinned.sni_hostname} if pinned.sni_hostname else {}
    try:
        response = await http.post(
            URL(pinned.url, encoded=True),
            data=json_codec.dumps(body),
            headers=headers,
            allow_redirects=False,
            **extra,
        )
    except TimeoutError as exc:
        raise NodeCallError("node_timeout", "The node did not answer in time.") from exc
    except (aiohttp.ClientError, OSError) as exc:
        raise NodeCallError("node_unreachable", "The node could not be reached.") from exc
    if response.status != 200:
        snippet = b""
        try:
            snippet = await response.content.read(_ERROR_SNIPPET_BYTES)
        except (aiohttp.ClientError, OSError, TimeoutError):
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
    http: aiohttp.ClientSession, candidate: Candidate, body: dict, *, path: str = CHAT_PATH
) -> AsyncIterator[AsyncIterator[tuple[dict, bytes]]]:
    """Open a streamed chat completion; yields an iterator of the node's chunks, ending at `[DONE]`: each the parsed
    object and its JSON as sent (one line, checked to parse as an object, so it may be relayed as it is).

    Raises NodeCallError when opening fails (nothing received yet) or from the iterator when the stream breaks,
    `node_timeout` when the first event has not arrived INFERENCE_FIRST_TOKEN_TIMEOUT_S after the call began.
    Leaving the `async with` closes the upstream connection, which stops the node's generation.
    """
    deadline = asyncio.get_running_loop().time() + settings.INFERENCE_FIRST_TOKEN_TIMEOUT_S
    upstream = {**body, "stream": True}
    if candidate.model is not None:  # a fallback model of the request's `models`
        upstream["model"] = candidate.model
    response = await _send(http, candidate, upstream, accept="text/event-stream", deadline=deadline, path=path)
    try:
        yield _events(response, first_by=deadline)
    finally:
        if response.content.at_eof():
            response.release()  # the whole stream was read: the connection goes back to the pool
        else:
            response.close()  # stopped early: drop the connection, which ends the node's generation


async def _events(response: ClientResponse, *, first_by: float) -> AsyncIterator[tuple[dict, bytes]]:
    limit = settings.INFERENCE_MAX_RESPONSE_BYTES
    deadline = time.monotonic() + settings.INFERENCE_MAX_DURATION_S
    total = 0
    buffer = b""
    waiting = True  # no event yet: reads are bounded by the first-token deadline, later only by sock_read
    try:
        while True:
            if waiting:
                try:
                    async with asyncio.timeout_at(first_by):
                        data = await response.content.readany()
                except TimeoutError as exc:
                    raise NodeCallError("node_timeout", "The node sent no first token in time.") from exc
            else:
                data = await response.content.readany()
            if not data:
                break
            total += len(data)
            if total > limit:
                raise NodeCallError("node_response_too_large", "The node's stream is too large.")
            if time.monotonic() > deadline:
                raise NodeCallError("node_timeout", "The node's stream took too long.")
            buffer += data
            *lines, buffer = buffer.split(b"\n")
            for line in lines:
                line = line.rstrip(b"\r")
                if not line.startswith(b"data:"):
                    continue  # comments, event names, blank separators
                payload = line[5:].strip()
                if payload == b"[DONE]":
                    return
                try:
                    chunk = json_codec.loads(payload)
                except ValueError as exc:
                    raise NodeCallError("node_bad_response", "The node sent a malformed event.") from exc
                if isinstance(chunk, dict):
                    waiting = False
                    yield chunk, payload
    except TimeoutError as exc:
        raise NodeCallError("node_timeout", "The node stopped streaming.") from exc
    except (aiohttp.ClientError, OSError) as exc:
        raise NodeCallError("node_broken_stream", "The node's stream was cut off.") from exc
    raise NodeCallError("node_broken_stream", "The node's stream ended without [DONE].")


async def post_json(http: aiohttp.ClientSession, candidate: Candidate, body: dict, *, path: str) -> dict:
    """One request answered by one JSON object (embeddings: nothing to stream): its status and headers within
    INFERENCE_FIRST_TOKEN_TIMEOUT_S, as a stream's first event, the whole answer within INFERENCE_MAX_DURATION_S and
    INFERENCE_MAX_RESPONSE_BYTES."""
    loop = asyncio.get_running_loop()
    began = loop.time()
    deadline = began + settings.INFERENCE_FIRST_TOKEN_TIMEOUT_S
    response = await _send(http, candidate, body, accept="application/json", deadline=deadline, path=path)
    limit = settings.INFERENCE_MAX_RESPONSE_BYTES
    raw = b""
    try:
        async with asyncio.timeout_at(began + settings.INFERENCE_MAX_DURATION_S):
            while data := await response.content.readany():
                raw += data
                if len(raw) > limit:
                    raise NodeCallError("node_response_too_large", "The node's answer is too large.")
    except TimeoutError as exc:
        raise NodeCallError("node_timeout", "The node did not answer in time.") from exc
    except (aiohttp.ClientError, OSError) as exc:
        raise NodeCallError("node_broken_stream", "The node's answer was cut off.") from exc
    finally:
        if len(raw) > limit:
            response.close()
        else:
            response.release()
    try:
        payload = json_codec.loads(raw)
    except ValueError as exc:
        raise NodeCallError("node_bad_response", "The node sent a malformed answer.") from exc
    if not isinstance(payload, dict):
        raise NodeCallError("node_bad_response", "The node sent a malformed answer.")
    return payload
