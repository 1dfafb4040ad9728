"""Delivery semantics over XMPP (specs/relay-xmpp.md, "Delivery"): send() reports delivered /
stored / refused as the relay does; NORMAL messages survive a crash and a fresh login inside
the resume window, and a server restart; the client fails over to the next server address.
The server-side cluster (two ejabberd nodes) is tests/xmpp/test_xmpp_cluster.py's (xmppb)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from servers import LOOPBACK, RESUME_WINDOW, ProsodyServer
from xmpp_helpers import XWorld, until

from igrs.relay.errors import RelayError
from igrs.xmpp.client import XmppClient

pytestmark = pytest.mark.timeout(90)


async def drain(c: XmppClient, quiet: float) -> list[bytes]:
    got: list[bytes] = []
    with contextlib.suppress(TimeoutError):
        while True:
            got.append((await c.receive(quiet)).body)
    return got


async def test_send_reports_delivered_stored_refused(xw: XWorld) -> None:
    alice, tv, stranger = await xw.client(), await xw.client(user=False), await xw.client()
    await xw.befriend(alice, tv)
    assert await alice.send(tv.principal, b"live") == {"status": "delivered"}
    assert await alice.send(tv.principal, b"live", durable=True) == {"status": "delivered"}
    await tv.close()
    await until(lambda: alice.known_offline(tv.jid))
    assert await alice.send(tv.principal, b"kept", durable=True) == {"status": "stored"}
    with pytest.raises(RelayError) as ei:
        await alice.send(tv.principal, b"lost")
    assert ei.value.code == 410
    with pytest.raises(RelayError) as ei:
        await stranger.send(tv.principal, b"x", durable=True)
    assert ei.value.code == 403


async def test_fresh_login_inside_resume_window_loses_nothing(xw: XWorld) -> None:
    """A crashed device's session hibernates (XEP-0198); messages sent meanwhile go to it. A
    fresh login (not a resumption) gets them from the MAM archive, each exactly once, also
    after the hibernated session expires and the server re-routes what it held."""
    alice, tv = await xw.client(), await xw.client(user=False)
    await xw.befriend(alice, tv)
    alice.receipt_timeout = 0.5
    tv.abort()  # a crash: no goodbye, no resumption
    assert await alice.send(tv.principal, b"m1", durable=True) == {"status": "stored"}
    assert await alice.send(tv.principal, b"m2", durable=True) == {"status": "stored"}
    tv2 = await xw.client(tv.principal)  # the restarted device, inside the resume window
    assert await drain(tv2, 1.0) == [b"m1", b"m2"]
    await asyncio.sleep(RESUME_WINDOW + 1)  # the old session expires: nothing twice
    assert await drain(tv2, 0.5) == []


async def test_offline_storage_across_server_restart(xw: XWorld) -> None:
    alice, tv = await xw.client(), await xw.client(user=False)
    await xw.befriend(alice, tv)
    await tv.close()
    await until(lambda: alice.known_offline(tv.jid))
    assert await alice.send(tv.principal, b"kept", durable=True) == {"status": "stored"}
    await alice.close()
    xw.server.restart()
    tv2 = await xw.client(tv.principal, catchup=0.0)  # offline storage alone, no archive replay
    assert await drain(tv2, 1.0) == [b"kept"]


@pytest.fixture
async def two_prosody() -> AsyncIterator[tuple[ProsodyServer, ProsodyServer, Path]]:
    """Two Prosody processes on one data directory and one certificate: one service, two
    addresses (a CA file of two self-signed certificates of one name does not verify)."""
    a = ProsodyServer(resume_window=RESUME_WINDOW)
    b = ProsodyServer(resume_window=RESUME_WINDOW, data_dir=a.data_dir)
    b.cert.write_bytes(a.cert.read_bytes())
    b.key.write_bytes(a.key.read_bytes())
    try:
        a.start()
        b.start()
        yield a, b, a.cert
    finally:
        a.close()
        b.close()


async def test_client_fails_over_to_the_next_server(two_prosody: tuple[ProsodyServer, ProsodyServer, Path]
                                                   ) -> None:
    a, b, bundle = two_prosody
    w = XWorld(a)
    try:
        alice, tv = await w.client(), await w.client(user=False)
        await w.befriend(alice, tv)
        await alice.close()
        tv.servers = [(LOOPBACK, a.c2s_port), (LOOPBACK, b.c2s_port)]
        alice_b = XmppClient(alice.principal, w.passwords[alice.principal], domain=b.domain,
                             servers=[(LOOPBACK, b.c2s_port)], cafile=bundle)
        await alice_b.connect()
        w.clients.append(alice_b)
        a.stop(kill=True)  # the node the TV is on dies
        await until(lambda: tv.connections == 2, 15)
        assert await alice_b.send(tv.principal, b"after failover") == {"status": "delivered"}
        assert (await tv.receive(5)).body == b"after failover"
        assert await tv.send(alice_b.principal, b"back") == {"status": "delivered"}
    finally:
        await w.close()
