"""File transfers between paired devices inside TLS 1.3, pinned to the identity keys they
exchanged at pairing (specs/file-profile.md §5, specs/security.md §11): get, put and resume over
real sockets; a client or server with another key, plain HTTP on a TLS transfer, another paired
device and an unpaired one are refused; the TLS port is capped and timed like the HTTP port;
legacy peers keep plain HTTP."""

from __future__ import annotations

import asyncio
import hashlib
import os
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from pairing import Pairings, pair_with
from support import closing

from igrs import Device
from igrs.constants import ReturnCode
from igrs.core.security.identity import LocalIdentity
from igrs.errors import IGRSError
from igrs.net.httpserver import HttpLimits
from igrs.net.tls import PinnedTls
from igrs.node.service import action
from igrs.profiles.file import FileServer, SharedFolder, attach_file_server
from igrs.profiles.file.client import FileClient, TransferFailed, error_code
from igrs.profiles.file.paths import PARTIAL_DIR

LO = ["lo"]
SIZE = 3_000_000
pytestmark = pytest.mark.timeout(90)


@pytest.fixture
async def home(tmp_path: Path, free_udp_port: int) -> AsyncIterator[dict]:
    pub, inbox = tmp_path / "pub", tmp_path / "inbox"
    pub.mkdir()
    inbox.mkdir()
    data = os.urandom(SIZE)
    (pub / "big.bin").write_bytes(data)
    pins: list[str] = []
    limits = HttpLimits(max_connections_per_address=3, header_timeout=1.0)
    async with Device(name="PC", interfaces=LO, port=free_udp_port, http_port=0, on_pin=pins.append,
                      watch_interfaces=False, http_limits=limits) as dev:
        server = attach_file_server(dev, [SharedFolder("pub", pub),
                                          SharedFolder("inbox", inbox, writable=True)])
        async with closing(Pairings(dev, free_udp_port, pins, LO)) as paired:
            yield {"dev": dev, "server": server, "paired": paired, "data": data, "inbox": inbox,
                   "tmp": tmp_path}


async def test_get_put_and_resume_inside_tls(home: dict) -> None:
    cp = await home["paired"]()
    data, tmp, inbox = home["data"], home["tmp"], home["inbox"]
    async with FileClient.connect(cp, home["dev"].device_id) as files:
        await files.get("/pub/big.bin", tmp / "whole.bin")
        assert files.transport == "tls" and (tmp / "whole.bin").read_bytes() == data
        # a download cut half-way resumes inside TLS from its partial
        dest, seen = tmp / "cut.bin", []
        task = asyncio.create_task(files.get("/pub/big.bin", dest, rate_limit=2_000_000,
                                             progress=lambda d, t: seen.append(d)))
        while not seen or seen[-1] < 1_000_000:
            await asyncio.sleep(0.02)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        kept = dest.with_name(dest.name + ".igrs-part").stat().st_size
        starts: list[int] = []
        await files.get("/pub/big.bin", dest, progress=lambda d, t: starts.append(d))
        assert files.transport == "tls" and starts[0] == kept > 0 and dest.read_bytes() == data
        # an upload cut half-way resumes inside TLS at the server's offset
        sent: list[int] = []
        task = asyncio.create_task(files.put(tmp / "whole.bin", "/inbox/up.bin", rate_limit=2_000_000,
                                             progress=lambda d, t: sent.append(d)))
        while not sent or sent[-1] < 1_000_000:
            await asyncio.sleep(0.02)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await asyncio.sleep(0.3)
        assert not (inbox / "up.bin").exists()
        resumed: list[int] = []
        digest = await files.put(tmp / "whole.bin", "/inbox/up.bin", on_resume=resumed.append)
        assert files.transport == "tls" and resumed and resumed[0] > 0
        assert digest == hashlib.sha256(data).hexdigest() and (inbox / "up.bin").read_bytes() == data
        assert not list((inbox / PARTIAL_DIR).glob("*.part"))


async def _refused(url: str, context: object) -> str:
    """How a GET inside TLS with ``context`` ended: its HTTP status, or the error class."""
    async with aiohttp.ClientSession() as http:
        try:
            async with http.get(url, ssl=context) as r:
                body = await r.read()
                return f"HTTP {r.status} {len(body)} bytes"
        except aiohttp.ClientError as exc:
            return type(exc).__name__


async def test_only_the_paired_identity_gets_the_bytes(home: dict) -> None:
    dev: Device = home["dev"]
    cp, other = await home["paired"](), await home["paired"]()
    async with FileClient.connect(cp, dev.device_id) as files:
        info = await files.proxy.BeginGet(path="/pub/big.bin", transport="tls")
        assert info["transport"] == "tls" and int(info["port"]) != dev.http.port
        url = f"https://127.0.0.1:{info['port']}{info['url']}"
        own = PinnedTls(cp.identity).client_context(dev.identity.public_key)
        assert await _refused(url, own) == f"HTTP 200 {SIZE} bytes"
        # a client certificate of another key: the handshake is refused, nothing is served
        stranger = PinnedTls(LocalIdentity.generate()).client_context(dev.identity.public_key)
        assert not (await _refused(url, stranger)).startswith("HTTP")
        # another paired device, from the same address: refused in the handshake until it asked for a
        # TLS transfer itself (its key is trusted from then on), then by the transfer (not the caller's)
        second = PinnedTls(other.identity).client_context(dev.identity.public_key)
        assert not (await _refused(url, second)).startswith("HTTP")
        async with FileClient.connect(other, dev.device_id) as theirs:
            await theirs.get("/pub/big.bin", home["tmp"] / "theirs.bin")
        assert (await _refused(url, second)).startswith("HTTP 403 ")
        # the same URL over plain HTTP
        async with aiohttp.ClientSession() as http, http.get(files.base_url + info["url"]) as r:
            assert r.status == 403
        # a server certified by another key than the one paired with: the client refuses it
        impostor = PinnedTls(cp.identity).client_context(LocalIdentity.generate().public_key)
        assert await _refused(url, impostor) == "ClientConnectorCertificateError"
        # once the device forgets the pairing, the established identity no longer gets the bytes
        assert dev.unpair(cp.device_id)
        assert (await _refused(url, own)).startswith("HTTP 403 ")


async def test_the_tls_port_is_capped_and_timed(home: dict) -> None:
    dev: Device = home["dev"]
    cp = await home["paired"]()
    async with FileClient.connect(cp, dev.device_id) as files:
        port = int((await files.proxy.BeginGet(path="/pub/big.bin", transport="tls"))["port"])
    loop = asyncio.get_running_loop()

    def connect() -> socket.socket:
        s = socket.socket()
        s.bind(("127.0.0.2", 0))
        s.connect(("127.0.0.1", port))
        s.setblocking(False)
        return s

    opened = loop.time()
    held = [connect() for _ in range(3)]  # never start a handshake: counted from the accept
    await asyncio.sleep(0.2)
    assert dev.http.server.per_address.get("127.0.0.2") == 3
    extra = connect()
    assert await asyncio.wait_for(loop.sock_recv(extra, 100), 2) == b""  # over the cap: closed at once
    for s in held:  # the handshake is timed like a request head (header_timeout, 1 s here)
        assert await asyncio.wait_for(loop.sock_recv(s, 100), 5) == b""
    assert 0.9 < loop.time() - opened < 5
    await asyncio.sleep(0.1)
    assert "127.0.0.2" not in dev.http.server.per_address
    for s in [*held, extra]:
        s.close()


class _LegacyFileServer(FileServer):
    """A file server from before TLS transfers: BeginGet/BeginPut know no ``transport``."""

    @action
    async def BeginGet(self, path: str, checksum: bool = False) -> dict[str, str]:
        return {k: v for k, v in (await super().BeginGet(path, checksum)).items() if k != "transport"}

    @action
    async def BeginPut(self, path: str, size: int, sha256: str, overwrite: bool = False) -> dict[str, str]:
        return {k: v for k, v in (await super().BeginPut(path, size, sha256, overwrite)).items()
                if k != "transport"}


async def test_plain_http_for_legacy_peers_and_only_if_allowed(home: dict, tmp_path: Path,
                                                               free_udp_port: int) -> None:
    cp = await home["paired"]()
    server: FileServer = home["server"]
    async with FileClient.connect(cp, home["dev"].device_id, tls=False) as files:
        await files.get("/pub/big.bin", tmp_path / "plain.bin")  # a client that asks for plain HTTP
        assert files.transport == "http"
        server.require_tls = True  # ... unless the server serves files inside TLS only
        with pytest.raises(IGRSError) as err:
            await files.get("/pub/big.bin", tmp_path / "refused.bin")
        assert error_code(err.value) == ReturnCode.FORBIDDEN
    async with FileClient.connect(cp, home["dev"].device_id) as files:
        await files.get("/pub/big.bin", tmp_path / "tls.bin")
        assert files.transport == "tls"
    # a legacy server: the client falls back to plain HTTP, unless it requires TLS
    share = tmp_path / "legacy"
    share.mkdir()
    (share / "f.txt").write_text("legacy bytes")
    pins: list[str] = []
    async with Device(name="Old", interfaces=LO, port=free_udp_port, http_port=0, on_pin=pins.append,
                      watch_interfaces=False) as old:
        legacy = _LegacyFileServer([SharedFolder("s", share)])
        old.add_service(legacy)
        old.http.mount("/files/", legacy.handle_http)
        await pair_with(cp, old, pins)
        async with FileClient.connect(cp, old.device_id) as files:
            await files.get("/s/f.txt", tmp_path / "legacy.txt")
            assert files.transport == "http" and (tmp_path / "legacy.txt").read_text() == "legacy bytes"
        async with FileClient.connect(cp, old.device_id, tls=True) as files:
            with pytest.raises(TransferFailed) as failed:
                await files.get("/s/f.txt", tmp_path / "strict.txt")
            assert failed.value.return_code == ReturnCode.FORBIDDEN
