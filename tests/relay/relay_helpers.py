"""Helpers shared by the relay tests (imported by conftest and the test modules)."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import socket
import ssl
from dataclasses import dataclass
from pathlib import Path

from igrs.relay import (
    Limits,
    Principal,
    RelayClient,
    RelayConfig,
    RelayNode,
    payloads,
    register_device,
    register_user,
)
from igrs.relay.frames import Frame, FrameDecoder, FrameType


@dataclass
class Party:
    principal: Principal
    token: str


class World:
    """Registers parties on a node and opens clients that are closed at teardown."""

    def __init__(self, node: RelayNode) -> None:
        self.node = node
        self.clients: list[RelayClient] = []

    @property
    def address(self) -> tuple[str, int]:
        return ("127.0.0.1", self.node.port)

    @property
    def tls(self) -> dict[str, str]:
        return {"fingerprint": self.node.fingerprint}

    async def user(self, name: str = "alice") -> Party:
        p, token = await register_user(self.address, name, **self.tls)
        return Party(p, token)

    async def device(self, name: str = "tv", code: str = "tv-code-1") -> Party:
        p, token = await register_device(self.address, name, code, device_type="TV", **self.tls)
        return Party(p, token)

    async def connect(self, party: Party, **kw: object) -> RelayClient:
        kw.setdefault("fingerprint", self.node.fingerprint)
        c = RelayClient(self.address, principal=party.principal, token=party.token, **kw)  # type: ignore[arg-type]
        await c.connect()
        self.clients.append(c)
        return c

    async def owned_device(self, owner: RelayClient, name: str = "tv") -> Party:
        d = await self.device(name, code="code-" + name)
        await owner.bind(d.principal, "code-" + name)
        return d

    async def close(self) -> None:
        for c in self.clients:
            with contextlib.suppress(Exception):
                await c.close()


def make_node(state_dir: Path | None, limits: Limits | None = None, **kw: object) -> RelayNode:
    kw.setdefault("port", 0)
    cfg = RelayConfig(state_dir=state_dir, limits=limits or Limits(), housekeeping_interval=0.1, **kw)  # type: ignore[arg-type]
    return RelayNode(cfg)


class RawConn:
    """A hand-driven TLS connection for sending arbitrary (bad) bytes to a node."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.decoder = FrameDecoder(max_payload=1 << 24)
        self.pending: collections.deque[Frame] = collections.deque()

    @classmethod
    async def open(cls, node: RelayNode | int, rcvbuf: int | None = None,
                   source: str | None = None) -> RawConn:
        """To a node (or a port on 127.0.0.1), from ``source`` (another loopback address:
        another attacker or client as the relay sees it)."""
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        if source is not None:
            sock.bind((source, 0))
        sock.setblocking(False)
        port = node if isinstance(node, int) else node.port
        await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
        r, w = await asyncio.open_connection(sock=sock, ssl=ctx, server_hostname="localhost")
        return cls(r, w)

    def send(self, data: bytes) -> None:
        self.writer.write(data)

    async def frame(self, timeout: float = 5) -> Frame | None:
        """Next frame, or None at end of stream."""
        while not self.pending:
            data = await asyncio.wait_for(self.reader.read(65536), timeout)
            if not data:
                return None
            self.pending.extend(self.decoder.feed(data))
        return self.pending.popleft()

    async def until(self, ftype: FrameType, timeout: float = 5) -> Frame | None:
        """Read until a frame of ``ftype`` (returned) or the end of the stream (None)."""
        while True:
            f = await self.frame(timeout)
            if f is None or f.type is ftype:
                return f

    async def goaway(self, timeout: float = 5) -> tuple[int, str]:
        f = await self.until(FrameType.GOAWAY, timeout)
        assert f is not None, "connection closed without GOAWAY"
        rest = await asyncio.wait_for(self.reader.read(), timeout)  # then the relay closes
        assert rest == b""
        return payloads.decode_error(f.payload)

    async def auth(self, party: Party) -> None:
        self.send(
            Frame(
                FrameType.AUTH,
                id=1,
                payload=payloads.encode_json({"id": str(party.principal), "token": party.token}),
            ).encode()
        )
        f = await self.until(FrameType.AUTH_OK)
        assert f is not None

    async def request(self, op: str, rid: int = 1, **args: object) -> Frame:
        """One REQUEST; its RESPONSE or ERROR (other frames are skipped)."""
        self.send(request_frame(op, rid, **args))
        while True:
            f = await self.frame()
            assert f is not None, "connection closed"
            if f.type in (FrameType.RESPONSE, FrameType.ERROR) and f.id == rid:
                return f

    def close(self) -> None:
        self.writer.transport.abort()


def request_frame(op: str, rid: int = 1, **args: object) -> bytes:
    return Frame(FrameType.REQUEST, id=rid, payload=payloads.encode_json({"op": op, **args})).encode()


def answer(f: Frame) -> tuple[int, object]:
    """(200, result) of a RESPONSE, (code, reason) of an ERROR."""
    if f.type is FrameType.ERROR:
        return payloads.decode_error(f.payload)
    return 200, payloads.decode_json(f.payload)
