"""core/http_protocol.py: what one step of the event loop writes on a connection goes out in one write. Driven
through a real socket pair: the far end counts the bytes, the near end's transport counts its writes."""

import asyncio
import socket

from core.http_protocol import _JoinedWrites


class _Sink(asyncio.Protocol):
    pass


async def _pair() -> tuple[asyncio.Transport, list[bytes], socket.socket]:
    """A real transport over one end of a socket pair, its writes recorded, and the other end."""
    near, far = socket.socketpair()
    transport, _ = await asyncio.get_running_loop().connect_accepted_socket(_Sink, near)
    writes: list[bytes] = []
    write = transport.write

    def recording(data: bytes) -> None:
        writes.append(bytes(data))
        write(data)

    transport.write = recording  # type: ignore[assignment]  # recording the real transport's writes
    return transport, writes, far


def _read_all(far: socket.socket, size: int) -> bytes:
    far.settimeout(2)
    data = b""
    while len(data) < size:
        data += far.recv(65536)
    return data


def test_writes_of_one_step_go_out_as_one_and_later_steps_on_their_own() -> None:
    async def run() -> tuple[list[bytes], bytes]:
        transport, writes, far = await _pair()
        joined = _JoinedWrites(transport, asyncio.get_running_loop())
        joined.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n")
        joined.write(b"{}")
        await asyncio.sleep(0)  # the step ends: both go together
        joined.write(b"next")
        await asyncio.sleep(0)
        received = _read_all(far, 44)
        joined.close()
        far.close()
        return writes, received

    writes, received = asyncio.run(run())
    assert writes == [b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}", b"next"]
    assert received == b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}next"


def test_closing_sends_what_is_kept_first_and_aborting_drops_it() -> None:
    async def run() -> tuple[bytes, bytes]:
        transport, _writes, far = await _pair()
        joined = _JoinedWrites(transport, asyncio.get_running_loop())
        joined.write(b"last words")
        joined.close()
        await asyncio.sleep(0.01)
        closed = _read_all(far, 10)
        far.close()

        transport2, writes2, far2 = await _pair()
        aborted = _JoinedWrites(transport2, asyncio.get_running_loop())
        aborted.write(b"never sent")
        aborted.abort()
        await asyncio.sleep(0.01)
        far2.settimeout(2)
        rest = far2.recv(100)  # the connection ends with nothing sent
        far2.close()
        return closed, rest + b"".join(writes2)

    closed, rest = asyncio.run(run())
    assert closed == b"last words"
    assert rest == b""
