"""The TLS port of the device's HTTP server reads no byte in clear (specs/transport.md, "The TLS
port"), on asyncio's loop and on uvloop's (``igrs device run`` takes uvloop when installed).

A client's ClientHello may already wait in the socket when the server accepts (a loaded machine
accepts late). The server used to accept like its plain port and then ``start_tls`` on the
connection, pausing reading in between; uvloop starts reading after ``connection_made`` even
then, so the ClientHello went to the HTTP parser and the handshake waited for it until the
handshake timeout: "Cannot connect to host ... ssl:... [None]" in the File client, about one
TLS transfer in two under load. Here the client drives its handshake by hand over a real socket
(``ssl.SSLObject``): the ClientHello is sent while the server's loop stands still, whole or
split, the rest once it runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl

import pytest

from igrs.cli.event_loop import loop_factory
from igrs.core.security.identity import LocalIdentity
from igrs.net.http import IgrsHttpServer
from igrs.net.httpserver import HttpLimits
from igrs.net.tls import PinnedTls
from igrs.wire.ids import DeviceId

HANDSHAKE_TIMEOUT = 3.0  # the server's (header_timeout); the client expects the handshake well before
LOOPS = ["asyncio", pytest.param("uvloop", marks=pytest.mark.skipif(
    loop_factory("auto") is None, reason="uvloop is in the test extra (igrs[uvloop])"))]


class _HandDriven:
    """The client end of a TLS connection, driven step by step over a non-blocking socket."""

    def __init__(self, sock: socket.socket, context: ssl.SSLContext) -> None:
        self.sock = sock
        self.incoming, self.outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.tls = context.wrap_bio(self.incoming, self.outgoing)

    def step(self) -> bool:
        """One handshake step; True once it is complete (its output is in ``outgoing``)."""
        try:
            self.tls.do_handshake()
        except ssl.SSLWantReadError:
            return False
        return True

    async def flush(self) -> None:
        if self.outgoing.pending:
            await asyncio.get_running_loop().sock_sendall(self.sock, self.outgoing.read())

    async def receive(self) -> None:
        data = await asyncio.get_running_loop().sock_recv(self.sock, 65536)
        assert data, "the server closed the connection during the TLS handshake"
        self.incoming.write(data)

    async def request(self, raw: bytes) -> bytes:
        """Send ``raw`` inside TLS; the answer's bytes up to the end of its head."""
        self.tls.write(raw)
        await self.flush()
        answer = b""
        while b"\r\n\r\n" not in answer:
            with contextlib.suppress(ssl.SSLWantReadError):
                answer += self.tls.read(65536)
                continue
            await self.receive()
        return answer


async def _client_hello_before_the_accept(split: bool) -> None:
    device, me = LocalIdentity.generate(), LocalIdentity.generate()
    tls = PinnedTls(device)
    tls.trust(me.public_key)
    server = IgrsHttpServer(DeviceId.new(), lambda frame, peer: asyncio.sleep(0), lambda: b"<root/>",
                            limits=HttpLimits(header_timeout=HANDSHAKE_TIMEOUT))
    await server.start(["127.0.0.1"], 0)
    port = await server.listen_tls(tls.server_context())
    try:
        # blocking calls: the loop stands still, the kernel completes the TCP handshake from the
        # listen backlog, and the ClientHello (or its first bytes) waits in the server's socket
        sock = socket.create_connection(("127.0.0.1", port), timeout=2)
        client = _HandDriven(sock, PinnedTls(me).client_context(device.public_key))
        assert not client.step()
        hello = client.outgoing.read()
        sock.sendall(hello[:5] if split else hello)
        sock.setblocking(False)
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(HANDSHAKE_TIMEOUT / 2):
                if split:
                    await asyncio.sleep(0.2)  # the server has read the first bytes meanwhile
                    await loop.sock_sendall(sock, hello[5:])
                while not client.step():
                    await client.flush()
                    await client.receive()
                await client.flush()  # the client's certificate and Finished
                answer = await client.request(b"GET /IGRS/description.xml HTTP/1.1\r\nHost: x\r\n\r\n")
        except TimeoutError:
            pytest.fail("no TLS handshake: the server read the ClientHello that was waiting at the accept")
        finally:
            sock.close()
        assert answer.startswith(b"HTTP/1.1 200 "), answer[:80]
    finally:
        await server.close()


@pytest.mark.parametrize("split", [False, True], ids=["whole", "split"])
@pytest.mark.parametrize("loop_name", LOOPS)
def test_a_client_hello_waiting_at_the_accept_starts_the_handshake(loop_name: str, split: bool) -> None:
    with asyncio.Runner(loop_factory=loop_factory(loop_name)) as runner:
        runner.run(_client_hello_before_the_accept(split))
