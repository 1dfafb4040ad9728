"""The own HTTP client (igrs/net/httpclient.py, under IgrsHttpClient) against canned servers on
127.0.0.1: answer framings (Content-Length, chunked, close), interim answers, connection
reuse, the body cap, the faults mapped to BUSY; and a property test of ResponseReader.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from igrs.constants import MAX_HTTP_BODY, ReturnCode
from igrs.errors import IGRSError, LimitExceeded, ProtocolError, RemoteError
from igrs.net.http import IgrsHttpClient
from igrs.wire import messages
from igrs.wire.http11 import BadResponse, ResponseReader
from igrs.wire.ids import DeviceId
from igrs.wire.messages import Status

ME, PEER = DeviceId.new(), DeviceId.new()
REQUEST = messages.GetDeviceDescriptionRequest()
Answerer = Callable[[bytes], bytes]  # request head+body -> raw answer


def answer_bytes(seq: int = 1, *, chunked: bool = False, close: bool = False, interim: bool = False,
                 extra: str = "") -> bytes:
    headers, body = messages.encode(messages.GetDeviceDescriptionResponse(Status(seq, ReturnCode.BUSY, "x")),
                                    source=PEER, target=ME, sequence_id=9)
    head = "HTTP/1.1 200 OK\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers) + extra
    pre = b"HTTP/1.1 100 Continue\r\n\r\n" if interim else b""
    if chunked:
        parts = [body[:10], body[10:]]
        data = b"".join(f"{len(p):x};ext=1\r\n".encode() + p + b"\r\n" for p in parts) + b"0\r\nX-T: 1\r\n\r\n"
        return pre + (head + "Transfer-Encoding: chunked\r\n\r\n").encode() + data
    if close:
        return pre + (head + "Connection: close\r\n\r\n").encode() + body
    return pre + (head + f"Content-Length: {len(body)}\r\n\r\n").encode() + body


class Canned:
    """A server answering each request with ``answer(request)``; counts connections."""

    def __init__(self, answer: Answerer, *, close_after: bool = False) -> None:
        self.answer, self.close_after = answer, close_after
        self.connections = 0
        self.requests: list[bytes] = []

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                              if line.lower().startswith(b"content-length:"))
                request = head + await reader.readexactly(length)
                self.requests.append(request)
                writer.write(self.answer(request))
                await writer.drain()
                if self.close_after:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        writer.close()


@pytest.fixture
async def canned() -> AsyncIterator[Callable[..., asyncio.Future[tuple[Canned, str]]]]:
    servers: list[asyncio.Server] = []

    async def start(answer: Answerer, **kw: bool) -> tuple[Canned, str]:
        server = Canned(answer, **kw)
        listener = await asyncio.start_server(server.handle, "127.0.0.1", 0)
        servers.append(listener)
        return server, f"http://127.0.0.1:{listener.sockets[0].getsockname()[1]}/IGRS"

    yield start  # type: ignore[misc]
    for listener in servers:
        listener.close()


async def send(url: str, client: IgrsHttpClient | None = None) -> messages.Frame | None:
    own = client or IgrsHttpClient(ME, timeout=2.0)
    try:
        return (await own.send(url, REQUEST, PEER))[1]
    finally:
        if client is None:
            await own.close()


@pytest.mark.parametrize("framing", [{}, {"chunked": True}, {"close": True}, {"interim": True}])
async def test_answer_framings(canned, framing: dict[str, bool]) -> None:  # type: ignore[no-untyped-def]
    server, url = await canned(lambda _req: answer_bytes(4, **framing), close_after=bool(framing.get("close")))
    client = IgrsHttpClient(ME, timeout=2.0)
    for _ in range(2):
        frame = await send(url, client)
        assert frame is not None and frame.message.status.acknowledge_id == 4  # type: ignore[union-attr]
    assert server.connections == (2 if framing.get("close") else 1)  # kept alive unless closed
    request = server.requests[0]
    assert request.startswith(b"M-POST /IGRS HTTP/1.1\r\nHost: 127.0.0.1:") and b"01-IGRSMessageType" in request
    await client.close()


async def test_an_idle_connection_is_closed_after_the_idle_time_not_before(  # type: ignore[no-untyped-def]
        canned) -> None:
    server, url = await canned(lambda _req: answer_bytes(4))
    client = IgrsHttpClient(ME, timeout=2.0)
    client._pool.idle_timeout = 0.3
    for _ in range(6):  # used every 0.1 s for 0.6 s: the same connection throughout
        await send(url, client)
        await asyncio.sleep(0.1)
    assert server.connections == 1 and len(client._pool._open) == 1
    await asyncio.sleep(0.45)  # then idle for longer than the idle time: closed
    assert not client._pool._open
    await send(url, client)
    assert server.connections == 2
    await client.close()


async def test_a_timeout_is_busy_and_the_caller_s_cancel_stays_a_cancel(  # type: ignore[no-untyped-def]
        canned) -> None:
    _, url = await canned(lambda _req: b"")  # never answers
    client = IgrsHttpClient(ME, timeout=0.2)
    with pytest.raises(IGRSError, match="TimeoutError") as timed_out:
        await send(url, client)
    assert timed_out.value.return_code == ReturnCode.BUSY
    assert asyncio.current_task().cancelling() == 0  # type: ignore[union-attr]
    task = asyncio.create_task(send(url, client))
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    async with asyncio.timeout(0.05):  # an outer timeout is the caller's: not turned into BUSY
        with pytest.raises(asyncio.CancelledError):
            await send(url, client)
    await client.close()


async def test_a_bare_200_is_the_answer_to_a_notify(canned) -> None:  # type: ignore[no-untyped-def]
    _, url = await canned(lambda _req: b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
    assert await send(url) is None


async def test_a_connection_closed_by_the_server_is_not_reused(canned) -> None:  # type: ignore[no-untyped-def]
    server, url = await canned(lambda _req: answer_bytes(), close_after=True)
    client = IgrsHttpClient(ME, timeout=2.0)
    await send(url, client)
    await asyncio.sleep(0.05)  # the server's close arrives while the connection is idle
    assert await send(url, client) is not None and server.connections == 2
    await client.close()


async def test_a_server_closing_after_each_answer_is_not_sent_to_a_closed_connection(  # type: ignore[no-untyped-def]
        canned) -> None:
    """ezbox closes after every answer without 'Connection: close': back-to-back requests (no
    pause for the FIN to be noticed) each get their answer, and the host's connections are
    then no longer kept."""
    server, url = await canned(lambda _req: answer_bytes(), close_after=True)
    client = IgrsHttpClient(ME, timeout=2.0)
    for _ in range(4):
        assert await send(url, client) is not None
    assert server.connections == 4
    await client.close()


@pytest.mark.parametrize(("raw", "error"), [
    (b"NOT HTTP\r\n\r\n", IGRSError),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", IGRSError),  # closed mid-body
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", IGRSError),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", IGRSError),
    (f"HTTP/1.1 200 OK\r\nContent-Length: {MAX_HTTP_BODY + 1}\r\n\r\n".encode(), ProtocolError),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + (b"10000\r\n" + b"x" * 65536 + b"\r\n") * 5,
     ProtocolError),
])
async def test_faulty_answers(canned, raw: bytes, error: type[Exception]) -> None:  # type: ignore[no-untyped-def]
    _, url = await canned(lambda _req: raw, close_after=True)
    with pytest.raises(error) as caught:
        await send(url)
    if error is IGRSError:
        assert caught.value.return_code == ReturnCode.BUSY  # type: ignore[attr-defined]


@pytest.mark.parametrize(("raw", "status"), [
    (b"HTTP/1.1 400 Bad Request\r\n\r\n", 400),  # ezbox: every error, no headers, closed (ezbox-dialect.md)
    (b"HTTP/1.1 505 HTTP Version Not Supported\r\n\r\n", 505),
    (b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 9\r\n\r\nnot a xml", 401),  # IGRS-less body
])
async def test_a_non_200_answer_without_an_error_response_is_a_remote_error(  # type: ignore[no-untyped-def]
        canned, raw: bytes, status: int) -> None:
    """messages.md §6: the HTTP status is the return code (not "missing header 01-IGRSVersion")."""
    _, url = await canned(lambda _req: raw, close_after=True)
    with pytest.raises(RemoteError) as caught:
        await send(url)
    assert caught.value.return_code == status


async def test_a_non_200_error_response_is_the_answer(canned) -> None:  # type: ignore[no-untyped-def]
    headers, body = messages.encode(messages.ErrorResponse(Status(5, ReturnCode.NOT_FOUND, "no")),
                                    source=PEER, target=ME, sequence_id=2)
    raw = messages.build_response([*headers, ("Connection", "close")], body, 404)
    _, url = await canned(lambda _req: raw, close_after=True)
    frame = await send(url)
    assert frame is not None and isinstance(frame.message, messages.ErrorResponse)
    assert frame.message.status.return_code == ReturnCode.NOT_FOUND


async def test_unreachable_and_silent_peers_are_busy(canned) -> None:  # type: ignore[no-untyped-def]
    listener = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    listener.close()
    await listener.wait_closed()
    with pytest.raises(IGRSError) as refused:
        await send(f"http://127.0.0.1:{port}/IGRS")
    assert refused.value.return_code == ReturnCode.BUSY
    _, url = await canned(lambda _req: b"")  # never answers
    client = IgrsHttpClient(ME, timeout=0.3)
    with pytest.raises(IGRSError) as silent:
        await send(url, client)
    assert silent.value.return_code == ReturnCode.BUSY
    await client.close()
    with pytest.raises(IGRSError):
        await send("ftp://127.0.0.1/IGRS")


# --- the sans-IO reader ----------------------------------------------------------------------
SEEDS = [answer_bytes(), answer_bytes(chunked=True), answer_bytes(close=True), answer_bytes(interim=True),
         b"HTTP/1.0 204 No Content\r\n\r\n"]


@st.composite
def mutated_answers(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(0, 3))):
        i = draw(st.integers(0, len(data)))
        kind = draw(st.sampled_from(["flip", "cut", "insert"]))
        if kind == "flip" and i < len(data):
            data[i] ^= draw(st.integers(1, 255))
        elif kind == "cut":
            del data[i:i + draw(st.integers(1, 40))]
        else:
            data[i:i] = draw(st.sampled_from([b"\r\n", b"0\r\n", b"ffff\r\n", b";", b":", b"\x00"]))
    return bytes(data)


def read_all(data: bytes, cuts: list[int]) -> object:
    reader = ResponseReader(4096)
    pos = 0
    try:
        for cut in [*cuts, len(data)]:
            piece, pos = data[pos:pos + cut], pos + cut
            response = reader.feed(piece)
            if response is not None:
                return (response.status, response.body, response.keep_alive and pos >= len(data))
            if pos >= len(data):
                break
        response = reader.feed_eof()
        return (response.status, response.body, response.keep_alive)
    except BadResponse:
        return "bad"
    except LimitExceeded:
        return "large"


@settings(derandomize=True, database=None, deadline=None, max_examples=300,
          suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(st.binary(max_size=200), mutated_answers()), st.lists(st.integers(1, 64), max_size=10))
def test_response_reader_only_raises_its_errors_and_ignores_the_split(data: bytes, cuts: list[int]) -> None:
    whole = read_all(data, [])
    assert read_all(data, cuts) == whole
