"""A transfer whose server stops moving bytes ends with TimeoutError after the client's stall
timeout (one timer per transfer, specs/file-profile.md §6), keeping what arrived for the next
run; inside TLS and in plain HTTP alike."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest
from aiohttp import web
from pairing import pair_with

from igrs import ControlPoint, Device
from igrs.net.tls import TlsEndpoint
from igrs.profiles.file import FileServer, SharedFolder
from igrs.profiles.file.client import FileClient

LO = ["lo"]
pytestmark = pytest.mark.timeout(60)
SIZE = 4_000_000


class _StallingFileServer(FileServer):
    """Sends the first 1 MB of a download, then nothing; never answers an upload."""

    async def handle_http(self, request: web.BaseRequest) -> web.StreamResponse:
        if request.method == "GET":
            resp = web.StreamResponse(headers={"Content-Length": str(SIZE)})
            await resp.prepare(request)
            await resp.write(b"x" * 1_000_000)
        else:
            await request.content.read()
        await asyncio.Event().wait()  # stalled
        raise AssertionError("unreachable")


@pytest.mark.parametrize("tls", [True, False], ids=["tls", "plain"])
async def test_a_stalled_transfer_times_out(tmp_path: Path, free_udp_port: int, tls: bool) -> None:
    share = tmp_path / "share"
    share.mkdir()
    (share / "big.bin").write_bytes(os.urandom(SIZE))
    (tmp_path / "up.bin").write_bytes(os.urandom(200_000))
    pins: list[str] = []
    async with Device(name="PC", interfaces=LO, port=free_udp_port, http_port=0, on_pin=pins.append,
                      watch_interfaces=False) as dev, \
            ControlPoint(interfaces=LO, port=free_udp_port, keepalive_interval=0) as cp:
        stalling = _StallingFileServer([SharedFolder("s", share, writable=True)])
        dev.add_service(stalling)  # as attach_file_server does
        dev.http.mount("/files/", stalling.handle_http)
        stalling.serve_tls(lambda: TlsEndpoint(dev.http, lambda: dev.identity, dev.keystore.peer_key))
        await pair_with(cp, dev, pins)
        async with FileClient.connect(cp, dev.device_id, tls=tls, stall_timeout=0.5) as files:
            loop = asyncio.get_running_loop()
            started = loop.time()
            with pytest.raises(TimeoutError):
                await files.get("/s/big.bin", tmp_path / "big.bin")
            assert 0.4 < loop.time() - started < 5
            assert files.transport == ("tls" if tls else "http")
            assert (tmp_path / "big.bin.igrs-part").stat().st_size == 1_000_000  # kept for the next run
            with pytest.raises(TimeoutError):
                await files.put(tmp_path / "up.bin", "/s/up.bin")
            assert not asyncio.current_task().cancelling()  # type: ignore[union-attr]
