"""The device's own HTTP/1.1 server (igrs/net/httpserver.py) over real sockets on 127.0.0.1.

Raw bytes in, raw bytes out: every documented status (specs/transport.md, "HTTP server"),
keep-alive, pipelining, the timeouts and caps with shortened limits, the hand-off of a
mounted prefix to aiohttp; and a property test of the sans-IO request-head parser.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest
from aiohttp import web
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from igrs.constants import HTTP_MAX_HEADER_FIELDS, HTTP_MAX_LINE, MAX_HTTP_BODY, ReturnCode
from igrs.errors import NotImplementedMessage
from igrs.net.http import IgrsHttpServer, Reply
from igrs.net.httpserver import HttpLimits
from igrs.wire import messages
from igrs.wire.bodies import pipes as pb
from igrs.wire.http11 import HttpError, find_head_end, parse_request_head
from igrs.wire.httpu import Headers, parse_head
from igrs.wire.ids import DeviceId
from igrs.wire.messages import ErrorResponse, Frame, Status

DEVICE = DeviceId.new()
CLIENT = DeviceId.new()
DESCRIPTION = b"<?xml version='1.0' encoding='utf-8'?><root>description</root>"
LIMITS = HttpLimits(header_timeout=0.4, body_timeout=0.4, idle_timeout=0.8, max_connections=6,
                    max_connections_per_address=3, max_pipeline=4, linger_time=0.3, send_timeout=0.5)


@dataclass
class Served:
    server: IgrsHttpServer
    port: int
    delays: dict[int, float] = field(default_factory=dict)  # SequenceId -> handler delay
    running: int = 0
    most_running: int = 0


@pytest.fixture
async def served() -> AsyncIterator[Served]:
    box: list[Served] = []

    async def handler(frame: Frame, peer: str) -> Reply:
        state = box[0]
        if isinstance(frame.message, pb.DetachPipeNotify):
            return None  # a notify, accepted
        if not isinstance(frame.message, messages.GetDeviceDescriptionRequest):
            raise NotImplementedMessage(f"{frame.routing.message_type} is not served")
        seq = frame.routing.sequence_id
        state.running += 1
        state.most_running = max(state.most_running, state.running)
        try:
            await asyncio.sleep(state.delays.get(seq, 0))
        finally:
            state.running -= 1
        return messages.GetDeviceDescriptionResponse(Status(seq, ReturnCode.BUSY, "served"))

    server = IgrsHttpServer(DEVICE, handler, lambda: DESCRIPTION, limits=LIMITS)
    port = await server.start(["127.0.0.1"], 0)
    box.append(Served(server, port))
    try:
        yield box[0]
    finally:
        await server.close()


# --- helpers ---------------------------------------------------------------------------------
def igrs_request(seq: int, *, method: str = "M-POST", extra: tuple[tuple[str, str], ...] = (),
                 message: messages.SoapMessage | None = None) -> bytes:
    headers, body = messages.encode(message or messages.GetDeviceDescriptionRequest(), source=CLIENT,
                                    target=DEVICE, sequence_id=seq)
    head = [f"{method} /IGRS HTTP/1.1", "Host: 127.0.0.1", *(f"{k}: {v}" for k, v in [*headers, *extra]),
            f"Content-Length: {len(body)}"]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


def plain(method: str, target: str, *lines: str, version: str = "1.1") -> bytes:
    return "\r\n".join([f"{method} {target} HTTP/{version}", "Host: 127.0.0.1", *lines, "", ""]).encode()


@dataclass
class Answer:
    status: int
    headers: Headers
    body: bytes

    def frame(self) -> Frame:
        return messages.decode(self.headers, self.body)

    def ack(self) -> int:
        return self.frame().message.status.acknowledge_id  # type: ignore[union-attr]

    def code(self) -> int:
        message = self.frame().message
        assert isinstance(message, ErrorResponse), message
        return message.status.return_code


class Client:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def connect(cls, port: int, source: str = "127.0.0.1") -> Client:
        """A connection from ``source`` (any 127.0.0.0/8 address: several peers on one host)."""
        return cls(*await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0)))

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def answer(self, *, head: bool = False, timeout: float = 5.0) -> Answer:
        async with asyncio.timeout(timeout):
            raw = await self.reader.readuntil(b"\r\n\r\n")
            start, headers = parse_head(raw[:-4])
            length = int(headers.get("Content-Length") or 0)
            body = b"" if head else await self.reader.readexactly(length)
        return Answer(int(start.split(" ")[1]), headers, body)

    async def closed(self, timeout: float = 3.0) -> bool:
        """True once the server closed the connection (EOF or reset) within ``timeout``."""
        try:
            async with asyncio.timeout(timeout):
                while await self.reader.read(65536):
                    pass
            return True
        except ConnectionError:
            return True
        except TimeoutError:
            return False

    def close(self) -> None:
        self.writer.close()


async def exchange(port: int, data: bytes, **kw: bool) -> Answer:
    client = await Client.connect(port)
    try:
        await client.send(data)
        return await client.answer(**kw)
    finally:
        client.close()


# --- statuses --------------------------------------------------------------------------------
async def test_igrs_requests_over_m_post_and_post(served: Served) -> None:
    for method in ("M-POST", "POST"):
        answer = await exchange(served.port, igrs_request(7, method=method))
        assert answer.status == 200 and answer.ack() == 7
        assert answer.frame().routing.source == DEVICE


async def test_an_accepted_notify_gets_an_empty_200_with_ext(served: Served) -> None:
    """messages.md §3 (found by the passive checker: the empty 200 lacked Ext)."""
    answer = await exchange(served.port, igrs_request(8, message=pb.DetachPipeNotify(5, "bye")))
    assert answer.status == 200 and answer.body == b""
    assert answer.headers.get("Ext") == "" and answer.headers.get("Cache-Control") == 'no-cache="Ext"'


async def test_description_get_and_head(served: Served) -> None:
    client = await Client.connect(served.port)
    await client.send(plain("HEAD", "/IGRS/description.xml") + plain("GET", "/IGRS/description.xml?x=1"))
    head = await client.answer(head=True)
    assert head.status == 200 and int(head.headers.one("Content-Length")) == len(DESCRIPTION)
    got = await client.answer()  # right after the HEAD answer: that one had no body
    assert got.status == 200 and got.body == DESCRIPTION
    assert got.headers.one("Content-Type").startswith("text/xml")
    client.close()


@pytest.mark.parametrize(("request_bytes", "status"), [
    (plain("GET", "/elsewhere"), 404),
    (plain("OPTIONS", "*"), 404),
    (plain("GET", "/IGRS"), 405),
    (plain("PUT", "/IGRS", "Content-Length: 0"), 405),
    (b"GARBAGE\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nno colon here\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\n folded: line\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nBad\x01: x\r\n\r\n", 400),
    (plain("GET", "/", "Content-Length: -1"), 400),
    (plain("GET", "/", "Content-Length: 1", "Content-Length: 2"), 400),
    (plain("GET", "/" + "a" * HTTP_MAX_LINE), 400),
    (plain("GET", "/", "X: " + "a" * HTTP_MAX_LINE), 400),
    (plain("GET", "/", *(f"X-{i}: y" for i in range(HTTP_MAX_HEADER_FIELDS + 1))), 400),
    (plain("GET", "/", *(f"X-{i}: " + "y" * 1200 for i in range(60))), 400),  # head over 64 KiB
    (plain("GET", "/IGRS/description.xml", version="2.0"), 505),
    (plain("GET", "/IGRS/description.xml", version="0.9"), 505),
    (plain("POST", "/IGRS", "Transfer-Encoding: chunked") + b"0\r\n\r\n", 411),
    (plain("POST", "/IGRS", "Expect: something", "Content-Length: 0"), 417),
])
async def test_http_statuses(served: Served, request_bytes: bytes, status: int) -> None:
    client = await Client.connect(served.port)
    await client.send(request_bytes)
    answer = await client.answer()
    assert answer.status == status, answer
    if status == 405:
        assert answer.headers.one("Allow") == "M-POST, POST"
    if status not in (404, 405):  # a request that could not be served closes the connection
        assert answer.headers.one("Connection") == "close" and await client.closed()
    client.close()


async def test_igrs_level_errors(served: Served) -> None:
    unserved = messages.SearchDeviceRequestOnDevice(messages.SearchTarget.all())
    answer = await exchange(served.port, igrs_request(5, message=unserved))
    assert answer.status == 501 and answer.code() == ReturnCode.NOT_IMPLEMENTED
    answer = await exchange(served.port, igrs_request(6).replace(b"IGRS/1.0", b"IGRS/2.0"))
    assert answer.status == 505 and answer.code() == ReturnCode.VERSION_NOT_SUPPORTED
    answer = await exchange(served.port, igrs_request(8).replace(b"<", b"[", 1))
    assert answer.status == 400 and answer.code() == ReturnCode.BAD_MESSAGE


async def test_body_over_the_cap_gets_413_before_it_is_sent(served: Served) -> None:
    client = await Client.connect(served.port)
    head = igrs_request(9).split(b"\r\n\r\n")[0].replace(b"Content-Length: ", b"X-Old: ")
    await client.send(head + f"\r\nContent-Length: {MAX_HTTP_BODY + 1}\r\n\r\n".encode())
    answer = await client.answer()  # no byte of the body was sent
    assert answer.status == 413 and answer.code() == ReturnCode.PAYLOAD_TOO_LARGE
    assert answer.frame().message.status.acknowledge_id == 9  # type: ignore[union-attr]
    assert await client.closed()
    assert served.server.errors[ReturnCode.PAYLOAD_TOO_LARGE] == 1


async def test_expect_100_continue(served: Served) -> None:
    client = await Client.connect(served.port)
    data = igrs_request(4, extra=(("Expect", "100-continue"),))
    head, body = data.split(b"\r\n\r\n", 1)
    await client.send(head + b"\r\n\r\n")
    assert await client.reader.readuntil(b"\r\n\r\n") == b"HTTP/1.1 100 Continue\r\n\r\n"
    await client.send(body)
    assert (await client.answer()).ack() == 4
    client.close()


# --- connections -----------------------------------------------------------------------------
async def test_keep_alive_reuses_the_connection(served: Served) -> None:
    client = await Client.connect(served.port)
    for seq in (1, 2, 3):
        await client.send(igrs_request(seq))
        answer = await client.answer()
        assert answer.ack() == seq and "Connection" not in answer.headers
    assert len(served.server.server.connections) == 1
    client.close()


async def test_pipelined_requests_are_answered_in_order(served: Served) -> None:
    served.delays.update({1: 0.3, 2: 0.0, 3: 0.15})
    client = await Client.connect(served.port)
    started = time.monotonic()
    description = plain("GET", "/IGRS/description.xml")
    await client.send(igrs_request(1) + igrs_request(2) + description + igrs_request(3))
    assert (await client.answer()).ack() == 1
    assert (await client.answer()).ack() == 2
    assert (await client.answer()).body == DESCRIPTION
    assert (await client.answer()).ack() == 3
    assert time.monotonic() - started < 0.45  # the handlers ran at the same time
    client.close()


async def test_pipelining_is_bounded(served: Served) -> None:
    served.delays.update({seq: 0.05 for seq in range(1, 21)})
    client = await Client.connect(served.port)
    await client.send(b"".join(igrs_request(seq) for seq in range(1, 21)))
    for seq in range(1, 21):
        assert (await client.answer()).ack() == seq
    assert served.most_running <= LIMITS.max_pipeline
    client.close()


async def test_both_sides_read_at_most_64_kib_at_a_time(served: Served) -> None:
    """asyncio's 256 KiB recv buffer is mapped and unmapped per read: both sides ask less."""
    from igrs.net.aio import STREAM_READ_SIZE
    from igrs.net.http import IgrsHttpClient

    client = IgrsHttpClient(CLIENT)
    _, frame = await client.send(f"http://127.0.0.1:{served.port}/IGRS", messages.GetDeviceDescriptionRequest(),
                                 DEVICE)
    assert frame is not None
    (conn,) = served.server.server.connections
    (mine,) = client._pool._open
    assert conn._transport.max_size == mine._transport.max_size == STREAM_READ_SIZE == 65536  # type: ignore[union-attr]
    await client.close()


async def test_thousands_of_pipelined_requests_in_one_buffer(served: Served) -> None:
    """Answers made while the buffer is read are written as it goes (a loop, not a recursion)."""
    client = await Client.connect(served.port)
    count = 3000
    description = plain("GET", "/IGRS/description.xml")
    await client.send(igrs_request(1) + description * count + igrs_request(2))
    assert (await client.answer()).ack() == 1
    for _ in range(count):
        assert (await client.answer()).body == DESCRIPTION
    assert (await client.answer()).ack() == 2
    client.close()


@pytest.mark.parametrize(("lines", "version", "closes"), [
    (("Connection: close",), "1.1", True),
    (("Connection: keep-alive, Close",), "1.1", True),
    ((), "1.0", True),
    (("Connection: keep-alive",), "1.0", False),
])
async def test_connection_close_and_http_1_0(served: Served, lines: tuple[str, ...], version: str,
                                             closes: bool) -> None:
    client = await Client.connect(served.port)
    await client.send(plain("GET", "/IGRS/description.xml", *lines, version=version))
    answer = await client.answer()
    assert answer.status == 200
    assert answer.headers.get("Connection") == ("close" if closes else "keep-alive")
    assert await client.closed(timeout=0.3 if not closes else 3.0) is closes
    client.close()


async def test_slow_loris_is_cut_after_the_header_timeout(served: Served) -> None:
    client = await Client.connect(served.port)
    started = time.monotonic()
    with pytest.raises(ConnectionError):
        for byte in plain("GET", "/IGRS/description.xml", "X-Slow: " + "a" * 100):
            await client.send(bytes([byte]))
            if client.reader.at_eof():
                raise ConnectionError("closed")
            await asyncio.sleep(0.02)
    assert LIMITS.header_timeout <= time.monotonic() - started < LIMITS.header_timeout + 1.0
    await asyncio.sleep(0.05)
    assert not served.server.server.connections
    client.close()


async def test_slow_body_and_idle_connections_are_closed(served: Served) -> None:
    client = await Client.connect(served.port)
    await client.send(igrs_request(1)[:-5])  # the body never completes
    started = time.monotonic()
    assert await client.closed() and time.monotonic() - started < LIMITS.body_timeout + 1.0
    idle = await Client.connect(served.port)
    started = time.monotonic()
    assert await idle.closed() and LIMITS.idle_timeout - 0.1 <= time.monotonic() - started
    client.close()
    idle.close()


async def test_the_idle_time_counts_from_the_last_answer(served: Served) -> None:
    """Busy, then idle, then a slow head on one connection: each wait timed from its start."""
    client = await Client.connect(served.port)
    for seq in range(1, 7):  # a request every 0.25 s for 1.5 s, beyond the idle time (0.8 s)
        await client.send(igrs_request(seq))
        assert (await client.answer()).ack() == seq
        await asyncio.sleep(0.25)
    started = time.monotonic()
    assert await client.closed(timeout=3.0)
    assert LIMITS.idle_timeout - 0.35 <= time.monotonic() - started <= LIMITS.idle_timeout + 0.5
    slow = await Client.connect(served.port)
    await asyncio.sleep(0.5)  # idle (0.8 s), then a head that never ends (0.4 s from its first byte)
    await slow.send(igrs_request(1)[:20])
    started = time.monotonic()
    assert await slow.closed(timeout=3.0)
    assert LIMITS.header_timeout - 0.1 <= time.monotonic() - started <= LIMITS.header_timeout + 0.35
    client.close()
    slow.close()


async def test_too_many_connections_are_refused(served: Served) -> None:
    clients = [await Client.connect(served.port, f"127.0.0.{2 + i % 2}") for i in range(LIMITS.max_connections)]
    await asyncio.sleep(0.05)
    extra = await Client.connect(served.port, "127.0.0.4")
    answer = await extra.answer()
    assert answer.status == 503 and await extra.closed()
    assert served.server.server.refused == 1
    clients.pop().close()
    await asyncio.sleep(0.05)
    assert (await exchange(served.port, igrs_request(3))).ack() == 3
    for client in [*clients, extra]:
        client.close()


async def test_one_address_is_capped_and_its_503_arrives_despite_unread_input(served: Served) -> None:
    """specs/transport.md: at most max_connections_per_address from one address; the refused
    connection's 503 is read by the peer, not lost to a reset caused by its unread request."""
    held = [await Client.connect(served.port, "127.0.0.2") for _ in range(LIMITS.max_connections_per_address)]
    await asyncio.sleep(0.05)
    for _ in range(3):
        extra = await Client.connect(served.port, "127.0.0.2")
        await extra.send(igrs_request(1) * 40)  # a request, and much more, the server never reads
        await asyncio.sleep(0.05)
        answer = await extra.answer()
        assert answer.status == 503 and answer.body == b"too many connections from your address\n"
        assert await extra.closed()
        extra.close()
    assert (await exchange(served.port, igrs_request(3))).ack() == 3  # another address: served
    held.pop().close()
    await asyncio.sleep(0.05)
    client = await Client.connect(served.port, "127.0.0.2")
    await client.send(igrs_request(4))
    assert (await client.answer()).ack() == 4  # a slot of that address is free again
    for c in [*held, client]:
        c.close()


async def test_a_peer_that_stops_reading_its_pipelined_answers_is_cut(served: Served) -> None:
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", served.port))
    sock.setblocking(False)
    request = plain("GET", "/IGRS/description.xml") * 500
    loop = asyncio.get_running_loop()
    while not served.server.server.connections:
        await asyncio.sleep(0.01)
    deadline = loop.time() + 10
    with sock:
        while served.server.server.connections and loop.time() < deadline:
            try:
                sock.send(request)  # pipelined requests, their answers never read
            except BlockingIOError:
                pass
            except OSError:
                break  # the server cut the connection
            await asyncio.sleep(0.01)
        assert not served.server.server.connections, "a non-reading peer kept its connection"


# --- the hand-off of a mounted prefix to aiohttp -------------------------------------------------
async def plain_handler(request: web.BaseRequest) -> web.StreamResponse:
    body = await request.read()
    return web.Response(text=f"plain {request.method} {request.path} {len(body)}")


async def test_mounted_prefix_on_a_fresh_connection(served: Served) -> None:
    served.server.mount("/plain/", plain_handler)
    answer = await exchange(served.port, plain("PUT", "/plain/a%20b", "Content-Length: 3") + b"abc")
    assert answer.status == 200 and answer.body == b"plain PUT /plain/a b 3"


async def test_mounted_prefix_after_igrs_requests_on_one_connection(served: Served) -> None:
    served.server.mount("/plain/", plain_handler)
    served.delays[1] = 0.2
    client = await Client.connect(served.port)
    await client.send(igrs_request(2))
    assert (await client.answer()).ack() == 2
    # pipelined: the IGRS answer (slow) is written before aiohttp takes the connection over
    await client.send(igrs_request(1) + plain("POST", "/plain/x", "Content-Length: 2") + b"hi")
    assert (await client.answer()).ack() == 1
    assert (await client.answer()).body == b"plain POST /plain/x 2"
    assert served.server.handed_off() == 1 and len(served.server.server.connections) == 1
    # now aiohttp's connection: /IGRS is still answered the same way
    await client.send(igrs_request(3) + plain("GET", "/IGRS/description.xml") + plain("GET", "/IGRS"))
    assert (await client.answer()).ack() == 3
    assert (await client.answer()).body == DESCRIPTION
    refused = await client.answer()
    assert refused.status == 405 and refused.headers.one("Allow") == "M-POST, POST"
    client.close()


async def test_timers_apply_after_the_hand_off() -> None:
    """Header (from a head's first byte), body (progress) and idle timers on a connection
    served by aiohttp since a mounted request, as on the own server."""
    limits = HttpLimits(header_timeout=0.3, body_timeout=0.3, idle_timeout=3.0)

    async def handler(frame: Frame, peer: str) -> Reply:
        return None

    server = IgrsHttpServer(DEVICE, handler, lambda: DESCRIPTION, limits=limits)
    server.mount("/plain/", plain_handler)
    port = await server.start(["127.0.0.1"], 0)
    try:
        slow_head = b"GET /plain/y HTTP/1.1\r\nX-Slow: "
        slow_body = plain("PUT", "/plain/z", "Content-Length: 50") + b"x"
        for follow in (slow_head, slow_body):
            client = await Client.connect(port)
            await client.send(plain("GET", "/plain/x"))
            assert (await client.answer()).body == b"plain GET /plain/x 0"
            assert server.handed_off() == 1
            started = time.monotonic()
            await client.send(follow)  # a head or a body that stops coming
            assert await client.closed(timeout=2.5), follow
            assert time.monotonic() - started < 2.0, follow  # well before the idle timeout
            client.close()
            await asyncio.sleep(0.05)
        client = await Client.connect(port)
        await client.send(plain("GET", "/plain/x"))
        await client.answer()
        assert not await client.closed(timeout=1.0)  # idle between requests: the idle timer
        assert await client.closed(timeout=3.0)
        client.close()
    finally:
        await server.close()


async def test_malformed_requests_on_a_mounted_prefix_are_logged_once_per_peer(
        served: Served, caplog: pytest.LogCaptureFixture) -> None:
    served.server.mount("/plain/", plain_handler)
    caplog.set_level(logging.DEBUG)
    for _ in range(5):
        client = await Client.connect(served.port)
        await client.send(plain("GET", "/plain/x"))
        await client.answer()
        await client.send(b"GET /plain/x HTTP/1.1\r\nBad\x01Header: x\r\n\r\n")
        assert (await client.answer()).status == 400
        client.close()
    errors = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(errors) == 1 and "malformed HTTP request from 127.0.0.1" in errors[0].getMessage(), errors
    assert not any(r.exc_info for r in caplog.records if r.levelno >= logging.INFO)


def test_an_idle_device_does_not_import_aiohttp(free_udp_port: int) -> None:
    code = (
        "import asyncio, sys\n"
        "from igrs import Device\n"
        "async def main():\n"
        f"    async with Device(name='x', device_type='TV', interfaces=['lo'], port={free_udp_port},\n"
        "                      http_port=0, watch_interfaces=False):\n"
        "        await asyncio.sleep(0.1)\n"
        "    print(sorted(m for m in sys.modules if m.split('.')[0] in ('aiohttp', 'multidict', 'yarl')))\n"
        "asyncio.run(main())\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


# --- the sans-IO parser ----------------------------------------------------------------------
SEEDS = [
    igrs_request(1),
    plain("GET", "/IGRS/description.xml", "Connection: keep-alive", version="1.0"),
    plain("PUT", "http://h/files/x?y=1", "Expect: 100-continue", "Content-Length: 10"),
    b"\r\nPOST /IGRS HTTP/1.1\nHost: a\nTransfer-Encoding: chunked\n\n",
]
TOKENS = [b"\r\n", b"\n", b"\r", b":", b" ", b"\t", b"\x00", b"\xff", b"HTTP/2.0", b"Connection: close",
          b"Content-Length: 99999999999", b"Expect: x", b"\r\n\r\n", b"\n\n"]


@st.composite
def mutated_requests(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["flip", "truncate", "insert", "token", "delete"]))
        i = draw(st.integers(0, len(data)))
        if kind == "flip" and i < len(data):
            data[i] ^= draw(st.integers(1, 255))
        elif kind == "truncate":
            del data[i:]
        elif kind == "insert":
            data[i:i] = draw(st.binary(min_size=1, max_size=16))
        elif kind == "token":
            data[i:i] = draw(st.sampled_from(TOKENS))
        elif kind == "delete":
            del data[i:i + draw(st.integers(1, 32))]
    return bytes(data)


def parse_whole(data: bytes) -> tuple[int, object]:
    """(end of head, parsed head or the HttpError status) for one buffer."""
    stripped = data.lstrip(b"\r\n")
    try:
        end = find_head_end(stripped)
        return end, (parse_request_head(stripped[:end]) if end >= 0 else None)
    except HttpError as exc:
        return -2, exc.status


PROPERTY = settings(derandomize=True, database=None, deadline=None, max_examples=300,
                    suppress_health_check=[HealthCheck.too_slow])


@PROPERTY
@given(st.one_of(st.binary(max_size=300), mutated_requests()))
def test_parser_raises_only_http_error(data: bytes) -> None:
    end, result = parse_whole(data)
    if isinstance(result, int):
        assert result in (400, 411, 417, 505)
    elif result is not None:
        assert 0 < end <= len(data)
        assert result.content_length >= 0  # type: ignore[attr-defined]


@PROPERTY
@given(mutated_requests(), st.lists(st.integers(1, 40), max_size=12))
def test_head_end_is_the_same_however_the_bytes_arrive(data: bytes, cuts: list[int]) -> None:
    """The resumed search (``scanned``) finds the same end as one search over all bytes."""
    stripped = data.lstrip(b"\r\n")
    try:
        whole: int | str = find_head_end(stripped)
    except HttpError:
        whole = "error"
    buf, scanned, got, pos = b"", 0, None, 0
    for cut in [*cuts, len(stripped)]:
        buf, pos = stripped[:pos + cut], pos + cut
        try:
            end = find_head_end(buf, scanned)
        except HttpError:
            got = "error"
            break
        if end >= 0:
            got = end
            break
        scanned = len(buf)
        if pos >= len(stripped):
            got = -1
            break
    assert got == whole
