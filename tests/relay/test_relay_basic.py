"""End-to-end over real TLS/TCP on 127.0.0.1: accounts, relationships, message modes."""

from __future__ import annotations

import asyncio

import pytest
from relay_helpers import World

from igrs.relay import Principal, RelayClient, RelayCode, RelayError, register_user


async def test_point_to_point_between_user_and_bound_device(world: World) -> None:
    alice = await world.user("alice")
    a = await world.connect(alice)
    tv = await world.owned_device(a, "tv")
    t = await world.connect(tv)
    receipt = await a.send(tv.principal, "hello tv", namespace="urn:example:chat")
    assert receipt == {"status": "delivered"}
    msg = await t.receive(timeout=5)
    assert msg.source == alice.principal
    assert (msg.namespace, msg.body, msg.stored) == ("urn:example:chat", b"hello tv", False)
    await t.send(alice.principal, b"\x00\x01binary")
    back = await a.receive(timeout=5)
    assert back.source == tv.principal and back.body == b"\x00\x01binary"


async def test_unrelated_parties_are_refused(world: World) -> None:
    alice, bob = await world.user("alice"), await world.user("bob")
    a = await world.connect(alice)
    await world.connect(bob)
    with pytest.raises(RelayError) as e:
        await a.send(bob.principal, "hi")
    assert e.value.code == RelayCode.FORBIDDEN
    # presence of an unrelated party is not disclosed
    r = await a.query_presence([bob.principal])
    assert r == {"online": {}, "refused": [str(bob.principal)]}


async def test_bind_needs_the_verification_code(world: World) -> None:
    alice = await world.user()
    a = await world.connect(alice)
    tv = await world.device("tv", code="right-code")
    with pytest.raises(RelayError) as e:
        await a.bind(tv.principal, "wrong-code")
    assert e.value.code == RelayCode.FORBIDDEN
    await a.bind(tv.principal, "right-code")
    with pytest.raises(RelayError) as e:
        await a.bind(tv.principal, "right-code")
    assert e.value.code == RelayCode.CONFLICT
    rel = await a.request("relations")
    assert rel["relations"] == {"owns": [str(tv.principal)]}
    await a.request("unbind", device=str(tv.principal))
    assert (await a.request("relations"))["relations"] == {}
    with pytest.raises(RelayError):
        await a.send(tv.principal, "x")


async def test_device_is_notified_when_bound(world: World) -> None:
    tv = await world.device("tv", code="abcd-7")
    t = await world.connect(tv)
    alice = await world.user()
    a = await world.connect(alice)
    await a.bind(tv.principal, "abcd-7")
    note = await asyncio.wait_for(t.notifications.get(), 5)
    assert note == {"event": "bound", "user": str(alice.principal)}


async def test_friendship_request_accept_and_deny(world: World) -> None:
    alice, bob, carol = await world.user("alice"), await world.user("bob"), await world.user("c")
    a = await world.connect(alice)
    b = await world.connect(bob)
    c = await world.connect(carol)
    assert (await a.request("friend_request", user=str(bob.principal)))["state"] == "friend_out"
    note = await asyncio.wait_for(b.notifications.get(), 5)
    assert note == {"event": "friend_request", "from": str(alice.principal)}
    with pytest.raises(RelayError):  # pending is not a relationship yet
        await a.send(bob.principal, "too early")
    await b.request("friend_respond", user=str(alice.principal), accept=True)
    assert (await asyncio.wait_for(a.notifications.get(), 5))["event"] == "friend_accepted"
    assert (await a.send(bob.principal, "friends now"))["status"] == "delivered"
    assert (await b.receive(timeout=5)).text == "friends now"
    await c.request("friend_request", user=str(alice.principal))
    await a.request("friend_respond", user=str(carol.principal), accept=False)
    assert (await asyncio.wait_for(c.notifications.get(), 5))["event"] == "friend_denied"
    with pytest.raises(RelayError):
        await c.send(alice.principal, "denied")


async def test_device_to_device_link(world: World) -> None:
    alice = await world.user()
    a = await world.connect(alice)
    tv, pc = await world.owned_device(a, "tv"), await world.owned_device(a, "pc")
    t, p = await world.connect(tv), await world.connect(pc)
    with pytest.raises(RelayError):
        await t.send(pc.principal, "not linked yet")
    await a.request("link", a=str(tv.principal), b=str(pc.principal))
    await t.send(pc.principal, "linked")
    assert (await p.receive(timeout=5)).source == tv.principal


async def test_point_to_multipoint_all_devices_of_a_user(world: World) -> None:
    alice = await world.user()
    a = await world.connect(alice)
    devs = [await world.owned_device(a, n) for n in ("tv", "pc", "pad")]
    clients = [await world.connect(d) for d in devs[:2]]  # pad stays offline
    r = await a.multicast("to all", user=alice.principal)
    assert sorted(r["delivered"]) == sorted(str(d.principal) for d in devs[:2])
    assert r["offline"] == [str(devs[2].principal)]
    for c in clients:
        assert (await c.receive(timeout=5)).text == "to all"
    # an explicit set, durable: the offline one gets it stored
    r = await a.multicast("set", targets=[devs[0].principal, devs[2].principal], durable=True)
    assert r["delivered"] == [str(devs[0].principal)] and r["stored"] == [str(devs[2].principal)]
    pad = await world.connect(devs[2])
    m = await pad.receive(timeout=5)
    assert m.text == "set" and m.stored


async def test_message_to_offline_party_without_durable_is_an_error(world: World) -> None:
    alice = await world.user()
    a = await world.connect(alice)
    tv = await world.owned_device(a, "tv")
    with pytest.raises(RelayError) as e:
        await a.send(tv.principal, "x")
    assert e.value.code == RelayCode.TARGET_OFFLINE


async def test_online_storage_items(world: World) -> None:
    alice, bob, eve = await world.user("alice"), await world.user("bob"), await world.user("e")
    a, b, e = await world.connect(alice), await world.connect(bob), await world.connect(eve)
    await a.request("friend_request", user=str(bob.principal))
    await b.request("friend_respond", user=str(alice.principal), accept=True)
    await a.item_put("playlist", b"song1,song2", readers=[bob.principal])
    assert await a.item_get("playlist") == b"song1,song2"
    assert await b.item_get("playlist", owner=alice.principal) == b"song1,song2"
    with pytest.raises(RelayError) as err:
        await e.item_get("playlist", owner=alice.principal)
    assert err.value.code == RelayCode.FORBIDDEN
    with pytest.raises(RelayError):  # readers must be related
        await a.item_put("x", b"1", readers=[eve.principal])
    assert (await a.request("item_list"))["keys"] == ["playlist"]
    await a.request("item_delete", key="playlist")
    with pytest.raises(RelayError) as err:
        await a.item_get("playlist")
    assert err.value.code == RelayCode.NOT_FOUND


async def test_bad_token_and_unknown_principal_are_refused(world: World) -> None:
    alice = await world.user()
    for principal, token in ((alice.principal, "wrong"), (Principal.user(), alice.token)):
        c = RelayClient(world.address, principal=principal, token=token, reconnect=False, **world.tls)
        with pytest.raises(RelayError) as e:
            await c.connect()
        assert e.value.code == RelayCode.NOT_AUTHENTICATED


async def test_wrong_fingerprint_is_refused(world: World) -> None:
    bad = "00" * 32
    with pytest.raises(Exception, match="pin"):
        await register_user(world.address, "x", fingerprint=bad)


async def test_ca_file_verification(world: World) -> None:
    assert world.node.cert_file is not None
    p, token = await register_user(
        world.address, "ca", cafile=world.node.cert_file, server_hostname="localhost"
    )
    assert p.is_user and token


async def test_whoami_and_token_is_stored_hashed(world: World) -> None:
    alice = await world.user("alice")
    a = await world.connect(alice)
    me = await a.request("whoami")
    assert me["id"] == str(alice.principal) and me["name"] == "alice"
    raw = await world.node.backbone.kv.get(f"acct.{alice.principal.key}")
    assert raw is not None and alice.token.encode() not in raw
