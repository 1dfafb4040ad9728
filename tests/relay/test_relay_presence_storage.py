"""Presence (clean and unclean disconnects) and offline storage across a relay restart."""

from __future__ import annotations

import asyncio
from pathlib import Path

from relay_helpers import World, make_node

from igrs.relay import PresenceEvent, RelayClient


async def next_presence(c: RelayClient) -> PresenceEvent:
    return await asyncio.wait_for(c.presence.get(), 5)


async def test_presence_query_and_notifications(world: World) -> None:
    alice = await world.user()
    a = await world.connect(alice)
    tv = await world.owned_device(a, "tv")
    snapshot = await a.subscribe_presence()
    assert snapshot == {str(tv.principal): False}
    t = await world.connect(tv)
    assert await next_presence(a) == PresenceEvent(tv.principal, True)
    assert (await a.query_presence([tv.principal]))["online"] == {str(tv.principal): True}
    # clean goodbye
    await t.close()
    assert await next_presence(a) == PresenceEvent(tv.principal, False)
    # unclean: the connection dies without a goodbye
    t2 = await world.connect(tv)
    assert await next_presence(a) == PresenceEvent(tv.principal, True)
    t2.abort()
    assert await next_presence(a) == PresenceEvent(tv.principal, False)
    assert (await a.query_presence())["online"] == {str(tv.principal): False}


async def test_device_sees_its_owner_and_friends_see_each_other(world: World) -> None:
    alice, bob = await world.user("alice"), await world.user("bob")
    a = await world.connect(alice)
    b = await world.connect(bob)
    await a.request("friend_request", user=str(bob.principal))
    await b.request("friend_respond", user=str(alice.principal), accept=True)
    tv = await world.owned_device(a, "tv")
    t = await world.connect(tv)
    await t.subscribe_presence()
    await b.subscribe_presence()
    await a.close()
    assert await next_presence(t) == PresenceEvent(alice.principal, False)
    assert await next_presence(b) == PresenceEvent(alice.principal, False)
    assert b.presence.empty()  # bob is not related to the tv, so saw nothing about it


async def test_two_connections_of_one_principal_presence_goes_offline_after_both(
    world: World,
) -> None:
    alice = await world.user()
    a = await world.connect(alice)
    tv = await world.owned_device(a, "tv")
    await a.subscribe_presence()
    t1 = await world.connect(tv)
    assert await next_presence(a) == PresenceEvent(tv.principal, True)
    t2 = await world.connect(tv)
    await a.send(tv.principal, "both get it")
    assert (await t1.receive(timeout=5)).text == "both get it"
    assert (await t2.receive(timeout=5)).text == "both get it"
    t1.abort()
    t2.abort()
    assert await next_presence(a) == PresenceEvent(tv.principal, False)
    assert a.presence.empty()


async def test_offline_storage_survives_restart_and_is_at_least_once(tmp_path: Path) -> None:
    state = tmp_path / "state"
    node = make_node(state)
    await node.start()
    port, fp = node.port, node.fingerprint
    w = World(node)
    alice = await w.user()
    a = await w.connect(alice)
    tv = await w.owned_device(a, "tv")
    receipts = [await a.send(tv.principal, f"m{i}", durable=True) for i in range(3)]
    assert [r["status"] for r in receipts if r] == ["stored"] * 3
    await w.close()
    await node.close(abort=True)  # crash: no goodbye

    node2 = make_node(state, port=port)
    await node2.start()
    try:
        assert node2.fingerprint == fp  # same certificate from the state dir
        w2 = World(node2)
        # first connection takes the messages but does not acknowledge them
        t = await w2.connect(tv, auto_ack=False)
        got = [await t.receive(timeout=5) for _ in range(3)]
        assert [m.text for m in got] == ["m0", "m1", "m2"] and all(m.stored for m in got)
        assert got[0].source == alice.principal
        t.abort()
        # ... so they come again; this time acknowledged
        t = await w2.connect(tv)
        again = [await t.receive(timeout=5) for _ in range(3)]
        assert [m.id for m in again] == [m.id for m in got]
        await t.request("whoami")  # round trip: the ACKs were processed before this answer
        assert await node2.backbone.mailbox.pending(tv.principal, 10) == []
        await w2.close()
    finally:
        await node2.close()


async def test_durable_to_online_target_is_delivered_and_acked(world: World) -> None:
    alice = await world.user()
    a = await world.connect(alice)
    tv = await world.owned_device(a, "tv")
    t = await world.connect(tv)
    r = await a.send(tv.principal, "now", durable=True)
    assert r is not None and r["status"] == "delivered"
    m = await t.receive(timeout=5)
    assert m.stored and m.id == r["id"]
    await t.request("whoami")
    assert await world.node.backbone.mailbox.pending(tv.principal, 10) == []


async def test_more_stored_messages_than_one_push_batch(world: World) -> None:
    from igrs.relay import server

    alice = await world.user()
    a = await world.connect(alice)
    tv = await world.owned_device(a, "tv")
    n = server.MAIL_BATCH + 10
    for i in range(n):
        await a.send(tv.principal, f"{i}", durable=True, wait=False)
    await a.request("whoami")  # all stored once this answer arrives
    t = await world.connect(tv)
    got = [int((await t.receive(timeout=5)).text) for _ in range(n)]
    assert got == list(range(n))
