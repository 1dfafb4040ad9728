#!/usr/bin/env python3
"""The event loop: uvloop against asyncio's own loop, same run (issue 15, item 2).

    python benchmarks/bench_loop.py            # both parts, 3 rounds
    python benchmarks/bench_loop.py --quick    # 1 round, fewer messages
    python benchmarks/bench_loop.py --only device|relay

* device: a busy device, ``svc.Echo(...)`` invocations/s over a secure session, 32 in flight
  (bench_core.py's rig); the device's process runs on uvloop / on asyncio's loop, the control
  point (this process) on asyncio's loop in both.
* relay: a relay node (TLS, bench_relay.py's node) on uvloop / on asyncio's loop, messages/s
  and one-way latency between two clients in this process (128 B, window 64).

The server processes pick their loop with igrs.cli.event_loop, as ``igrs device run --loop``
and ``igrs relay serve --loop`` do. Rounds alternate the two loops; the best round is kept.
Needs uvloop (``pip install 'igrs[uvloop]'``); without it, prints why and reports nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from _result import BenchResult, say

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
QUICK = os.environ.get("IGRS_BENCH_QUICK", "") not in ("", "0")
LOOPS = ("asyncio", "uvloop")
LOOP_ENV = "IGRS_BENCH_SERVER_LOOP"  # read by bench_core.py's device child


@dataclass
class Result(BenchResult):
    bench: str = "loop"


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (/proc/PID/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# --- device ----------------------------------------------------------------------------------------
async def device_round(loop: str, calls: int) -> tuple[float, float]:
    """(invocations/s, the device process's CPU seconds per invocation)."""
    import bench_core

    os.environ[LOOP_ENV] = loop
    async with bench_core.Rig() as rig:
        await bench_core.throughput(rig.invoke, 200, 32)  # warm-up
        assert rig.device.proc is not None
        cpu = cpu_seconds(rig.device.proc.pid)
        rate = await bench_core.throughput(rig.invoke, calls, 32)
        return rate, (cpu_seconds(rig.device.proc.pid) - cpu) / calls


def bench_device(rounds: int, calls: int) -> list[Result]:
    say(f"== device: invocations/s over a secure session, 32 in flight, {calls} calls, best of {rounds} ==")
    best = dict.fromkeys(LOOPS, 0.0)
    cpu: dict[str, list[float]] = {loop: [] for loop in LOOPS}
    for i in range(rounds):
        for loop in LOOPS if i % 2 == 0 else reversed(LOOPS):
            rate, per_call = asyncio.run(device_round(loop, calls))
            say(f"  round {i + 1}: device on {loop:7s} {rate:8,.0f} invocations/s, "
                f"device CPU {per_call * 1e6:6.0f} us per invocation")
            best[loop] = max(best[loop], rate)
            cpu[loop].append(per_call)
    us = {loop: statistics.median(v) * 1e6 for loop, v in cpu.items()}
    return [
        Result("device on uvloop: device CPU per invocation (median of rounds)", us["uvloop"], "us",
               "the same device on asyncio's loop", us["asyncio"], "lower",
               goal="a real gain: <= 0.9x", met=us["uvloop"] <= 0.9 * us["asyncio"],
               note="CPU time of the device process: what a loaded machine does not blur"),
        Result("device on uvloop: invocations/s, 32 in flight (best round)", best["uvloop"], "ops/s",
               "the same device on asyncio's loop", best["asyncio"], "higher",
               note="information: wall-clock rate, blurred by other processes on a shared machine"),
    ]


# --- relay -----------------------------------------------------------------------------------------
class RelayChild:
    """A relay node in its own process on the chosen loop (bench_relay.serve)."""

    def __init__(self, state: Path, loop: str) -> None:
        from bench_relay import free_port

        self.proc = subprocess.Popen(
            [sys.executable, __file__, "--serve-relay", str(state), str(free_port()), loop],
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
            self.proc.wait()


def bench_relay_loop(rounds: int, messages: int) -> list[Result]:
    import bench_relay

    say(f"== relay: a TLS relay node, 128 B messages, window 64, {messages} messages, best of {rounds} ==")
    rate = dict.fromkeys(LOOPS, 0.0)
    latency = dict.fromkeys(LOOPS, float("inf"))
    cpu: dict[str, list[float]] = {loop: [] for loop in LOOPS}
    with tempfile.TemporaryDirectory(prefix="bench-loop-") as tmp:
        state = Path(tmp) / "state"
        users, dev, dev_token = asyncio.run(bench_relay.make_accounts(state, 1))
        for i in range(rounds):
            for loop in LOOPS if i % 2 == 0 else reversed(LOOPS):
                child = RelayChild(state, loop)
                try:
                    flow = asyncio.run(bench_relay.relay_flow(child, users[0], (dev, dev_token),  # type: ignore[arg-type]
                                                              messages, 64, 128))
                    # the node's CPU over the windowed phase (relay_flow first sends some one at a time)
                    r, lat, per_message = flow.rate, flow.lat or [0.0], flow.node_cpu_us / 1e6
                finally:
                    child.close()
                median = statistics.median(lat)
                cpu[loop].append(per_message)
                say(f"  round {i + 1}: node on {loop:7s} {r:8,.0f} msg/s, median one-way latency "
                    f"{median * 1e6:6.0f} us, node CPU {per_message * 1e6:5.1f} us per message")
                rate[loop] = max(rate[loop], r)
                latency[loop] = min(latency[loop], median)
    us = {loop: statistics.median(v) * 1e6 for loop, v in cpu.items()}
    return [
        Result("relay node on uvloop: node CPU per message (median of rounds)", us["uvloop"], "us",
               "the same node on asyncio's loop", us["asyncio"], "lower",
               goal="a real gain: <= 0.9x", met=us["uvloop"] <= 0.9 * us["asyncio"],
               note="CPU time of the node process: what a loaded machine does not blur"),
        Result("relay node on uvloop: msg/s (128 B, window 64, best round)", rate["uvloop"], "msg/s",
               "the same node on asyncio's loop", rate["asyncio"], "higher",
               note="information: wall-clock rate, blurred by other processes on a shared machine"),
        Result("relay node on uvloop: median one-way latency", latency["uvloop"] * 1e6, "us",
               "the same node on asyncio's loop", latency["asyncio"] * 1e6, "lower"),
    ]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--only", action="append", choices=["device", "relay"])
    p.add_argument("--quick", action="store_true", default=QUICK)
    args = p.parse_args()
    try:
        import uvloop  # noqa: F401
    except ImportError:
        say("bench_loop: uvloop is not installed (pip install 'igrs[uvloop]'): nothing to compare")
        return 0
    only = set(args.only or ["device", "relay"])
    rounds = 1 if args.quick else 3
    results: list[Result] = []
    if "device" in only:
        results += bench_device(rounds, 1000 if args.quick else 3000)
    if "relay" in only:
        results += bench_relay_loop(rounds, 5000 if args.quick else 20000)
    for r in results:
        r.emit()
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "--serve-relay":
        sys.path.insert(0, str(HERE))
        import bench_relay

        from igrs.cli import event_loop

        event_loop.run(bench_relay.serve(Path(sys.argv[2]), int(sys.argv[3])), sys.argv[4])
    else:
        sys.exit(main())
