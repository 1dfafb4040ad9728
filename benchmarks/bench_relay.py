"""Relay benchmarks (issue 5): run ``python benchmarks/bench_relay.py [--quick]``.

1. Messages/s and one-way latency (median, p99) from a sender client to a receiver client
   through one relay node (its own process, TLS), against raw NATS publish/subscribe
   between the same two client connections through ``nats-server`` (its own process, plain
   TCP as NATS is usually run inside a data centre). Same payload, same in-flight window.
2. Concurrent connected clients on one node (goal 5,000) and the node's RSS per connection.

Prints a small table; nothing here is asserted. The relay node runs in a child process
(``--serve``) so its CPU and memory are measured apart from the clients'.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from igrs.relay import Limits, RelayClient, RelayConfig, RelayNode  # noqa: E402
from igrs.relay.backbone.embedded import EmbeddedBackbone  # noqa: E402
from igrs.relay.directory import Directory  # noqa: E402
from igrs.relay.server import tune_asyncio_tls  # noqa: E402

BENCH_LIMITS = Limits(
    max_connections=20_000, message_rate=1e7, message_burst=1e7, flood_rate=1e7,
    flood_burst=1e7, max_send_buffer=8 * 1024 * 1024, max_connections_per_principal=64,
    idle_timeout=600, auth_timeout=120, tls_handshake_timeout=60,
    max_preauth_per_address=20_000,  # every client connects from 127.0.0.1, 100 at a time
)


def raise_nofile(want: int = 65_536) -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = min(want, hard) if hard != resource.RLIM_INFINITY else want
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, target), hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# ------------------------------------------------------------------ child: the relay node
async def serve(state: Path, port: int) -> None:
    raise_nofile()
    tune_asyncio_tls()
    node = RelayNode(RelayConfig(port=port, state_dir=state, limits=BENCH_LIMITS,
                                 housekeeping_interval=5.0))
    await node.start()
    print(f"READY {node.port} {node.fingerprint}", flush=True)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_reader(sys.stdin.fileno(), stop.set)  # parent closes stdin
    await stop.wait()
    await node.close(abort=True)


# ------------------------------------------------------------------ parent helpers
async def make_accounts(state: Path, n_users: int) -> tuple[list[tuple[str, str]], str, str]:
    """Create accounts straight in the node's SQLite (a program can: the directory API)."""
    state.mkdir(parents=True, exist_ok=True)
    bb = EmbeddedBackbone(state / "relay.sqlite3")
    d = Directory(bb.kv, BENCH_LIMITS)
    bb.store.db.execute("BEGIN")
    users = []
    for i in range(n_users):
        p, tok = await d.register_user(f"u{i}")
        users.append((str(p), tok))
    from igrs.relay.ids import Principal

    dev = Principal.device()
    dev_tok = await d.register_device(dev, "bench-rx", "PC", "bench-code")
    sender = Principal.parse(users[0][0])
    await d.bind(sender, dev, "bench-code")
    bb.store.db.execute("COMMIT")
    await bb.close()
    return users, str(dev), dev_tok


class Child:
    def __init__(self, state: Path) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "--serve", str(state), str(free_port())],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().split()
        assert line and line[0] == "READY", line
        self.port, self.fingerprint = int(line[1]), line[2]

    def close(self) -> None:
        if self.proc.stdin:
            self.proc.stdin.close()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


# ------------------------------------------------------------------ 1. throughput/latency
async def relay_flow(child: Child, user: tuple[str, str], dev: tuple[str, str], n: int,
                     window: int, size: int) -> tuple[float, list[float]]:
    kw = {"fingerprint": child.fingerprint}
    tx = RelayClient(("127.0.0.1", child.port), principal=user[0], token=user[1], **kw)
    rx = RelayClient(("127.0.0.1", child.port), principal=dev[0], token=dev[1], **kw)
    await tx.connect()
    await rx.connect()
    pad = b"x" * max(0, size - 8)
    try:
        # latency: one message at a time, one-way (same process clock on both ends)
        lat = []
        for _ in range(min(n // 5, 2000)):
            t0 = time.perf_counter()
            await tx.send(dev[0], pad, wait=False)
            await rx.receive()
            lat.append(time.perf_counter() - t0)
        # throughput with a window of in-flight messages
        got = 0
        sent = 0
        t0 = time.perf_counter()
        while got < n:
            while sent < n and sent - got < window:
                await tx.send(dev[0], pad, wait=False)
                sent += 1
            await rx.receive()
            got += 1
            while not rx._messages.empty() and got < n:
                rx._messages.get_nowait()
                got += 1
        rate = n / (time.perf_counter() - t0)
        return rate, lat
    finally:
        await tx.close()
        await rx.close()


async def nats_flow(url: str, n: int, window: int, size: int) -> tuple[float, list[float]]:
    import nats

    tx = await nats.connect(url)
    rx = await nats.connect(url)
    q: asyncio.Queue[bytes] = asyncio.Queue()

    async def cb(msg: object) -> None:
        q.put_nowait(msg.data)  # type: ignore[attr-defined]

    await rx.subscribe("bench.rx", cb=cb)
    await rx.flush()
    pad = b"x" * max(0, size - 8)
    try:
        lat = []
        for _ in range(min(n // 5, 2000)):
            t0 = time.perf_counter()
            await tx.publish("bench.rx", pad)
            await q.get()
            lat.append(time.perf_counter() - t0)
        got = sent = 0
        t0 = time.perf_counter()
        while got < n:
            while sent < n and sent - got < window:
                await tx.publish("bench.rx", pad)
                sent += 1
            await q.get()
            got += 1
            while not q.empty() and got < n:
                q.get_nowait()
                got += 1
        return n / (time.perf_counter() - t0), lat
    finally:
        await tx.close()
        await rx.close()


def start_nats(tmp: Path) -> tuple[subprocess.Popen[bytes], str] | None:
    binary = shutil.which("nats-server") or str(Path(sys.executable).parent / "nats-server")
    if not Path(binary).exists():
        return None
    port = free_port()
    proc = subprocess.Popen([binary, "-a", "127.0.0.1", "-p", str(port), "-sd", str(tmp / "js")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(200):
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.1):
            return proc, f"nats://127.0.0.1:{port}"
        time.sleep(0.025)
    proc.kill()
    return None


# ------------------------------------------------------------------ 2. many connections
async def many(child: Child, users: list[tuple[str, str]], target: int, parallel: int
               ) -> tuple[int, float, list[float], int, int]:
    base = rss_kib(child.proc.pid)
    sem = asyncio.Semaphore(parallel)
    clients: list[RelayClient] = []
    times: list[float] = []
    failures = 0

    async def one(u: tuple[str, str]) -> None:
        nonlocal failures
        async with sem:
            c = RelayClient(("127.0.0.1", child.port), principal=u[0], token=u[1],
                            fingerprint=child.fingerprint, reconnect=False,
                            connect_timeout=60)
            t0 = time.perf_counter()
            try:
                await c.connect()
            except Exception:
                failures += 1
                return
            times.append(time.perf_counter() - t0)
            clients.append(c)

    t0 = time.perf_counter()
    await asyncio.gather(*(one(u) for u in users[:target]))
    elapsed = time.perf_counter() - t0
    await asyncio.sleep(0.5)
    loaded = rss_kib(child.proc.pid)
    for c in clients:
        c.abort()
    await asyncio.sleep(0.2)
    return len(clients), elapsed, times, base, loaded


# ------------------------------------------------------------------ main
async def run(quick: bool) -> None:
    n_msgs = 5_000 if quick else 20_000
    n_conns = 500 if quick else 5_000
    nofile = raise_nofile()
    rows: list[tuple[str, str]] = []
    with tempfile.TemporaryDirectory(prefix="bench-relay-") as tmpd:
        tmp = Path(tmpd)
        users, dev, dev_tok = await make_accounts(tmp / "state", n_conns + 1)
        child = Child(tmp / "state")
        nats_srv = start_nats(tmp)
        try:
            for size in (128,):
                r_rate, r_lat = await relay_flow(child, users[0], (dev, dev_tok), n_msgs, 64, size)
                rows.append((f"relay msgs/s ({size} B, window 64)", f"{r_rate:,.0f}"))
                rows.append(("relay one-way latency median / p99",
                             f"{statistics.median(r_lat) * 1e6:,.0f} / "
                             f"{pct(r_lat, 0.99) * 1e6:,.0f} us"))
                if nats_srv is not None:
                    n_rate, n_lat = await nats_flow(nats_srv[1], n_msgs, 64, size)
                    rows.append((f"raw NATS msgs/s ({size} B, window 64)", f"{n_rate:,.0f}"))
                    rows.append(("raw NATS one-way latency median / p99",
                                 f"{statistics.median(n_lat) * 1e6:,.0f} / "
                                 f"{pct(n_lat, 0.99) * 1e6:,.0f} us"))
                    rows.append(("relay / NATS throughput ratio", f"{r_rate / n_rate:.2f}"))
                    rows.append(("relay / NATS median latency ratio",
                                 f"{statistics.median(r_lat) / statistics.median(n_lat):.2f}"))
            count, elapsed, times, base, loaded = await many(child, users[1:], n_conns, 100)
            rows.append(("concurrent TLS clients connected", f"{count:,} of {n_conns:,} "
                         f"in {elapsed:.1f} s (RLIMIT_NOFILE {nofile})"))
            if times:
                rows.append(("connect+TLS+AUTH median / p99",
                             f"{statistics.median(times) * 1e3:,.1f} / "
                             f"{pct(times, 0.99) * 1e3:,.1f} ms (100 in parallel)"))
            if count:
                rows.append(("relay RSS idle -> loaded",
                             f"{base / 1024:,.1f} -> {loaded / 1024:,.1f} MiB"))
                rows.append(("relay RSS per connection",
                             f"{(loaded - base) / count:,.1f} KiB"))
        finally:
            child.close()
            if nats_srv is not None:
                nats_srv[0].kill()
                nats_srv[0].wait()
    width = max(len(k) for k, _ in rows)
    print(f"\nIGRS relay benchmark ({os.cpu_count()} CPUs, Python {sys.version.split()[0]})")
    print("-" * (width + 40))
    for k, v in rows:
        print(f"{k:<{width}}  {v}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smaller run (CI smoke)")
    ap.add_argument("--serve", nargs=2, metavar=("STATE", "PORT"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve:
        asyncio.run(serve(Path(args.serve[0]), int(args.serve[1])))
        return
    asyncio.run(run(args.quick))


if __name__ == "__main__":
    _ = replace  # keep dataclasses.replace importable for local tweaking of BENCH_LIMITS
    main()
