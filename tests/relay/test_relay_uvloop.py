"""The relay node and client on uvloop (``igrs relay serve --loop auto`` takes it when
installed): uvloop's transports are not ``asyncio.Transport`` subclasses and it has its own
TLS layer, which the node's TLS over MemoryBIO (igrs.relay.tlslink) does not use."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from relay_helpers import RawConn, World, make_node

from igrs.relay import Limits
from igrs.relay.errors import RelayCode
from igrs.relay.frames import Frame, FrameType

uvloop = pytest.importorskip("uvloop", reason="uvloop is in the test extra (igrs[uvloop])")


async def scenario(state: Path) -> None:
    assert type(asyncio.get_running_loop()).__module__.startswith("uvloop")
    async with make_node(state, Limits(flood_rate=100, flood_burst=200)) as node:
        w = World(node)
        try:
            u = await w.user("alice")  # registration: a request before AUTH
            a = await w.connect(u)
            d = await w.owned_device(a, "tv")  # bind: a request that writes
            tv = await w.connect(d)
            assert d.principal is not None
            for i in range(150):  # several frames per TLS record and per read
                await a.send(d.principal, f"m{i}", wait=False)
            assert [(await tv.receive(timeout=5)).text for _ in range(150)] == [
                f"m{i}" for i in range(150)]
            assert (await a.send(d.principal, "receipt"))["status"] == "delivered"
            assert (await tv.receive(timeout=5)).text == "receipt"
            raw = await RawConn.open(node)  # a flood: the GOAWAY arrives before the close
            await raw.auth(u)
            raw.send(Frame(FrameType.PING).encode() * 400)
            code, _ = await raw.goaway()
            assert code == RelayCode.FLOOD
            await a.send(d.principal, "still here")
            assert (await tv.receive(timeout=5)).text == "still here"
        finally:
            await w.close()


def test_relay_on_uvloop(tmp_path: Path) -> None:
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(asyncio.wait_for(scenario(tmp_path / "state"), 30))
