"""IGRS 2.0 over XMPP against the embedded relay (issue 16): ``python benchmarks/bench_xmpp.py [--quick]``.

1. Messages/s (128-byte REALTIME payload, 64 in flight) and one-way latency (median, p99, one
   message at a time) from a sender to a receiver through Prosody and through ejabberd, each
   with ``igrs.xmpp.client.XmppClient``, against the relay node (its own process) with
   ``RelayClient``: the same flow code over the transport seam (``send``/``receive``), rounds
   interleaved, best round kept.
2. Connections on one ejabberd node against one relay node: N clients (2,000; 300
   with ``--quick``) connected over TLS, the server's RSS per connection.

Servers run from the shipped configurations (igrs/xmpp/deploy) through the test fixtures
(tests/xmpp/servers.py), with the per-connection rate limits lifted as bench_relay.py lifts
the relay's (``BENCH_LIMITS``): ejabberd's c2s shaper and Prosody's mod_limits would
otherwise measure the shaper. Needs prosody and ejabberd (Debian) and root (ejabberd runs as
its user). Nothing is asserted; BENCH-RESULT lines carry the ratios.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import secrets
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(ROOT / "tests" / "xmpp")]

from _result import BenchResult, say  # noqa: E402
from bench_relay import Child, make_accounts, many, pct, rss_kib  # noqa: E402

from igrs.relay import RelayClient  # noqa: E402
from igrs.relay.ids import Principal  # noqa: E402
from igrs.relay.server import raise_fd_limit  # noqa: E402
from igrs.relay.transport import Transport  # noqa: E402
from igrs.xmpp.client import XmppClient  # noqa: E402

SIZE, WINDOW = 128, 64


@dataclass
class Result(BenchResult):
    bench: str = "xmpp"


# ------------------------------------------------------------------ one flow, any transport
async def flow(tx: Transport, rx: Transport, target: Principal, n: int) -> tuple[float, list[float]]:
    """bench_relay.relay_flow over the transport seam: latency one at a time, then msgs/s."""
    pad = b"x" * (SIZE - 8)
    lat = []
    for _ in range(min(n // 5, 2000)):
        t0 = time.perf_counter()
        await tx.send(target, pad, wait=False)
        await rx.receive(10)
        lat.append(time.perf_counter() - t0)
    got = sent = 0
    t0 = time.perf_counter()
    while got < n:
        while sent < n and sent - got < WINDOW:
            await tx.send(target, pad, wait=False)
            sent += 1
        await rx.receive(10)
        got += 1
    return n / (time.perf_counter() - t0), lat


# ------------------------------------------------------------------ servers
def lift_limits(server: Any) -> None:
    """Per-connection rate limits off (the relay's are lifted by BENCH_LIMITS the same way)."""
    text = server.config.read_text()
    if server.kind == "ejabberd":
        text = text.replace("    normal: all\n", "    none: all\n")  # c2s_shaper: none for everyone
    else:
        # mod_limits without a c2s entry falls back to 10 KiB/s, so raise it rather than drop it
        lifted = 'limits = { c2s = { rate = "1000mb/s"; burst = "2s" } }'
        text = re.sub(r"^limits = .*$", lifted, text, flags=re.M)
    server.config.write_text(text)


def start(kind: str) -> Any:
    from servers import start_server

    return start_server(kind, prepare=lift_limits)


async def xmpp_pair(server: Any) -> tuple[XmppClient, XmppClient]:
    from xmpp_helpers import XWorld

    world = XWorld(server)
    tx, rx = await world.client(), await world.client(user=False)
    await world.befriend(tx, rx)  # the client drops messages from unrelated parties
    return tx, rx


async def connect_many(server: Any, n: int, parallel: int) -> tuple[int, float, int, int]:
    """n XmppClients (own accounts, in-band registration) on one server; (count, s, RSS before, after)."""
    pid = server.pid
    base = rss_kib(pid)
    sem = asyncio.Semaphore(parallel)
    clients: list[XmppClient] = []

    async def one() -> None:
        async with sem:
            c = XmppClient(Principal.device(), secrets.token_hex(6), domain=server.domain,
                           servers=[("127.0.0.1", server.c2s_port)], cafile=server.cert, register=True,
                           catchup=0.001, connect_timeout=60)  # fmt: skip
            with contextlib.suppress(Exception):
                await c.connect()
                clients.append(c)

    t0 = time.perf_counter()
    await asyncio.gather(*(one() for _ in range(n)))
    elapsed = time.perf_counter() - t0
    await asyncio.sleep(1.0)
    loaded = rss_kib(pid)
    for c in clients:
        c.abort()
    return len(clients), elapsed, base, loaded


# ------------------------------------------------------------------ main
async def run(quick: bool, rounds: int) -> None:
    n_msgs = 2_000 if quick else 10_000
    n_conns = 300 if quick else 2_000
    raise_fd_limit()
    with tempfile.TemporaryDirectory(prefix="bench-xmpp-") as tmpd:
        users, dev, dev_tok = await make_accounts(Path(tmpd) / "state", n_conns + 1)
        child = Child(Path(tmpd) / "state")
        servers = {kind: start(kind) for kind in ("prosody", "ejabberd")}
        try:
            kw = {"fingerprint": child.fingerprint}
            relay_tx = RelayClient(("127.0.0.1", child.port), principal=users[0][0], token=users[0][1], **kw)
            relay_rx = RelayClient(("127.0.0.1", child.port), principal=dev, token=dev_tok, **kw)
            await relay_tx.connect()
            await relay_rx.connect()
            pairs: dict[str, tuple[Transport, Transport, Principal]] = {
                "relay": (relay_tx, relay_rx, Principal.parse(dev))}
            for kind, server in servers.items():
                tx, rx = await xmpp_pair(server)
                pairs[kind] = (tx, rx, rx.principal)
            best: dict[str, tuple[float, list[float]]] = {}
            for r in range(rounds):
                for name, (tx, rx, target) in pairs.items():
                    rate, lat = await flow(tx, rx, target, n_msgs)
                    say(f"round {r + 1} {name:9s} {rate:9,.0f} msgs/s  one-way median "
                        f"{statistics.median(lat) * 1e6:6.0f} us  p99 {pct(lat, 0.99) * 1e6:6.0f} us")
                    if name not in best or rate > best[name][0]:
                        best[name] = (rate, lat)
            for tx, rx, _ in pairs.values():
                await tx.close()
                await rx.close()
            emit_flow(best)

            say(f"\nconnections: {n_conns} clients on one relay node, then on one ejabberd node")
            r_count, r_secs, _times, _failures, r_base, r_loaded, _fds = many(
                child, users[1:], n_conns, 100, Path(tmpd))
            e_count, e_secs, e_base, e_loaded = await connect_many(servers["ejabberd"], n_conns, 50)
            say(f"relay    {r_count} connected in {r_secs:.1f} s, RSS {r_base / 1024:.1f} -> "
                f"{r_loaded / 1024:.1f} MiB")
            say(f"ejabberd {e_count} connected in {e_secs:.1f} s, RSS {e_base / 1024:.1f} -> "
                f"{e_loaded / 1024:.1f} MiB")
            emit_connections(r_count, r_base, r_loaded, e_count, e_base, e_loaded, n_conns)
        finally:
            child.close()
            for server in servers.values():
                server.close()


def emit_flow(best: dict[str, tuple[float, list[float]]]) -> None:
    rate, lat = best["relay"]
    note = f"{SIZE} B REALTIME, window {WINDOW}, TLS, same client code over the transport seam"
    for kind, label in (("ejabberd", "ejabberd 23.01"), ("prosody", "Prosody 0.12")):
        x_rate, x_lat = best[kind]
        Result(f"{label} msgs/s", x_rate, "msg/s", "igrs relay node", rate, note=note).emit()
        for q, qname in ((0.5, "median"), (0.99, "p99")):
            pick: Callable[[list[float]], float] = (
                statistics.median if q == 0.5 else (lambda xs: pct(xs, 0.99)))  # fmt: skip
            Result(f"{label} one-way latency {qname}", pick(x_lat) * 1e6, "us", "igrs relay node",
                   pick(lat) * 1e6, better="lower", note=note).emit()  # fmt: skip


def emit_connections(r_count: int, r_base: int, r_loaded: int, e_count: int, e_base: int, e_loaded: int,
                     want: int) -> None:  # fmt: skip
    Result("ejabberd node: clients connected", e_count, "conns", "igrs relay node", r_count,
           note=f"{want} attempted, TLS, XmppClient vs RelayClient").emit()  # fmt: skip
    if r_count and e_count:
        Result("ejabberd node: RSS per connection", (e_loaded - e_base) / e_count, "KiB", "igrs relay node",
               (r_loaded - r_base) / r_count, better="lower",
               note="server RSS growth / connected clients (Erlang allocator growth included)",
               ).emit()  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smaller run (CI smoke)")
    ap.add_argument("--rounds", type=int, default=0, help="interleaved rounds (default 3, quick 2)")
    args = ap.parse_args()
    quick = args.quick or os.environ.get("IGRS_BENCH_QUICK") == "1"
    asyncio.run(run(quick, args.rounds or (2 if quick else 3)))


if __name__ == "__main__":
    main()
