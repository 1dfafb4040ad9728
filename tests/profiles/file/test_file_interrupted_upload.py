"""Regression: the bytes of an upload that arrived before the connection broke are kept, so
``BeginPut`` again resumes after the last byte received (they used to be dropped with the
server's unwritten read buffer, up to 1 MiB: a 200 KB upload cut at 150 KB resumed at 0)."""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path

import pytest
from pairing import pair_with

from igrs import ControlPoint, Device
from igrs.profiles.file import SharedFolder, attach_file_server
from igrs.profiles.file.client import FileClient

LO = ["lo"]
pytestmark = pytest.mark.timeout(60)


async def test_bytes_received_before_a_disconnect_are_kept(tmp_path: Path, free_udp_port: int) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    data = bytes(range(256)) * 800  # 204 800 bytes, far below the server's 1 MiB write buffer
    cut = 150_000
    digest = hashlib.sha256(data).hexdigest()
    pins: list[str] = []
    async with Device(name="PC", interfaces=LO, port=free_udp_port, http_port=0, on_pin=pins.append,
                      watch_interfaces=False) as dev, \
            ControlPoint(interfaces=LO, port=free_udp_port, keepalive_interval=0) as cp:
        attach_file_server(dev, [SharedFolder("inbox", inbox, writable=True)])
        await pair_with(cp, dev, pins)
        async with FileClient.connect(cp, dev.device_id) as files:
            info = await files.proxy.BeginPut(path="/inbox/f.bin", size=len(data), sha256=digest)
            host, port = files.base_url.split("//", 1)[1].rsplit(":", 1)
            _, writer = await asyncio.open_connection(host, int(port))
            writer.write(f"PUT {info['url']} HTTP/1.1\r\nHost: {host}:{port}\r\nUpload-Offset: 0\r\n"
                         f"Content-Length: {len(data)}\r\n\r\n".encode() + data[:cut])
            await writer.drain()
            await asyncio.sleep(0.3)
            writer.close()
            offset = -1
            for _ in range(50):  # until the server has seen the disconnect (at once, unless loaded)
                await asyncio.sleep(0.1)
                again = await files.proxy.BeginPut(path="/inbox/f.bin", size=len(data), sha256=digest)
                offset = int(again["offset"])
                if offset == cut:
                    break
            assert not (inbox / "f.bin").exists()
            assert offset == cut
            src = tmp_path / "f.bin"
            src.write_bytes(data)
            resumed: list[int] = []
            await files.put(src, "/inbox/f.bin", on_resume=resumed.append)
            assert resumed == [cut] and (inbox / "f.bin").read_bytes() == data
