"""Limits and bad frames: each closes or refuses with a clear code, affecting no one else."""

from __future__ import annotations

import asyncio
import struct
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from relay_helpers import RawConn, World, make_node
from support import closing

from igrs.relay import Limits, RelayClient, RelayCode, RelayError
from igrs.relay.frames import Frame, FrameType

LIMITS = Limits(
    max_connections=12,
    max_connections_per_principal=2,
    max_frame_payload=4096,
    message_rate=20,
    message_burst=20,
    flood_rate=200,
    flood_burst=300,
    max_stored_per_party=3,
    auth_timeout=0.5,
    max_send_buffer=8192,
)


@pytest.fixture
async def lworld(tmp_path: Path) -> AsyncIterator[World]:
    async with make_node(tmp_path / "s", LIMITS) as n, closing(World(n)) as w:
        yield w


async def bystander(w: World) -> tuple[RelayClient, RelayClient]:
    """A user and a bound device, connected: must keep working through others' faults."""
    u = await w.user("bystander")
    a = await w.connect(u)
    d = await w.owned_device(a, "bystander-tv")
    return a, await w.connect(d)


async def still_works(a: RelayClient, d: RelayClient) -> None:
    assert d.principal is not None
    await a.send(d.principal, "still here")
    assert (await d.receive(timeout=5)).text == "still here"


def header(version: int = 1, ftype: int = FrameType.PING, length: int = 0) -> bytes:
    return struct.pack(">BBHQ16s16sI", version, ftype, 0, 7, b"\0" * 16, b"\0" * 16, length)


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (header(version=2), RelayCode.VERSION),
        (header(ftype=0x7F), RelayCode.BAD_FRAME),
        (header(ftype=FrameType.DELIVER), RelayCode.BAD_FRAME),  # server-only type
        (header(length=LIMITS.max_frame_payload + 1), RelayCode.TOO_LARGE),
        (header(ftype=FrameType.MESSAGE, length=3) + b"abc", RelayCode.NOT_AUTHENTICATED),
        (Frame(FrameType.AUTH, payload=b"not json").encode(), RelayCode.BAD_FRAME),
        (Frame(FrameType.AUTH, payload=b'{"id":"x","token":"y"}').encode(), RelayCode.NOT_AUTHENTICATED),
        (header() * 1000, RelayCode.FLOOD),
    ],
    ids=[
        "version",
        "unknown-type",
        "wrong-direction",
        "oversize",
        "before-auth",
        "auth-not-json",
        "auth-bad-id",
        "flood",
    ],
)
async def test_bad_frames_close_only_that_connection(lworld: World, data: bytes, code: RelayCode) -> None:
    a, d = await bystander(lworld)
    raw = await RawConn.open(lworld.node)
    raw.send(data)
    got, reason = await raw.goaway()
    assert got == code, reason
    assert reason
    await still_works(a, d)


async def test_truncated_frame_at_end_of_stream(lworld: World) -> None:
    a, d = await bystander(lworld)
    raw = await RawConn.open(lworld.node)
    raw.send(header(length=100) + b"only part")
    await raw.writer.drain()
    raw.writer.close()
    for _ in range(100):
        if lworld.node.stats[f"goaway.{int(RelayCode.BAD_FRAME)}"]:
            break
        await asyncio.sleep(0.02)
    assert lworld.node.stats[f"goaway.{int(RelayCode.BAD_FRAME)}"] == 1
    await still_works(a, d)


async def test_bad_message_payload_and_flood_after_auth(lworld: World) -> None:
    a, d = await bystander(lworld)
    u = await lworld.user("mallory")
    raw = await RawConn.open(lworld.node)
    await raw.auth(u)
    raw.send(
        Frame(
            FrameType.MESSAGE,
            id=5,
            target=d.principal.uuid,  # type: ignore[union-attr]
            payload=b"\xff",
        ).encode()
    )  # namespace length 255, no bytes: malformed
    code, reason = await raw.goaway()
    assert code == RelayCode.BAD_FRAME and "payload" in reason
    raw = await RawConn.open(lworld.node)
    await raw.auth(u)
    raw.send(Frame(FrameType.PING).encode() * 2000)
    code, _ = await raw.goaway()
    assert code == RelayCode.FLOOD
    await still_works(a, d)


async def test_auth_timeout(lworld: World) -> None:
    raw = await RawConn.open(lworld.node)
    code, reason = await raw.goaway(timeout=5)
    assert code == RelayCode.TIMEOUT and "AUTH" in reason


async def test_message_size_cap(lworld: World) -> None:
    a, d = await bystander(lworld)
    assert d.principal is not None
    with pytest.raises(RelayError) as e:  # the client knows the cap from AUTH_OK
        await a.send(d.principal, b"x" * 5000)
    assert e.value.code == RelayCode.TOO_LARGE
    await a.send(d.principal, b"x" * 4000)
    assert len((await d.receive(timeout=5)).body) == 4000


async def test_rate_limit_is_per_principal_and_not_fatal(tmp_path: Path) -> None:
    limits = Limits(message_rate=0.001, message_burst=3)  # no refill during the test
    async with make_node(tmp_path / "r", limits) as node:
        w = World(node)
        try:
            u = await w.user()
            a = await w.connect(u)  # register + bind use requests: spend the burst first
            tv = await w.device("tv", code="code-tv")
            t = await w.connect(tv)
            a2 = await w.connect(u)
            await a.bind(tv.principal, "code-tv")
            await a.send(tv.principal, "1")
            await a2.send(tv.principal, "2")  # same user, other connection: same bucket
            with pytest.raises(RelayError) as e:
                await a2.send(tv.principal, "3")
            assert e.value.code == RelayCode.RATE_LIMITED
            with pytest.raises(RelayError) as e:
                await a.send(tv.principal, "4")
            assert e.value.code == RelayCode.RATE_LIMITED
            assert u.principal is not None
            await t.send(u.principal, "the device has its own bucket")
            assert (await a.receive(timeout=5)).text == "the device has its own bucket"
            assert [(await t.receive(timeout=5)).text for _ in range(2)] == ["1", "2"]
        finally:
            await w.close()


async def test_stored_message_cap(lworld: World) -> None:
    u = await lworld.user()
    a = await lworld.connect(u)
    tv = await lworld.owned_device(a, "tv")
    for i in range(LIMITS.max_stored_per_party):
        await a.send(tv.principal, f"{i}", durable=True)
    with pytest.raises(RelayError) as e:
        await a.send(tv.principal, "one too many", durable=True)
    assert e.value.code == RelayCode.STORAGE_FULL


async def test_max_connections_and_per_principal(tmp_path: Path) -> None:
    limits = Limits(max_connections=8, max_connections_per_principal=2)
    async with make_node(tmp_path / "c", limits) as node:
        w = World(node)
        raws: list[RawConn] = []
        try:
            u = await w.user()
            await w.connect(u)
            await w.connect(u)
            with pytest.raises(RelayError) as e:
                await w.connect(u, reconnect=False)
            assert e.value.code == RelayCode.SERVER_FULL
            for _ in range(limits.max_connections - 2):
                raws.append(await RawConn.open(node))
            for _ in range(200):
                if node.connection_count >= limits.max_connections:
                    break
                await asyncio.sleep(0.01)
            extra = await RawConn.open(node)
            code, reason = await extra.goaway()
            assert code == RelayCode.SERVER_FULL and "max connections" in reason
        finally:
            for r in raws:
                r.close()
            await w.close()


async def test_slow_reader_gets_no_more_than_its_buffer(tmp_path: Path) -> None:
    """A target that stops reading: senders get TARGET_BUSY instead of unbounded buffering."""
    limits = Limits(max_send_buffer=16 * 1024, message_rate=1e6, message_burst=1e6)
    async with make_node(tmp_path / "b", limits) as node:
        w = World(node)
        try:
            u = await w.user()
            a = await w.connect(u)
            tv = await w.owned_device(a, "tv")
            raw = await RawConn.open(node, rcvbuf=4096)
            await raw.auth(tv)  # authenticated, then never reads again
            busy = None
            for _ in range(5000):
                try:
                    await a.send(tv.principal, b"y" * 16000)
                except RelayError as e:
                    busy = e
                    break
            assert busy is not None and busy.code == RelayCode.TARGET_BUSY, busy
            raw.close()
        finally:
            await w.close()
