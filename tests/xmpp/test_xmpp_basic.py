"""The relay's scenarios over XMPP, on Prosody and on ejabberd (tests/xmpp/servers.py)."""

from __future__ import annotations

import asyncio

import pytest
from servers import RESUME_WINDOW
from xmpp_helpers import XWorld

from igrs.relay.errors import RelayError

pytestmark = pytest.mark.timeout(60)


async def test_register_friends_p2p_both_kinds(xw: XWorld) -> None:
    alice, tv = await xw.client(), await xw.client(user=False)
    await xw.befriend(alice, tv)
    await alice.send(tv.principal, b"realtime", namespace="urn:IGRS:test")
    await alice.send(tv.principal, b"normal", namespace="http://www.igrs.org/av/playto", durable=True)
    got = [await tv.receive(5), await tv.receive(5)]
    assert [(m.source, m.namespace, m.body, m.stored) for m in got] == [
        (alice.principal, "urn:IGRS:test", b"realtime", False),
        (alice.principal, "http://www.igrs.org/av/playto", b"normal", True),
    ]


async def test_wrong_password_refused(xw: XWorld) -> None:
    alice = await xw.client()
    await alice.close()
    xw.passwords[alice.principal] = "wrong"
    with pytest.raises(RelayError):
        await xw.client(alice.principal)


async def test_unrelated_users_message_not_delivered(xw: XWorld) -> None:
    alice, bob, stranger = await xw.client(), await xw.client(), await xw.client()
    await xw.befriend(alice, bob)
    with pytest.raises(RelayError) as ei:  # refused at the sender, as by the relay
        await stranger.send(bob.principal, b"spam")
    assert ei.value.code == 403
    await stranger.send(bob.principal, b"spam", durable=True, wait=False)  # forced out: dropped
    assert await alice.send(bob.principal, b"hello") == {"status": "delivered"}
    m = await bob.receive(5)
    assert (m.source, m.body) == (alice.principal, b"hello")
    with pytest.raises(TimeoutError):
        await bob.receive(0.5)


async def test_presence_clean_and_unclean_disconnect(xw: XWorld) -> None:
    alice, tv, radio = await xw.client(), await xw.client(user=False), await xw.client(user=False)
    await xw.befriend(alice, tv)
    await xw.befriend(alice, radio)
    online = await alice.subscribe_presence()
    assert online == {str(tv.principal): True, str(radio.principal): True}
    while not alice.presence.empty():
        alice.presence.get_nowait()
    await tv.close()
    ev = await asyncio.wait_for(alice.presence.get(), 5)
    assert (ev.principal, ev.online) == (tv.principal, False)
    radio.abort()  # a crash: the server holds the XEP-0198 session for the resume window
    ev = await asyncio.wait_for(alice.presence.get(), RESUME_WINDOW + 6)
    assert (ev.principal, ev.online) == (radio.principal, False)


async def test_multicast_reaches_each_target(xw: XWorld) -> None:
    alice = await xw.client()
    devices = [await xw.client(user=False) for _ in range(3)]
    for d in devices:
        await xw.befriend(alice, d)
    stranger = await xw.client(user=False)
    out = await alice.multicast(b"all", targets=[d.principal for d in (*devices, stranger)],
                                namespace="urn:IGRS:test")
    assert out["via"] == (["fan-out"] if xw.server.kind == "prosody" else [out["via"][0]])
    assert out["via"][0] != "fan-out" or xw.server.kind == "prosody"  # ejabberd: XEP-0033
    assert sorted(out["delivered"]) == sorted(str(d.principal) for d in devices)
    assert out["refused"] == [str(stranger.principal)]
    for d in devices:
        m = await d.receive(5)
        assert (m.source, m.body) == (alice.principal, b"all")
    await devices[0].close()  # to every device of alice's own user: one is offline
    for _ in range(100):
        if alice.known_offline(devices[0].jid):
            break
        await asyncio.sleep(0.02)
    out = await alice.multicast(b"mine", user=alice.principal, durable=True)
    assert sorted(out["delivered"]) == sorted(str(d.principal) for d in devices[1:])
    assert out["stored"] == [str(devices[0].principal)]
    for d in devices[1:]:
        assert (await d.receive(5)).body == b"mine"


async def test_online_storage_readable_only_by_related(xw: XWorld) -> None:
    alice, tv, stranger = await xw.client(), await xw.client(user=False), await xw.client()
    await xw.befriend(alice, tv)
    await alice.item_put("state", b"v1")
    assert await tv.item_get("state", alice.principal) == b"v1"
    with pytest.raises(RelayError):
        await stranger.item_get("state", alice.principal)
