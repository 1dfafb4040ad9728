"""The message path without waiting, on both ends: the node relays a message to a connected
party from its cached route (igrs.relay.server.RelayNode.handle_now), the client handles
frames in its link's read callback (igrs.relay.clientlink). Real TLS on 127.0.0.1."""

from __future__ import annotations

import asyncio
import time

import pytest
from relay_helpers import World

from igrs.relay import RelayCode, RelayError


async def test_a_burst_arrives_in_order_and_in_few_wake_ups(world: World) -> None:
    alice = await world.user("alice")
    a = await world.connect(alice)
    tv = await world.owned_device(a, "tv")
    t = await world.connect(tv)
    for i in range(300):  # one loop turn, one TLS write; within the rate burst (400)
        await a.send(tv.principal, f"m{i}", wait=False)
    got: list[str] = []
    calls = 0
    while len(got) < 300:
        got += [m.text for m in await t.receive_many(timeout=5)]
        calls += 1
    assert got == [f"m{i}" for i in range(300)]
    assert calls < 150, f"{calls} wake-ups for 300 messages: not batched"
    assert a.errors.empty()


async def test_cached_route_ends_with_the_relation(world: World) -> None:
    """Once messages flow (the route is cached), an unbind on this node stops them at once."""
    alice = await world.user("alice")
    a = await world.connect(alice)
    tv = await world.owned_device(a, "tv")
    t = await world.connect(tv)
    for i in range(20):
        await a.send(tv.principal, f"before {i}", wait=False)
    assert (await a.send(tv.principal, "with receipt"))["status"] == "delivered"
    assert len([await t.receive(timeout=5) for _ in range(21)]) == 21
    await a.request("unbind", device=str(tv.principal))
    await a.send(tv.principal, "after", wait=False)  # refused: an ERROR, not a delivery
    err = await asyncio.wait_for(a.errors.get(), 5)
    assert err.code == RelayCode.FORBIDDEN
    with pytest.raises(RelayError) as e:
        await a.send(tv.principal, "after, with receipt")
    assert e.value.code == RelayCode.FORBIDDEN
    with pytest.raises(TimeoutError):
        await t.receive(timeout=0.3)


async def test_a_pending_request_fails_as_soon_as_the_link_is_lost(world: World) -> None:
    alice = await world.user("alice")
    a = await world.connect(alice, reconnect=False, request_timeout=30)
    (conn,) = world.node._local[alice.principal.uuid]
    assert conn.transport is not None
    conn.transport.pause_reading()  # the node will not answer what comes next
    pending = asyncio.ensure_future(a.request("whoami"))
    await asyncio.sleep(0.2)
    assert not pending.done()
    t0 = time.monotonic()
    conn.abort()  # the relay drops the connection
    with pytest.raises(RelayError):
        await asyncio.wait_for(pending, 10)
    assert time.monotonic() - t0 < 10  # not at the request timeout (30 s)
