#!/usr/bin/env python3
"""Core protocol benchmarks (issue 3): invocations, pipe and session set-up, event notifications.

    python benchmarks/bench_core.py            # everything (about a minute)
    python benchmarks/bench_core.py --quick    # fewer repeats ($IGRS_BENCH_QUICK=1)
    python benchmarks/bench_core.py --only invoke|setup|events
    python benchmarks/bench_core.py --only invoke --profile DIR   # cProfile both sides into DIR

Parts (subject / baseline, same run, same machine):

* invoke: ``svc.Echo(...)`` over a secure session (sealed InvokeServiceRequest/Response),
  32 in flight / a bare aiohttp POST echo, 32 in flight. Goal >= 0.75x (issue 15); each round
  also prints both sides' CPU time per call.
* setup: pipe set-up, the four-step mutually authenticated handshake (median, p99) / a TLS
  1.3 mutual-auth handshake (Python ssl, ECDSA P-256, new TCP connection) plus a 1-byte
  echo. Session set-up, SearchServiceRequestOnDevice + CreateSessionRequest in an open
  secure pipe / one plain aiohttp POST on a kept-alive connection.
* events: notifications/s, one change each, the next change made when the previous one's
  acknowledgement arrives (the device's producer is woken by the ack, no polling) / aiohttp
  POSTs/s one at a time, each sent when the previous answer arrives (goal >= 0.5x, issue 15).
  Attribute changes/s with the documented batching, the producer kept below EVENT_QUEUE_LIMIT
  so none is lost / aiohttp POSTs/s, 32 in flight.

The device (and the echo/TLS baseline server) run in child processes, the client in this
one, so client and server each have a core as on two machines. Rounds alternate subject and
baseline; the best round is kept. Multicast stays on ``lo`` (a random free UDP port).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import ipaddress
import json
import os
import socket
import ssl
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from _result import BenchResult, say

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

BENCH = "core"
LO = ["lo"]
QUICK = os.environ.get("IGRS_BENCH_QUICK", "") not in ("", "0")
SERVICE = "urn:IGRS:ServiceType:BenchEcho:1"
CONCURRENCY = 32
PAYLOAD = "x" * 64


@dataclass
class Result(BenchResult):
    bench: str = BENCH


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


# --- children ---------------------------------------------------------------------------------
def _make_service() -> Any:
    from igrs.node.service import Service, action, attribute

    class BenchEcho(Service):
        service_type = SERVICE
        name = "Bench echo"
        counter = attribute(int, 0, notifiable=True)
        device: Any = None

        @action
        async def Echo(self, text: str, n: int) -> str:
            return f"{text}{n}"

        @action
        async def Produce(self, count: int, paced: bool) -> float:
            """Make ``count`` changes of ``counter``; return the seconds until all were delivered.
            paced: the next change is made when the previous notification's acknowledgement
            arrives. Otherwise as fast as the subscription takes them without coalescing.
            No polling: the producer is woken by the acknowledgement itself (the table's
            ``delivered``, called by the pump when the subscriber's answer is read), so the
            figure is the notification path's, not a sleep's (epoll rounds a 0.5 ms sleep up
            to 1 ms)."""
            from igrs.constants import EVENT_QUEUE_LIMIT

            table = self.device.services.subscriptions
            subs = [s for s in table if s.kind == "attribute"]
            assert len(subs) == 1, "exactly one subscriber expected"
            sub = subs[0]
            acked = asyncio.Event()
            delivered = table.delivered

            def on_ack(subscription_id: int) -> None:
                delivered(subscription_id)
                acked.set()

            async def until(done: Callable[[], bool]) -> None:
                while not done():
                    acked.clear()
                    await acked.wait()

            def drained() -> bool:
                return not sub.pending and sub.inflight is None

            table.delivered = on_ack
            try:
                async with asyncio.timeout(30 + count * 0.01):  # one timer for the run: a lost ack fails it
                    await until(drained)
                    start = time.perf_counter()
                    for i in range(1, count + 1):
                        self.counter = self.counter + 1
                        if paced:
                            await until(drained)
                        elif sub.pending >= EVENT_QUEUE_LIMIT // 2:
                            await until(lambda: sub.pending < EVENT_QUEUE_LIMIT // 4)
                        elif i % 64 == 0:
                            await asyncio.sleep(0)
                    await until(drained)
                    return time.perf_counter() - start
            finally:
                del table.delivered

    return BenchEcho


async def serve_device(udp_port: int, state: str) -> None:
    from igrs import Device

    service = _make_service()()
    dev = Device(name="Bench TV", device_type="TV", interfaces=LO, port=udp_port, http_port=0, state_dir=state,
                 watch_interfaces=False, on_pin=lambda pin: print(f"PIN {pin}", flush=True))
    service.device = dev
    dev.add_service(service)
    async with dev:
        print("READY " + json.dumps({"id": str(dev.device_id), "location": dev.location}), flush=True)
        await _until_stdin_closes()


def _write_certs(directory: Path) -> None:
    """A self-signed ECDSA P-256 certificate and key for each side of the TLS baseline."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    for name in ("server", "client"):
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        now = datetime.datetime.now(datetime.UTC)
        cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
                .public_key(key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(now - datetime.timedelta(days=1))
                .not_valid_after(now + datetime.timedelta(days=1))
                .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                               critical=False)
                .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                .sign(key, hashes.SHA256()))
        (directory / f"{name}.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        (directory / f"{name}.key").write_bytes(key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))


def _tls_context(directory: Path, side: str) -> ssl.SSLContext:
    """TLS 1.3 with mutual authentication: each side presents its certificate and checks the other's."""
    other = "client" if side == "server" else "server"
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER if side == "server" else ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.load_cert_chain(directory / f"{side}.crt", directory / f"{side}.key")
    ctx.load_verify_locations(directory / f"{other}.crt")
    ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


async def serve_baseline(directory: str) -> None:
    """An aiohttp POST echo, and a TLS server that echoes one byte per connection."""
    from aiohttp import web

    async def echo(request: web.Request) -> web.Response:
        return web.Response(body=await request.read())

    app = web.Application()
    app.router.add_post("/echo", echo)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    http_port = runner.addresses[0][1]
    _write_certs(Path(directory))
    server_ctx = _tls_context(Path(directory), "server")

    async def one_byte(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(Exception):
            writer.write(await reader.readexactly(1))
            await writer.drain()
        writer.close()

    tls = await asyncio.start_server(one_byte, "127.0.0.1", 0, ssl=server_ctx)
    tls_port = tls.sockets[0].getsockname()[1]
    print("READY " + json.dumps({"http": http_port, "tls": tls_port}), flush=True)
    await _until_stdin_closes()
    tls.close()
    await runner.cleanup()


async def _until_stdin_closes() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_reader(sys.stdin.fileno(), stop.set)
    await stop.wait()


class Child:
    def __init__(self, *args: str) -> None:
        self.args = args
        self.proc: asyncio.subprocess.Process | None = None
        self.info: dict[str, Any] = {}

    async def start(self) -> Child:
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, __file__, "--serve", *self.args, stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE)
        line = await self.line("READY ")
        self.info = json.loads(line)
        return self

    async def line(self, prefix: str, timeout: float = 30) -> str:
        assert self.proc is not None and self.proc.stdout is not None
        while True:
            raw = await asyncio.wait_for(self.proc.stdout.readline(), timeout)
            if not raw:
                raise RuntimeError(f"child {self.args[0]} exited")
            text = raw.decode().strip()
            if text.startswith(prefix):
                return text[len(prefix):]

    async def stop(self) -> None:
        if self.proc is None:
            return
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        try:
            await asyncio.wait_for(self.proc.wait(), 10)
        except TimeoutError:
            self.proc.kill()
            await self.proc.wait()


# --- measuring --------------------------------------------------------------------------------
async def throughput(call: Callable[[int], Awaitable[object]], total: int, concurrency: int) -> float:
    """Calls per second of ``call(i)`` for i < total, ``concurrency`` in flight."""
    counter = iter(range(total))

    async def worker() -> None:
        for i in counter:
            await call(i)

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return total / (time.perf_counter() - start)


def child_cpu(child: Child) -> float:
    """CPU seconds (user + system) the child process has used so far."""
    assert child.proc is not None
    fields = Path(f"/proc/{child.proc.pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def cpu_per_call(call: Callable[[int], Awaitable[object]], total: int, concurrency: int,
                       server: Child) -> tuple[float, float, float]:
    """(calls/s, client CPU µs per call, server CPU µs per call) of one throughput run."""
    client0, server0 = time.process_time(), child_cpu(server)
    rate = await throughput(call, total, concurrency)
    client1, server1 = time.process_time(), child_cpu(server)
    return rate, (client1 - client0) / total * 1e6, (server1 - server0) / total * 1e6


async def latencies(op: Callable[[], Awaitable[Callable[[], Awaitable[object]] | None]], n: int) -> list[float]:
    """Seconds per ``op()`` (its returned clean-up, if any, runs outside the timing)."""
    out = []
    for _ in range(n):
        start = time.perf_counter()
        cleanup = await op()
        out.append(time.perf_counter() - start)
        if cleanup is not None:
            await cleanup()
    return out


class Rig:
    """A device child, a paired control point, an open session; the baseline child."""

    async def __aenter__(self) -> Rig:
        import aiohttp

        from igrs import ControlPoint

        self.tmp = tempfile.TemporaryDirectory(prefix="igrs-bench-core-")
        tmp = Path(self.tmp.name)
        port = free_udp_port()
        self.device = await Child("device", str(port), str(tmp / "device")).start()
        self.baseline = await Child("baseline", str(tmp)).start()
        self.cp = ControlPoint(interfaces=LO, port=port, keepalive_interval=0, state_dir=tmp / "cp")
        await self.cp.start()
        from igrs.wire.ids import DeviceId

        self.device_id = DeviceId.parse(self.device.info["id"])
        for _ in range(10):
            if await self.cp.search(timeout=0.5, target=self.device_id, mx=1):
                break
        device = self.device

        async def typed(_digits: int) -> str:
            return await device.line("PIN ")

        await self.cp.pair(self.device_id, typed)
        self.agent = await self.cp.agent(self.device_id)
        self.proxy = await self.agent.open(SERVICE)
        self.http = aiohttp.ClientSession()
        self.echo_url = f"http://127.0.0.1:{self.baseline.info['http']}/echo"
        self.tls_client = _tls_context(tmp, "client")
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.proxy.close()
        await self.http.close()
        await self.cp.stop()
        await self.device.stop()
        await self.baseline.stop()
        self.tmp.cleanup()

    async def post(self, i: int) -> bytes:
        async with self.http.post(self.echo_url, data=f"{PAYLOAD}{i}".encode()) as resp:
            return await resp.read()

    async def invoke(self, i: int) -> object:
        return await self.proxy.Echo(text=PAYLOAD, n=i)

    async def tls_handshake(self) -> None:
        port = self.baseline.info["tls"]
        reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=self.tls_client)
        writer.write(b"x")
        await reader.readexactly(1)
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()


def best_of(rounds: list[dict[str, float]], key: str, higher: bool = True) -> float:
    values = [r[key] for r in rounds]
    return max(values) if higher else min(values)


async def bench_invoke(rig: Rig, rounds: int, calls: int) -> list[Result]:
    say(f"\n== invocations: {calls} calls, {CONCURRENCY} in flight, best of {rounds} rounds")
    await throughput(rig.invoke, 200, CONCURRENCY)  # warm-up: connections, caches
    await throughput(rig.post, 200, CONCURRENCY)
    got: list[dict[str, float]] = []
    for r in range(rounds):
        igrs_rate, igrs_c, igrs_s = await cpu_per_call(rig.invoke, calls, CONCURRENCY, rig.device)
        http_rate, http_c, http_s = await cpu_per_call(rig.post, calls, CONCURRENCY, rig.baseline)
        got.append({"igrs": igrs_rate, "http": http_rate})
        say(f"  round {r + 1}: secure session {igrs_rate:,.0f} calls/s (CPU per call: control point "
            f"{igrs_c:.0f} µs, device {igrs_s:.0f} µs)   bare aiohttp POST {http_rate:,.0f} /s "
            f"(client {http_c:.0f} µs, server {http_s:.0f} µs)")
    value, base = best_of(got, "igrs"), best_of(got, "http")
    return [Result("invocations/s over a secure session", value, "calls/s",
                   f"bare aiohttp POST echo, {CONCURRENCY} in flight", base, "higher",
                   goal=">= 0.75x", met=value / base >= 0.75, note=f"{CONCURRENCY} in flight")]


async def bench_setup(rig: Rig, rounds: int, n: int) -> list[Result]:
    from igrs.node.pipe import open_pipe

    say(f"\n== set-up latency: {n} each per round, best of {rounds} rounds (by median)")
    record = rig.cp.find(rig.device_id)

    async def pipe_setup() -> Callable[[], Awaitable[object]]:
        cp = rig.cp
        pipe = await open_pipe(cp.http, record.url, cp.identity, rig.device_id, cp.keystore.peer_key,
                               secure=True, keepalive_interval=0)
        return pipe.close

    async def session_setup() -> Callable[[], Awaitable[object]]:
        proxy = await rig.agent.open(SERVICE)
        return proxy.close

    async def tls() -> None:
        await rig.tls_handshake()

    async def plain() -> None:
        await rig.post(0)

    for op in (pipe_setup, session_setup, tls, plain):  # warm-up
        await latencies(op, 5)
    got: dict[str, list[list[float]]] = {"pipe": [], "session": [], "tls": [], "plain": []}
    for r in range(rounds):
        for key, op in (("pipe", pipe_setup), ("tls", tls), ("session", session_setup), ("plain", plain)):
            got[key].append(await latencies(op, n))
        say("  round {}: pipe {:.2f} ms  TLS {:.2f} ms  session {:.2f} ms  POST {:.2f} ms (medians)".format(
            r + 1, *(statistics.median(got[k][-1]) * 1e3 for k in ("pipe", "tls", "session", "plain"))))

    def best(key: str) -> list[float]:
        return min(got[key], key=statistics.median)

    pipe, tls_s, session, post = best("pipe"), best("tls"), best("session"), best("plain")
    ms = 1e3
    tls_name = "TLS 1.3 mutual-auth handshake + 1-byte echo (new TCP conn)"
    return [
        Result("pipe set-up (4-step handshake), median", statistics.median(pipe) * ms, "ms",
               tls_name + ", median", statistics.median(tls_s) * ms, "lower"),
        Result("pipe set-up (4-step handshake), p99", pct(pipe, 0.99) * ms, "ms",
               tls_name + ", p99", pct(tls_s, 0.99) * ms, "lower"),
        Result("session set-up (service search + CreateSession), median", statistics.median(session) * ms, "ms",
               "one plain aiohttp POST (kept-alive), median", statistics.median(post) * ms, "lower"),
        Result("session set-up (service search + CreateSession), p99", pct(session, 0.99) * ms, "ms",
               "one plain aiohttp POST (kept-alive), p99", pct(post, 0.99) * ms, "lower"),
    ]


async def bench_events(rig: Rig, rounds: int, paced_n: int, batched_n: int) -> list[Result]:
    say(f"\n== events: {paced_n} paced notifications, {batched_n} batched changes; best of {rounds} rounds")
    stream = rig.proxy.subscribe("counter")
    await stream.start()
    received = 0
    last_value = 0
    flagged = 0

    async def consume() -> None:
        nonlocal received, last_value, flagged
        async for change in stream:
            received += 1
            flagged += change.coalesced
            last_value = change.value

    consumer = asyncio.create_task(consume())
    try:
        while received < 1:  # the initial value
            await asyncio.sleep(0.01)

        async def produce(count: int, paced: bool) -> float:
            before = received
            target = last_value + count
            seconds = float(await rig.proxy.Produce(count=count, paced=paced))
            for _ in range(1000):  # the last notification reaches the consumer task
                if last_value >= target:
                    break
                await asyncio.sleep(0.001)
            if received - before != count or last_value != target:
                raise RuntimeError(f"events lost: {received - before} of {count}")
            return count / seconds

        await produce(100, True)
        await throughput(rig.post, 100, 1)
        got: list[dict[str, float]] = []
        for r in range(rounds):
            paced = await produce(paced_n, True)
            serial = await throughput(rig.post, paced_n, 1)
            batched = await produce(batched_n, False)
            wide = await throughput(rig.post, batched_n, CONCURRENCY)
            got.append({"paced": paced, "serial": serial, "batched": batched, "wide": wide})
            say(f"  round {r + 1}: notifications {paced:,.0f}/s (POSTs one at a time {serial:,.0f}/s)   "
                f"batched changes {batched:,.0f}/s (POSTs {CONCURRENCY} in flight {wide:,.0f}/s)")
        if flagged:
            raise RuntimeError(f"{flagged} changes arrived coalesced")
    finally:
        consumer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await consumer
        await stream.aclose()
    paced, serial = best_of(got, "paced"), best_of(got, "serial")
    return [
        Result("event notifications/s (1 change each, next after the ack)", paced, "/s",
               "aiohttp POSTs/s, one at a time", serial, "higher", goal=">= 0.5x", met=paced / serial >= 0.5,
               note="sealed SendNotification device -> subscriber, none lost"),
        Result("attribute changes/s delivered (batched, none lost)", best_of(got, "batched"), "/s",
               f"aiohttp POSTs/s, {CONCURRENCY} in flight", best_of(got, "wide"), "higher",
               note=f"up to {256} changes per notification; producer kept below the queue limit"),
    ]


def print_table(results: list[Result]) -> None:
    say()
    say(f"{'metric':58s} {'value':>14s}  {'baseline':60s} {'base value':>12s} {'ratio':>7s}  goal")
    for r in results:
        met = "" if r.met is None else (" met" if r.met else " NOT met")
        say(f"{r.name[:58]:58s} {r.value:>10,.2f} {r.unit:>3s}  {r.baseline[:60]:60s} "
            f"{r.baseline_value:>12,.2f} {r.ratio:6.2f}x  {r.goal}{met}")


async def run(only: set[str], quick: bool) -> list[Result]:
    rounds = 2 if quick else 5
    results: list[Result] = []
    async with Rig() as rig:
        if "invoke" in only:
            results += await bench_invoke(rig, rounds, 1000 if quick else 3000)
        if "setup" in only:
            results += await bench_setup(rig, rounds, 30 if quick else 100)
        if "events" in only:
            results += await bench_events(rig, rounds, 300 if quick else 1000, 5000 if quick else 20000)
    return results


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--only", action="append", choices=["invoke", "setup", "events"])
    p.add_argument("--quick", action="store_true", default=QUICK, help="fewer repeats ($IGRS_BENCH_QUICK=1)")
    p.add_argument("--profile", metavar="DIR", type=Path,
                   help="cProfile the control point (this process) and the device child into "
                        "DIR/client.prof and DIR/device.prof (the figures then include its cost)")
    args = p.parse_args(argv)
    only = set(args.only or ["invoke", "setup", "events"])
    if args.profile is None:
        results = asyncio.run(run(only, args.quick))
    else:
        import cProfile

        args.profile.mkdir(parents=True, exist_ok=True)
        os.environ["IGRS_BENCH_PROFILE"] = str(args.profile / "device.prof")
        with cProfile.Profile() as prof:
            results = asyncio.run(run(only, args.quick))
        prof.dump_stats(args.profile / "client.prof")
    print_table(results)
    for r in results:
        r.emit()
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--serve":
        if sys.argv[2] == "device":
            from igrs.cli import event_loop

            # bench_loop.py runs the device on uvloop or asyncio's loop; asyncio's by default
            def serve() -> None:
                event_loop.run(serve_device(int(sys.argv[3]), sys.argv[4]),
                               os.environ.get("IGRS_BENCH_SERVER_LOOP", "asyncio"))

            profile = os.environ.get("IGRS_BENCH_PROFILE")
            if profile:
                import cProfile

                with cProfile.Profile() as prof:
                    serve()
                prof.dump_stats(profile)
            else:
                serve()
        else:
            asyncio.run(serve_baseline(sys.argv[3]))
    else:
        sys.exit(main())
