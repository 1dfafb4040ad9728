"""Two-node ejabberd cluster: a node crash, client failover, no stored message lost, presence corrected.

A user on node A talks to a device on node B; A is SIGKILLed. The user's client (given both
addresses) reconnects to B; NORMAL messages sent before, during and after the crash all arrive;
a stored message taken by A for an offline device is delivered from B. A device that had only
A's address stays gone: B never retracts its presence (reference §4), so the observer's
liveness probe (igrs/xmpp/liveness.py) does. Timings are printed (run with -s to see them).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Iterator

import pytest
from cluster import EjabberdCluster
from servers import LOOPBACK, EjabberdServer
from support import closing

from igrs.relay.client import Message, PresenceEvent
from igrs.relay.ids import Principal
from igrs.xmpp.client import XmppClient

pytestmark = pytest.mark.timeout(90)

PROBE_INTERVAL, PROBE_TIMEOUT = 1.0, 2.0  # s, test values (shipped: igrs.xmpp.liveness)
BOUND = 90.0  # s, the relay's dead-device bound (specs/relay.md)


@pytest.fixture(scope="module")
def cluster() -> Iterator[EjabberdCluster]:
    with EjabberdCluster(2) as c:
        yield c


class Parties:
    def __init__(self, cluster: EjabberdCluster) -> None:
        self.cluster = cluster
        self.clients: list[XmppClient] = []

    async def open(self, *nodes: EjabberdServer, principal: Principal | None = None,
                   password: str = "pw") -> XmppClient:  # fmt: skip
        c = XmppClient(principal or Principal.device(), password, domain="localhost",
                       servers=[(LOOPBACK, n.c2s_port) for n in nodes], cafile=self.cluster.nodes[0].cert,
                       register=True, connect_timeout=5)  # fmt: skip
        await c.connect()
        c.liveness.configure(PROBE_INTERVAL, PROBE_TIMEOUT)
        self.clients.append(c)
        return c

    async def close(self) -> None:
        for c in self.clients:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(c.close(), 5)


@pytest.fixture
async def parties(cluster: EjabberdCluster) -> AsyncIterator[Parties]:
    async with closing(Parties(cluster)) as p:
        yield p


async def befriend(a: XmppClient, b: XmppClient) -> None:
    await a.add_friend(b.principal)
    ev = await asyncio.wait_for(friend_request(b), 5)
    assert ev["event"] == "friend_request"
    await b.respond(a.principal, True)
    for _ in range(250):
        if all(x.xmpp.client_roster[y.jid]["subscription"] == "both" for x, y in ((a, b), (b, a))):
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"{a.jid} and {b.jid} not related")


async def friend_request(c: XmppClient) -> dict[str, object]:
    while True:
        ev = await c.notifications.get()
        if ev["event"] == "friend_request":
            return ev


async def presence_of(c: XmppClient, who: Principal, online: bool, timeout: float) -> float:
    """Wait until ``c`` sees ``who`` go online/offline; the monotonic time it did."""
    deadline = time.monotonic() + timeout
    while True:
        ev: PresenceEvent = await asyncio.wait_for(c.presence.get(), max(0.01, deadline - time.monotonic()))
        if ev.principal == who and ev.online == online:
            return time.monotonic()


async def bodies(c: XmppClient, n: int, timeout: float) -> list[bytes]:
    got: list[Message] = []
    for _ in range(n):
        got.append(await c.receive(timeout))
    return [m.body for m in got]


async def test_node_crash_failover_stored_messages_and_stale_presence(parties: Parties) -> None:
    a, b = parties.cluster.nodes
    user = await parties.open(a, b, principal=Principal.user())  # both addresses: A first
    dev_b = await parties.open(b)  # the observer, on B
    dev_a = await parties.open(a)  # only A's address: gone with A
    offline = await parties.open(b)  # will be offline when A takes its message
    for x, y in ((user, dev_b), (dev_b, dev_a), (user, offline)):
        await befriend(x, y)
    assert user.servers[user._server_index % 2][1] == a.c2s_port
    online = await dev_b.subscribe_presence()
    assert online[str(user.principal)] and online[str(dev_a.principal)]

    # Across nodes, both ways, before the crash.
    await user.send(dev_b.principal, b"a->b", durable=True)
    await dev_b.send(user.principal, b"b->a", durable=True)
    assert await bodies(dev_b, 1, 5) == [b"a->b"]
    assert await bodies(user, 1, 5) == [b"b->a"]
    # A stored message taken by node A for a device that is offline.
    await offline.close()
    parties.clients.remove(offline)
    await asyncio.sleep(0.3)
    await user.send(offline.principal, b"stored-by-A", durable=True)
    await asyncio.sleep(0.5)  # A has stored it (Mnesia, replicated) before it dies
    while not dev_b.presence.empty():
        dev_b.presence.get_nowait()

    connections = user.connections
    t_kill = parties.cluster.kill(a)
    # NORMAL messages to the user while its node is dead and while it fails over.
    for i in range(3):
        await dev_b.send(user.principal, f"during-{i}".encode(), durable=True)
        await asyncio.sleep(0.05)
    deadline = time.monotonic() + 15
    while user.connections == connections and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    t_reconnect = time.monotonic()
    assert user.connections == connections + 1, "the user's client did not reconnect"
    assert user.servers[user._server_index % 2][1] == b.c2s_port
    await dev_b.send(user.principal, b"after", durable=True)
    got = sorted(await bodies(user, 4, 10))
    assert got == sorted([b"during-0", b"during-1", b"during-2", b"after"]), got
    with pytest.raises(TimeoutError):
        await user.receive(0.5)  # each exactly once

    # The device that had only A's address: the observer corrects its stale presence.
    t_corrected = await presence_of(dev_b, dev_a.principal, False, PROBE_INTERVAL + PROBE_TIMEOUT + 10)
    # The offline device logs in on B and gets the message A had stored.
    again = await parties.open(b, principal=offline.principal)
    assert await bodies(again, 1, 10) == [b"stored-by-A"]

    reconnect, corrected = t_reconnect - t_kill, t_corrected - t_kill
    print(f"\nCLUSTER-FAILOVER reconnect to node B {reconnect:.3f} s after SIGKILL of node A; "
          f"stale presence of A's session corrected after {corrected:.3f} s "
          f"(probe interval {PROBE_INTERVAL} s, timeout {PROBE_TIMEOUT} s; bound {BOUND} s); "
          f"messages during the outage: 4 of 4, stored by A: 1 of 1")  # fmt: skip
    assert corrected < BOUND
