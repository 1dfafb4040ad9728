#!/usr/bin/env python3
"""Discovery at LAN sizes nobody tests (issue 15, item 3).

    python benchmarks/bench_lan.py               # a. 2,000 real devices; b. simulated LANs up to 10,000
    python benchmarks/bench_lan.py --quick       # a. 500 devices, 2 searches; b. up to 10,000, 30 fake minutes
    python benchmarks/bench_lan.py --only sim    # real | sim

a. **Real sockets.** ``--devices`` (2,000) ``igrs.Device``s in ``--procs`` (8) processes on the
   loopback of a network namespace this script creates (needs root and ``ip``; deleted at the
   end), each process with RLIMIT_NOFILE raised; a fresh ``ControlPoint`` per search (MX 1)
   counts the devices it knows. Figures: median time from the search to the last device,
   devices missed; baseline the ideal, E[max of N U(0, MX)].
b. **Simulated LAN** (benchmarks/lan_sim.py): 200, 1,000 and 10,000 ``DeviceDiscovery`` cores
   and one ``ControlPointDiscovery`` in fake time, no sockets, the default timers (MX 2, the
   default). Figures: time for a fresh control point's search to converge, multicast datagrams
   per device per minute in the steady state, the registry's memory per device, the control
   point's CPU per minute; printed as a table (specs/timers-and-limits.md quotes it).

Every figure is a ratio against a baseline measured in the same run, as BENCH-RESULT lines.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import os
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from _result import BenchResult, say

HERE = Path(__file__).resolve().parent
QUICK = os.environ.get("IGRS_BENCH_QUICK", "") not in ("", "0")
NETNS_ENV = "IGRS_BENCH_LAN_NETNS"  # set inside the namespace this script made


@dataclass
class Result(BenchResult):
    bench: str = "lan"


def ideal(n: int, mx: float) -> float:
    """E[max of n U(0, mx)]: when the last of n answers arrives with no delay of their own."""
    return mx * n / (n + 1)


# --- a. real sockets ------------------------------------------------------------------------------
def kernel_udp_drops(port: int | None = None) -> int:
    """Datagrams the kernel dropped for full receive buffers (this namespace), at the sockets
    bound to local ``port`` if given (the drops column of /proc/net/udp), else at all."""
    if port is None:
        lines = [line.split() for line in Path("/proc/net/snmp").read_text().splitlines()
                 if line.startswith("Udp:")]
        fields = dict(zip(lines[0][1:], lines[1][1:], strict=True))
        return int(fields.get("RcvbufErrors", 0))
    total = 0
    for line in Path("/proc/net/udp").read_text().splitlines()[1:]:
        cols = line.split()
        if int(cols[1].rsplit(":", 1)[1], 16) == port:
            total += int(cols[-1])
    return total


async def search_once(port: int, prefix: str, expected: int, mx: int) -> tuple[float | None, int, str]:
    """(seconds until every device was known or None, devices known, why some were lost)."""
    from igrs import ControlPoint
    from igrs.core.discovery import DeviceAppeared

    loop = asyncio.get_running_loop()
    arrivals: list[float] = []
    kernel = kernel_udp_drops()
    cpu = time.process_time()
    searching = math.nan  # CPU from the search to the last arrival
    async with ControlPoint(interfaces=["lo"], port=port, max_devices=expected + 64) as cp:
        events = cp.events()
        t0, cpu0 = loop.time(), time.process_time()
        search = asyncio.create_task(cp.search(timeout=mx + 1.0, mx=mx))

        async def collect() -> None:
            nonlocal searching
            async for ev in events:
                if isinstance(ev, DeviceAppeared) and ev.device.name.startswith(prefix):
                    arrivals.append(loop.time() - t0)
                    if len(arrivals) >= expected:
                        searching = time.process_time() - cpu0
                        return

        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(collect(), mx + 1.0)
        await search
        # before the drop accounting below: /proc/net/udp lists every device's sockets (6,000
        # lines for 2,000 devices), and reading it costs this process more than a search
        cpu = time.process_time() - cpu
        known = sum(1 for d in cp.devices if d.name.startswith(prefix))
        endpoints = cp._endpoints
        assert endpoints is not None
        why = {
            "kernel, at the control point's socket": kernel_udp_drops(endpoints.local_address("lo")[1]),
            "kernel, elsewhere": kernel_udp_drops() - kernel
            - kernel_udp_drops(endpoints.local_address("lo")[1]),
            "socket queue": sum(endpoints.drops.values()),
            "registry": cp.discovery.drops.total,
            "events": cp.events_dropped,
        }
    done = max(arrivals) if len(arrivals) >= expected else None
    drops = ", ".join(f"{k} {v}" for k, v in why.items() if v) or "none dropped"
    return done, known, (f"{drops}; control point CPU {cpu:.2f} s (start to stop), "
                         f"{searching:.2f} s from the search to the last device "
                         f"({searching / expected * 1e6:.0f} us per device)")


def real_worker(devices: int, procs: int, searches: int, mx: int) -> list[Result]:
    """Part a, run inside the namespace."""
    sys.path.insert(0, str(HERE))
    from bench_discovery import WorkerPool, free_udp_port, raise_nofile

    raise_nofile()
    per = devices // procs
    devices = per * procs
    port = free_udp_port()
    tag = f"lan{os.getpid()}"
    say(f"== a. real sockets: {devices} igrs.Device in {procs} processes (network namespace), "
        f"{searches} searches, MX {mx} ==")
    t_start = time.monotonic()
    pool = WorkerPool("--device-worker", procs, per, port, tag)
    runs: list[tuple[float | None, int, str]] = []
    try:
        pool.wait_ready(timeout=300)
        say(f"  {devices} devices up and idle in {time.monotonic() - t_start:.1f} s on lo, UDP port {port}")

        async def all_searches() -> None:
            for i in range(searches):
                workers = pool.cpu()
                run = await search_once(port, tag, devices, mx)
                workers = pool.cpu() - workers
                runs.append(run)
                say(f"  search {i + 1}: {run[1]}/{devices} known, all after "
                    + (f"{run[0]:.3f} s" if run[0] is not None else "-- (incomplete)") + f"; drops: {run[2]}; "
                    f"the {procs} device processes' CPU {workers:.2f} s "
                    f"({workers / devices * 1e6:.0f} us per device)")
                await asyncio.sleep(1.0)

        asyncio.run(all_searches())
    finally:
        pool.close()
    missed = sum(devices - r[1] for r in runs)
    # an incomplete search counts as never done: the median exists while most searches completed
    median = statistics.median(r[0] if r[0] is not None else math.inf for r in runs)
    if math.isinf(median):
        median = float("nan")
    base = ideal(devices, mx)
    say(f"  median time to all {median:.3f} s (ideal {base:.3f} s), missed {missed} over {searches} searches")
    return [
        Result(f"real: {devices} devices, one search (MX {mx}): median time to all", median, "s",
               f"ideal E[max of {devices} U(0,MX)]", base, "lower",
               goal="<= 1.1 s, none missed", met=median <= 1.1 and missed == 0,
               note=f"{procs} processes in a network namespace; missed {missed} over {searches} searches"),
        Result(f"real: {devices} devices, devices missed (sum of {searches} searches)", float(missed),
               "devices", "none", 0.0, "lower", goal="0", met=missed == 0),
    ]


def bench_real(devices: int, procs: int, searches: int, mx: int) -> list[Result]:
    """Run part a in a network namespace of its own (root and ``ip`` needed)."""
    if os.environ.get(NETNS_ENV):
        return real_worker(devices, procs, searches, mx)
    if os.geteuid() != 0 or shutil.which("ip") is None:
        say("== a. real sockets: skipped (needs root and `ip` for a network namespace) ==")
        return []
    name = f"igrs-bench-lan-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
        proc = subprocess.run(
            ["ip", "netns", "exec", name, sys.executable, __file__, "--only", "real", "--devices", str(devices),
             "--procs", str(procs), "--searches", str(searches), "--mx", str(mx)],
            env={**os.environ, NETNS_ENV: name}, stdout=subprocess.PIPE, text=True, timeout=900,
        )
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)
    # The namespace's own run printed its BENCH-RESULT lines: pass them through as they are.
    for line in proc.stdout.splitlines():
        print(line, flush=True)
    if proc.returncode != 0:
        say(f"  (part a exited with {proc.returncode})")
    return []


# --- b. the simulated LAN ------------------------------------------------------------------------
def bench_sim(sizes: list[int], steady_minutes: float, mx: int) -> list[Result]:
    from lan_sim import simulate

    say(f"== b. simulated LAN: sans-IO cores in fake time, default timers, MX {mx}, "
        f"steady state over {steady_minutes:.0f} fake minutes ==")
    figures = {n: simulate(n, mx=mx, steady_minutes=steady_minutes) for n in sizes}
    head = (f"  {'devices':>8s} {'found':>7s} {'search converged':>17s} {'ideal':>7s} {'responses':>10s} "
            f"{'multicast/device/min':>21s} {'LAN multicast/s':>16s} {'lost':>5s} {'registry':>10s} "
            f"{'per device':>11s} {'CP CPU/min':>11s} {'per datagram':>13s} {'sim wall':>9s}")
    say(head)
    for n, f in figures.items():
        say(f"  {n:8,d} {f.found:7,d} {f.converged_after:15.3f} s {ideal(n, mx):5.3f} s {f.responses:10,d} "
            f"{f.multicast_per_device_min:21.4f} {f.lan_multicast_per_s:16.2f} {f.lost:5d} "
            f"{f.registry_bytes / 2**20:7.2f} MiB {f.registry_bytes / n / 1024:7.2f} KiB "
            f"{f.cp_cpu_s_per_min * 1000:8.1f} ms {f.cp_cpu_per_datagram * 1e6:10.1f} us {f.wall_s:7.1f} s")
    small, middle, large = figures[sizes[0]], figures[sizes[len(sizes) // 2]], figures[sizes[-1]]
    n = large.devices
    converged = large.converged_after
    return [
        Result(f"sim: {n:,} devices, a fresh control point's search converges (MX {mx})", converged, "s",
               f"ideal E[max of {n:,} U(0,MX)]", ideal(n, mx), "lower",
               goal="all found, <= ideal + 0.1 s", met=large.found == n and converged <= ideal(n, mx) + 0.1,
               note=f"found {large.found:,}/{n:,}; {large.responses:,} responses (a device answers both "
                    f"search copies if its first answer left before the second copy)"),
        Result(f"sim: {n:,} devices, multicast datagrams per device per minute, steady state",
               large.multicast_per_device_min, "/min", f"the same on a LAN of {small.devices:,} devices",
               small.multicast_per_device_min, "lower",
               goal="flat in LAN size (<= 1.05x)",
               met=large.multicast_per_device_min <= 1.05 * small.multicast_per_device_min,
               note=f"default timers; all devices together {large.lan_multicast_per_s:.1f} datagrams/s; "
                    f"devices lost by the control point: {large.lost}"),
        Result(f"sim: {n:,} devices, registry memory per device", large.registry_bytes / n / 1024, "KiB",
               f"the same with {small.devices:,} devices", small.registry_bytes / small.devices / 1024, "lower",
               goal="<= 1.5 KiB per device",
               met=large.registry_bytes / n / 1024 <= 1.5,
               note=f"{large.registry_bytes / 2**20:.1f} MiB in all (tracemalloc; decode memo emptied)"),
        Result(f"sim: {n:,} devices, control point CPU per received datagram, steady state",
               large.cp_cpu_per_datagram * 1e6, "us", f"the same on a LAN of {middle.devices:,} devices",
               middle.cp_cpu_per_datagram * 1e6, "lower",
               note=f"information: {large.cp_cpu_s_per_min * 1000:.0f} ms of CPU per minute at {n:,} devices; "
                    f"a LAN of {small.devices} devices ({small.cp_cpu_per_datagram * 1e6:.0f} us) repeats "
                    f"datagrams the decode memo (256) still holds"),
    ]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--only", action="append", choices=["real", "sim"])
    p.add_argument("--quick", action="store_true", default=QUICK)
    p.add_argument("--devices", type=int, default=None, help="part a: devices (default 2,000; quick 500)")
    p.add_argument("--procs", type=int, default=8)
    p.add_argument("--searches", type=int, default=None, help="part a: searches (default 5; quick 2)")
    p.add_argument("--mx", type=int, default=1, help="part a: MX of the searches")
    p.add_argument("--sim-mx", type=int, default=None, help="part b: MX (default: DEFAULT_MX)")
    p.add_argument("--minutes", type=float, default=None, help="part b: steady state (default 120; quick 30)")
    args = p.parse_args()
    only = set(args.only or ["real", "sim"])
    results: list[Result] = []
    if "real" in only:
        results += bench_real(args.devices or (500 if args.quick else 2000), args.procs,
                              args.searches or (2 if args.quick else 5), args.mx)
    if "sim" in only:
        from igrs.constants import DEFAULT_MX

        results += bench_sim([200, 1_000, 10_000], args.minutes or (30.0 if args.quick else 120.0),
                             args.sim_mx or DEFAULT_MX)
    for r in results:
        r.emit()
    return 0


if __name__ == "__main__":
    sys.exit(main())
