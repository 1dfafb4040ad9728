"""Load on the core protocol over loopback (issue 3): many concurrent invocations, a steady
stream of attribute events, and a subscriber too slow to keep up.

Device and control point share this process (and the event loop); everything between them
goes over TCP on 127.0.0.1, sealed in a secure pipe. ``IGRS_LOAD_EVENT_SECONDS`` (default 10)
sets the length of the 1,000 events/s run.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import random
import sys
import time
import tracemalloc
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from igrs import ControlPoint, Device
from igrs.constants import EVENT_BATCH_MAX, EVENT_QUEUE_LIMIT
from igrs.node.service import Service, action, attribute

LO = ["lo"]
LOAD = "urn:IGRS:ServiceType:LoadTest:1"
EVENT_RATE = 1000  # changes per second
EVENT_SECONDS = float(os.environ.get("IGRS_LOAD_EVENT_SECONDS", "10"))


class LoadTest(Service):
    service_type = LOAD
    name = "Load test"
    counter = attribute(int, 0, notifiable=True)
    blob = attribute(str, "", notifiable=True)

    def __init__(self) -> None:
        self.calls = 0
        self.rng = random.Random(3)

    @action
    async def Echo(self, tag: str, n: int) -> dict[str, int]:
        self.calls += 1
        await asyncio.sleep(self.rng.random() * 0.02)  # answers come back out of order
        return {tag: n * 3}


@pytest.fixture
async def rig(free_udp_port: int) -> AsyncIterator[tuple[Device, LoadTest, ControlPoint]]:
    """A device sharing LoadTest and a control point paired with it."""
    pins: list[str] = []
    service = LoadTest()
    async with Device(name="Load TV", device_type="TV", interfaces=LO, port=free_udp_port, http_port=0,
                      on_pin=pins.append, watch_interfaces=False) as dev:
        dev.add_service(service)
        async with ControlPoint(interfaces=LO, port=free_udp_port, keepalive_interval=0) as cp:
            assert await cp.search(timeout=1.2, mx=1, target=dev.device_id)

            async def read_pin(_digits: int) -> str:
                return pins[-1]

            await cp.pair(dev.device_id, read_pin)
            yield dev, service, cp


async def test_500_concurrent_invocations_none_lost_or_mixed_up(
        rig: tuple[Device, LoadTest, ControlPoint]) -> None:
    dev, service, cp = rig
    async with cp.session(dev.device_id, LOAD) as svc:
        tags = [f"call-{i}-{random.getrandbits(32):08x}" for i in range(500)]
        results = await asyncio.wait_for(
            asyncio.gather(*(svc.Echo(tag=tag, n=i) for i, tag in enumerate(tags))), 60)
        assert results == [{tag: i * 3} for i, tag in enumerate(tags)]
        assert service.calls == 500
        assert svc._seq.outstanding == 0


# The device of the sustained test, in its own process: its scheduling is not ours.
CHILD = r"""
import asyncio, json, random, sys
from igrs import Device
from igrs.node.service import Service, action

class LoadTest(Service):
    service_type = "urn:IGRS:ServiceType:LoadTest:1"
    calls = 0

    @action
    async def Echo(self, tag: str, n: int) -> dict[str, int]:
        LoadTest.calls += 1
        await asyncio.sleep(random.random() * 0.005)
        return {tag: n * 3}

    @action
    async def Calls(self) -> int:
        return LoadTest.calls

async def main():
    dev = Device(name="Load TV", interfaces=["lo"], port=int(sys.argv[1]), http_port=0, state_dir=sys.argv[2],
                 watch_interfaces=False, on_pin=lambda pin: print(json.dumps({"pin": pin}), flush=True))
    dev.add_service(LoadTest())
    async with dev:
        print(json.dumps({"id": str(dev.device_id)}), flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)

asyncio.run(main())
"""


async def test_sustained_concurrency_against_a_device_in_another_process(
        free_udp_port: int, tmp_path: Any) -> None:
    """More requests in flight than connections to the device (8), for thousands of calls:
    none may be starved into a time-out or fall out of the pipe's replay window."""
    from igrs.wire.ids import DeviceId

    child = await asyncio.create_subprocess_exec(
        sys.executable, "-c", CHILD, str(free_udp_port), str(tmp_path / "device"),
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)
    assert child.stdout is not None and child.stdin is not None
    try:
        device_id = DeviceId.parse(json.loads(await asyncio.wait_for(child.stdout.readline(), 20))["id"])
        async with ControlPoint(interfaces=LO, port=free_udp_port, keepalive_interval=0,
                                state_dir=tmp_path / "cp") as cp:
            assert await cp.search(timeout=1.2, mx=1, target=device_id)

            async def read_pin(_digits: int) -> str:
                return str(json.loads(await asyncio.wait_for(child.stdout.readline(), 10))["pin"])  # type: ignore[union-attr]

            await cp.pair(device_id, read_pin)
            async with cp.session(device_id, LOAD) as svc:
                total, workers = 2000, 64
                todo = iter(range(total))
                failures: list[str] = []
                wrong: list[int] = []

                async def worker() -> None:
                    for i in todo:
                        tag = f"t{i}"
                        try:
                            if await svc.Echo(tag=tag, n=i) != {tag: i * 3}:
                                wrong.append(i)
                        except Exception as exc:
                            failures.append(f"{type(exc).__name__}: {exc}")

                await asyncio.wait_for(asyncio.gather(*(worker() for _ in range(workers))), 60)
                assert not failures, f"{len(failures)} calls failed, e.g. {sorted(set(failures))[:3]}"
                assert not wrong, f"mis-correlated answers for calls {wrong[:10]}"
                assert await svc.Calls() == total
    finally:
        child.stdin.close()
        try:
            await asyncio.wait_for(child.wait(), 10)
        except TimeoutError:
            child.kill()
            await child.wait()


async def _next(stream: Any, timeout: float) -> Any:
    return await asyncio.wait_for(stream.__anext__(), timeout)


async def test_a_subscriber_receives_1000_events_per_second_in_order(
        rig: tuple[Device, LoadTest, ControlPoint]) -> None:
    dev, service, cp = rig
    total = int(EVENT_RATE * EVENT_SECONDS)
    received: list[int] = []
    sequences: list[int] = []
    flagged: list[int] = []
    async with cp.session(dev.device_id, LOAD) as svc, svc.subscribe("counter") as stream:
        it = stream.__aiter__()
        first = await _next(it, 5)
        assert (first.name, first.value) == ("counter", 0)  # the initial value
        done = asyncio.Event()
        lag_max = 0

        async def consume() -> None:
            while len(received) < total:
                change = await it.__anext__()
                received.append(change.value)
                sequences.append(change.sequence)
                if change.coalesced:
                    flagged.append(change.value)
            done.set()

        consumer = asyncio.create_task(consume())
        started = time.monotonic()
        published = 0
        while published < total:  # the producer: 1,000 changes a second, paced by the clock
            due = min(total, int((time.monotonic() - started) * EVENT_RATE) + 1)
            while published < due:
                published += 1
                service.counter = published
            lag_max = max(lag_max, published - len(received))
            await asyncio.sleep(0.005)
        produced_in = time.monotonic() - started
        await asyncio.wait_for(done.wait(), 30)
        delivered_in = time.monotonic() - started
        consumer.cancel()
    assert received == list(range(1, total + 1)), "events lost, repeated or out of order"
    assert flagged == [], f"changes flagged coalesced (values dropped before): {flagged[:5]}"
    # Notification numbers: from 1 (0 carried the initial value), never decreasing, no gap.
    assert sequences[0] == 1 and all(0 <= b - a <= 1 for a, b in itertools.pairwise(sequences))
    notifications = sequences[-1]
    assert lag_max < EVENT_QUEUE_LIMIT
    print(f"\n{total} changes in {produced_in:.1f} s, all delivered after {delivered_in:.1f} s in "
          f"{notifications} notifications (≤ {EVENT_BATCH_MAX} changes each), max lag {lag_max}")


def _rss_kib() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


async def test_a_stalled_subscriber_cannot_grow_the_device_memory(
        rig: tuple[Device, LoadTest, ControlPoint]) -> None:
    dev, service, cp = rig
    release = asyncio.Event()
    stalled = 0
    original: Callable[..., Awaitable[Any]] = cp._on_callback

    async def stall(frame: Any, address: str) -> Any:
        """The subscriber's callback endpoint accepts the connection and then hangs."""
        nonlocal stalled
        stalled += 1
        await release.wait()
        return await original(frame, address)

    cp._on_callback = stall  # type: ignore[method-assign]  # before the callback server starts
    changes = 50_000  # of each of the two attributes: 100,000 changes
    async with cp.session(dev.device_id, LOAD) as svc:
        stream = svc.subscribe()
        await asyncio.wait_for(stream.start(), 10)
        sub = dev.services.subscriptions.get(stream.subscription_id or 0)
        assert sub is not None
        for _ in range(200):  # the initial values are in flight, stuck in the subscriber
            if stalled:
                break
            await asyncio.sleep(0.01)
        assert stalled == 1 and sub.inflight is not None
        rss_before = _rss_kib()
        tracemalloc.start()
        try:
            base = tracemalloc.get_traced_memory()[0]
            pending_max = 0
            filler = "x" * 1000
            for i in range(1, changes + 1):
                service.counter = i
                service.blob = f"{i:08d}{filler}"  # ~1 KB each: 100 MB if every change were kept
                if i <= EVENT_QUEUE_LIMIT or i % 1000 == 0:
                    pending_max = max(pending_max, sub.pending)
                if i % 1000 == 0:
                    await asyncio.sleep(0)  # let the device's loop run (it is stalled, not idle)
            grown, peak = (m - base for m in tracemalloc.get_traced_memory())
        finally:
            tracemalloc.stop()
        rss_growth = _rss_kib() - rss_before
        # Still the first notification (the initial values) in flight: deliveries time out and
        # the same batch is retried, nothing else is sent meanwhile.
        assert sub.inflight is not None and sub.inflight.sequence == 0 and stalled >= 1
        assert dev.services.subscriptions.get(sub.subscription_id) is sub
        assert EVENT_QUEUE_LIMIT / 2 < pending_max <= EVENT_QUEUE_LIMIT, pending_max  # filled, then coalesced
        assert sub.coalesced is not None and set(sub.coalesced) == {"counter", "blob"}
        assert grown < 4 * 2**20 and peak < 8 * 2**20, (grown, peak)
        assert rss_growth < 64 * 1024, f"RSS grew by {rss_growth} KiB"
        print(f"\n{2 * changes} changes to a stalled subscriber: queue ≤ {pending_max}, traced memory "
              f"+{grown / 2**10:.0f} KiB (peak +{peak / 2**10:.0f} KiB), RSS +{rss_growth} KiB")

        # The subscriber recovers: the initial values, then one coalesced notification with
        # the latest value of each attribute.
        release.set()
        seen: dict[str, Any] = {}
        it = stream.__aiter__()
        latest_blob = f"{changes:08d}"
        while seen.get("counter") != changes or not str(seen.get("blob", "")).startswith(latest_blob):
            change = await _next(it, 10)
            seen[change.name] = change.value
            if change.value not in (0, ""):
                assert change.coalesced or change.name == "blob", change
        assert sub.pending == 0
        await stream.aclose()
