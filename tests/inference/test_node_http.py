"""The HTTP client for node calls (inference/node_http.py) against raw asyncio servers that the test starts, so that
what goes over the wire (connections, framing, closes) is exactly what the test says: keep-alive and its one retry,
a stream left early closing its connection, every body framing, decoding, and the errors of a broken node."""

import asyncio
import datetime
import gzip
import ipaddress
import json
import re
import socket
import ssl
import struct
import time
from collections.abc import Awaitable, Callable
from decimal import Decimal

import pytest

from core.crypto import encrypt
from inference import node_client, node_http
from inference.node_client import NodeCallError
from inference.routing import Candidate
from llm_models import endpoint_guard

pytestmark = pytest.mark.usefixtures("private_endpoints")

BODY = {"model": "stub/model", "messages": [{"role": "user", "content": "hi"}]}


def _event(content: str | None, *, role: bool = False) -> bytes:
    delta = {"role": "assistant"} if role else {"content": content}
    return b"data: " + json.dumps({"object": "chat.completion.chunk", "choices": [{"delta": delta}]}).encode() + b"\n\n"


SSE = _event(None, role=True) + _event("hello ") + _event("world") + b"data: [DONE]\n\n"


def _chunked(*parts: bytes) -> bytes:
    return b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in parts) + b"0\r\n\r\n"


def _head(status: int = 200, **headers: str) -> bytes:
    lines = [f"HTTP/1.1 {status} OK", "Content-Type: text/event-stream", *(f"{k}: {v}" for k, v in headers.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def _candidate(base_url: str) -> Candidate:
    return Candidate(
        node_id=1, owner_id=1, base_url=base_url, api_key_encrypted=encrypt("k"),
        input_price_per_million=Decimal(1), output_price_per_million=Decimal(1),
    )  # fmt: skip


Reply = Callable[[asyncio.StreamReader, asyncio.StreamWriter, int], Awaitable[bool]]


class RawNode:
    """An HTTP server in the test's event loop: `reply(reader, writer, n)` answers the n-th request (from 1) and
    says whether to keep the connection; counts connections, requests and the closes it saw from the client."""

    def __init__(self, reply: Reply, tls: ssl.SSLContext | None = None) -> None:
        self.reply = reply
        self.tls = tls
        self.connections = 0
        self.requests: list[bytes] = []
        self.client_closed = asyncio.Event()
        self._handlers: set[asyncio.Task] = set()

    async def __aenter__(self) -> "RawNode":
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=self.tls)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.server.close()
        for task in self._handlers:
            task.cancel()
        await asyncio.gather(*self._handlers)

    def candidate(self) -> Candidate:
        return _candidate(f"http://127.0.0.1:{self.port}/v1")

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self._handlers.add(asyncio.current_task())  # type: ignore[arg-type]
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except asyncio.IncompleteReadError:
                    return
                length = re.search(rb"(?i)content-length: *(\d+)", head)
                await reader.readexactly(int(length[1]) if length else 0)
                self.requests.append(head)
                if not await self.reply(reader, writer, len(self.requests)):
                    return
        except ConnectionError:
            self.client_closed.set()
        except asyncio.CancelledError:
            pass  # the test is over; ending quietly spares asyncio's log of a cancelled handler
        finally:
            if reader.at_eof():
                self.client_closed.set()
            writer.close()


async def _texts(node: RawNode, calls: int = 1) -> list[str]:
    """The answer text of `calls` streams to `node`, one after another on one client."""
    texts = []
    async with node_client.new_http_client() as http:
        for _ in range(calls):
            async with node_client.stream(http, node.candidate(), BODY) as events:
                chunks = [chunk async for batch in events for chunk, _payload in batch]
            await asyncio.sleep(0.05)  # the body's end arrives a moment after [DONE]
            texts.append("".join(c["choices"][0]["delta"].get("content") or "" for c in chunks))
    return texts


def _run(reply: Reply, calls: int = 1) -> tuple[list[str], RawNode]:
    async def scenario() -> tuple[list[str], RawNode]:
        async with RawNode(reply) as node:
            return await _texts(node, calls), node

    return asyncio.run(scenario())


def _error_of(reply: Reply) -> NodeCallError:
    with pytest.raises(NodeCallError) as exc:
        _run(reply)
    return exc.value


async def _chunked_sse(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> bool:
    """As a vLLM server streams: a chunk per event, the body's end a moment after `[DONE]`."""
    writer.write(_head(**{"Transfer-Encoding": "chunked"}) + _chunked(SSE)[:-5])
    await writer.drain()
    await asyncio.sleep(0.01)
    writer.write(b"0\r\n\r\n")
    return True


def test_two_calls_to_one_node_reuse_one_connection():
    texts, node = _run(_chunked_sse, calls=3)

    assert texts == ["hello world"] * 3
    assert (node.connections, len(node.requests)) == (1, 3)


def test_a_pooled_connection_the_node_closed_while_idle_is_retried_once_on_a_fresh_one():
    async def reply(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> bool:
        if n == 2:
            return False  # the second request reaches a connection the node is closing: no answer, closed
        return await _chunked_sse(reader, writer, n)

    texts, node = _run(reply, calls=2)

    assert texts == ["hello world"] * 2
    assert (node.connections, len(node.requests)) == (2, 3)


def test_a_fresh_connection_closed_before_any_answer_is_unreachable_and_not_retried():
    async def reply(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> bool:
        return False

    async def scenario() -> tuple[NodeCallError, RawNode]:
        async with RawNode(reply) as node:
            with pytest.raises(NodeCallError) as exc:
                await _texts(node)
            return exc.value, node

    error, node = asyncio.run(scenario())

    assert error.code == "node_unreachable"
    assert len(node.requests) == 1


def test_a_stream_left_early_closes_its_connection():
    async def reply(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> bool:
        writer.write(_head(**{"Transfer-Encoding": "chunked"}) + _chunked(_event(None, role=True))[:-5])
        await reader.read()  # the rest is never sent: the client must hang up
        return False

    async def scenario() -> RawNode:
        async with RawNode(reply) as node, node_client.new_http_client() as http:
            async with node_client.stream(http, node.candidate(), BODY) as events:
                async for _batch in events:
                    break  # the client went away after the first chunk
            await asyncio.wait_for(node.client_closed.wait(), 2)
            return node

    assert asyncio.run(scenario()).client_closed.is_set()


@pytest.mark.parametrize(
    "response",
    [
        _head(**{"Transfer-Encoding": "chunked"}) + _chunked(SSE[:10], SSE[10:100], SSE[100:]),
        _head(**{"Content-Length": str(len(SSE))}) + SSE,
        _head(Connection="close") + SSE,  # no length: the body ends with the connection
        _head(**{"Content-Encoding": "gzip", "Content-Length": str(len(gzip.compress(SSE)))}) + gzip.compress(SSE),
    ],
    ids=["chunked", "content-length", "until-close", "gzip"],
)
def test_every_body_framing_and_a_gzip_answer_are_read(response):
    async def reply(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> bool:
        for i in range(0, len(response), 50):  # in pieces, as a network may deliver them
            writer.write(response[i : i + 50])
            await writer.drain()
        return b"close" not in response

    assert _run(reply)[0] == ["hello world"]


def test_an_unknown_content_encoding_is_a_bad_response():
    async def reply(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> bool:
        writer.write(_head(**{"Content-Encoding": "br", "Content-Length": str(len(SSE))}) + SSE)
        return True

    assert _error_of(reply).code == "node_bad_response"


def test_a_node_that_closes_mid_body_breaks_the_stream():
    async def reply(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> bool:
        writer.write(_head(**{"Content-Length": "10000"}) + _event(None, role=True) + _event("hel"))
        await writer.drain()
        return False

    assert _error_of(reply).code == "node_broken_stream"


def test_a_connection_reset_mid_stream_breaks_the_stream():
    async def reply(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> bool:
        writer.write(_head(**{"Transfer-Encoding": "chunked"}) + _chunked(_event(None, role=True))[:-5])
        await writer.drain()
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close with a reset
        return False

    assert _error_of(reply).code == "node_broken_stream"


def test_a_node_silent_after_its_headers_for_the_idle_timeout_times_out(settings):
    settings.INFERENCE_FIRST_TOKEN_TIMEOUT_S = 10
    settings.INFERENCE_STREAM_IDLE_TIMEOUT_S = 0.3

    async def reply(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> bool:
        writer.write(_head(**{"Transfer-Encoding": "chunked"}))
        await reader.read()
        return False

    began = time.monotonic()
    error = _error_of(reply)

    assert (error.code, error.retryable) == ("node_timeout", True)
    assert 0.25 < time.monotonic() - began < 3


def test_an_answer_larger_than_the_limit_is_too_large(settings):
    settings.INFERENCE_MAX_RESPONSE_BYTES = 1000
    big = _event(None, role=True) + _event("x" * 2000) + b"data: [DONE]\n\n"

    async def reply(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> bool:
        writer.write(_head(**{"Content-Length": str(len(big))}) + big)
        return True

    assert _error_of(reply).code == "node_response_too_large"


def test_a_small_gzip_answer_that_decodes_past_the_limit_is_too_large(settings):
    settings.INFERENCE_MAX_RESPONSE_BYTES = 100_000
    bomb = gzip.compress(_event(None, role=True) + _event("x" * 10_000_000))
    assert len(bomb) < 100_000

    async def reply(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> bool:
        writer.write(_head(**{"Content-Encoding": "gzip", "Content-Length": str(len(bomb))}) + bomb)
        return True

    assert _error_of(reply).code == "node_response_too_large"


def test_a_json_answer_is_read_and_its_connection_reused():
    answer = json.dumps({"object": "list", "data": []}).encode()

    async def reply(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> bool:
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(answer), answer))
        return True

    async def scenario() -> tuple[list[dict], RawNode]:
        async with RawNode(reply) as node, node_client.new_http_client() as http:
            answers = [await node_client.post_json(http, node.candidate(), {}, path="/embeddings") for _ in "ab"]
            return answers, node

    answers, node = asyncio.run(scenario())

    assert answers == [{"object": "list", "data": []}] * 2
    assert node.connections == 1
    assert b"accept-encoding" not in node.requests[0].lower()


def _self_signed(tmp_path, name: str) -> ssl.SSLContext:  # type: ignore[no-untyped-def]
    """A server context with a certificate for `name` that no trust store holds."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .sign(key, hashes.SHA256())
    )  # fmt: skip
    (tmp_path / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "key.pem").write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tmp_path / "cert.pem", tmp_path / "key.pem")
    return context


def test_an_https_node_gets_its_host_name_as_tls_server_name_and_its_certificate_is_verified(tmp_path, monkeypatch):
    monkeypatch.setattr(endpoint_guard, "resolve_host", lambda host, port: [ipaddress.ip_address("127.0.0.1")])
    context = _self_signed(tmp_path, "node.example.test")
    server_names: list[str | None] = []
    context.sni_callback = lambda _sock, name, _context: server_names.append(name)  # type: ignore[assignment,misc]

    async def scenario() -> NodeCallError:
        async with RawNode(_chunked_sse, context) as node:  # it would answer, over TLS
            candidate = _candidate(f"https://node.example.test:{node.port}/v1")
            with pytest.raises(NodeCallError) as exc:
                async with node_client.new_http_client() as http, node_client.stream(http, candidate, BODY):
                    pass
            return exc.value

    error = asyncio.run(scenario())

    assert server_names == ["node.example.test"]
    assert error.code == "node_unreachable"
    assert isinstance(error.__cause__, ssl.SSLCertVerificationError)  # no trusted authority signed it


def test_reading_pauses_while_a_large_body_waits_unread():
    body = b"x" * (4 << 20)

    async def reply(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> bool:
        writer.write(_head(**{"Content-Length": str(len(body))}) + body)
        await writer.drain()
        return True

    async def scenario() -> tuple[int, int]:
        async with RawNode(reply) as node, node_http.NodeHttpClient() as http:
            limits = node_http.Limits(connect_s=5, idle_s=5, max_bytes=len(body))
            deadline = asyncio.get_running_loop().time() + 10
            response = await http.post(
                node_http.Origin("http", "127.0.0.1", node.port, None), "/", {}, b"", deadline=deadline, limits=limits
            )
            await asyncio.sleep(0.5)  # the node sends all it can meanwhile
            first = len(await response.read())
            total = first
            while data := await response.read():
                total += len(data)
            response.release()
            return first, total

    first, total = asyncio.run(scenario())

    assert first < 1 << 20  # buffered up to ~256 KiB, then reading paused: the rest waited in the kernel
    assert total == len(body)


def test_endless_response_headers_are_a_bad_response():
    async def reply(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> bool:
        writer.write(b"HTTP/1.1 200 OK\r\n" + b"X-Padding: " + b"x" * 200_000 + b"\r\n")
        await writer.drain()
        await reader.read()
        return False

    assert _error_of(reply).code == "node_bad_response"
