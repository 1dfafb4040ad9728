"""A simulated LAN of IGRS devices driven from the sans-IO discovery core, in fake time.

No sockets and no event loop: every device is an ``igrs.core.discovery.DeviceDiscovery``, the
control point a ``ControlPointDiscovery``; datagrams are the real encoded bytes, delivered at
once (no loss) by a discrete-event loop that polls each core at its ``next_deadline()``.
Multicast from devices is delivered to the control point only: devices do not decode other
devices' announcements (``DeviceDiscovery.on_datagram`` drops anything but M-SEARCH unread),
so the N x N deliveries of a real LAN are counted, not performed.

Used by ``bench_lan.py`` (part b); ``simulate(n)`` returns the figures of one LAN.
"""

from __future__ import annotations

import gc
import heapq
import ipaddress
import random
import time
import tracemalloc
import uuid
from dataclasses import dataclass

from igrs.core.discovery import (
    ControlPointDiscovery,
    DeviceAppeared,
    DeviceDiscovery,
    DeviceGone,
    Interface,
    SendMulticast,
    SendUnicast,
)
from igrs.wire import isdp
from igrs.wire.ids import DeviceId, DeviceType

ROOMS = ["Living room", "Kitchen", "Bedroom", "Study", "客厅", "卧室", "Hall", "Garage"]
KINDS = ["TV", "STB", "MediaServer", "PC", "MobilePhone", "AudioRenderer"]
NETWORK = ipaddress.ip_network("10.0.0.0/8")
CP_ADDRESS = ("10.255.255.254", 3880)
POWER_ON_SPREAD = 60.0  # s: devices are switched on at U(0, 60) s
SEARCH_AT = 2 * POWER_ON_SPREAD  # s: a fresh control point searches once every device is up


@dataclass
class LanFigures:
    devices: int
    mx: int
    found: int  # devices the control point knew MX + 1 s after its search
    converged_after: float  # s from the search until the last device was known (nan if never)
    responses: int  # unicast search responses sent (a device may answer both search copies)
    steady_minutes: float  # fake minutes of the steady-state window
    multicast_per_device_min: float  # datagrams each device multicast per minute in that window
    lan_multicast_per_s: float  # all devices' multicast datagrams per second in that window
    lost: int  # devices the control point forgot during the window (expired): 0 expected
    registry_bytes: int  # traced memory of a control point knowing every device
    cp_cpu_s_per_min: float  # CPU seconds the control point's core spent per minute of LAN time
    cp_cpu_per_datagram: float  # ... per datagram it received in the steady state (seconds)
    wall_s: float  # real seconds this simulation took


class Lan:
    def __init__(self, n: int, seed: int) -> None:
        rng = random.Random(seed)
        self.rng = rng
        self.devices: list[DeviceDiscovery] = []
        self.addresses: list[tuple[str, int]] = []
        self.heap: list[tuple[float, int]] = []  # (deadline, device index); stale entries re-checked
        for i in range(n):
            ip = str(NETWORK.network_address + 2 + i)
            device = DeviceDiscovery(
                DeviceId(uuid.UUID(int=rng.getrandbits(128), version=4)),
                DeviceType(rng.choice(KINDS), 1),
                f"{rng.choice(ROOMS)} {i}",
                rng=random.Random(rng.getrandbits(64)),
            )
            device.set_interfaces({Interface("eth0", ip, NETWORK): f"http://{ip}:3880/IGRS"}, 0.0)
            self.devices.append(device)
            self.addresses.append((ip, 3880))
            heapq.heappush(self.heap, (rng.uniform(0, POWER_ON_SPREAD), i))  # its power-on time
        self.cp: ControlPointDiscovery | None = None
        self.cp_cpu = 0.0
        self.multicast = [0] * n
        self.responses = 0
        self.arrivals: dict[DeviceId, float] = {}
        self.gone = 0
        self.to_cp: list[tuple[bytes, tuple[str, int]]] = []  # what the control point received

    def _to_cp(self, payload: bytes, source: tuple[str, int], now: float) -> None:
        if self.cp is None:
            return
        t0 = time.process_time()
        events = self.cp.on_datagram(payload, source, "eth0", now)
        self.cp_cpu += time.process_time() - t0
        self.to_cp.append((payload, source))
        for event in events:
            if isinstance(event, DeviceAppeared):
                self.arrivals.setdefault(event.device.device_id, now)
            elif isinstance(event, DeviceGone):
                self.gone += 1

    def _handle(self, i: int, actions: list[SendMulticast | SendUnicast], now: float) -> None:
        for action in actions:
            if isinstance(action, SendMulticast):
                self.multicast[i] += 1
                self._to_cp(action.payload, self.addresses[i], now)
            elif action.address == CP_ADDRESS:
                self.responses += 1
                self._to_cp(action.payload, self.addresses[i], now)

    def _search(self, now: float, mx: int) -> None:
        assert self.cp is not None
        t0 = time.process_time()
        sends = self.cp.search(now, mx=mx)
        self.cp_cpu += time.process_time() - t0
        self._deliver_search(sends, now)

    def _deliver_search(self, sends: list[SendMulticast], now: float) -> None:
        for send in sends:
            for i, device in enumerate(self.devices):
                device.on_datagram(send.payload, CP_ADDRESS, "eth0", now)
                deadline = device.next_deadline()
                if deadline is not None:
                    heapq.heappush(self.heap, (deadline, i))

    def run_until(self, end: float) -> None:
        heap, devices = self.heap, self.devices
        while True:
            cp_deadline = self.cp.next_deadline() if self.cp is not None else None
            device_deadline = heap[0][0] if heap else None
            if cp_deadline is not None and cp_deadline <= end and (
                device_deadline is None or cp_deadline <= device_deadline
            ):
                assert self.cp is not None
                t0 = time.process_time()
                actions, events = self.cp.poll(cp_deadline)
                self.cp_cpu += time.process_time() - t0
                self.gone += sum(isinstance(e, DeviceGone) for e in events)
                self._deliver_search([a for a in actions if isinstance(a, SendMulticast)], cp_deadline)
                continue
            if device_deadline is None or device_deadline > end:
                return
            now, i = heapq.heappop(heap)
            device = devices[i]
            if not device.running:
                actions = device.start(now)
            else:
                deadline = device.next_deadline()
                if deadline is None or deadline > now:  # a stale entry
                    continue
                actions = device.poll(now)
            self._handle(i, actions, now)
            deadline = device.next_deadline()
            if deadline is not None:
                heapq.heappush(heap, (deadline, i))


def registry_bytes(received: list[tuple[bytes, tuple[str, int]]], cp_id: DeviceId,
                   max_devices: int) -> tuple[int, int]:
    """Traced memory of a fresh control point ``cp_id`` (the search responses are addressed to
    it) fed ``received`` (the decode memo emptied), and the number of devices it then knows."""
    gc.collect()
    isdp._decode_cached.cache_clear()
    tracemalloc.start()
    try:
        cp = ControlPointDiscovery(cp_id, max_devices=max_devices)
        cp.set_interfaces([Interface("eth0", CP_ADDRESS[0], NETWORK)])
        for k, (payload, source) in enumerate(received):
            cp.on_datagram(payload, source, "eth0", SEARCH_AT + k * 1e-4)
        isdp._decode_cached.cache_clear()
        gc.collect()
        used = tracemalloc.get_traced_memory()[0]
        return used, len(cp.devices)
    finally:
        tracemalloc.stop()


def simulate(n: int, *, mx: int = 2, steady_minutes: float = 120.0, seed: int = 1) -> LanFigures:
    """Power ``n`` devices on, let a fresh control point search at SEARCH_AT, then run the
    steady state for ``steady_minutes`` of fake time with the default timers."""
    wall = time.perf_counter()
    lan = Lan(n, seed)
    lan.run_until(SEARCH_AT)
    cp = ControlPointDiscovery(DeviceId(uuid.UUID(int=lan.rng.getrandbits(128), version=4)),
                               max_devices=max(n, 1), rng=random.Random(seed))
    cp.set_interfaces([Interface("eth0", CP_ADDRESS[0], NETWORK)])
    lan.cp = cp
    lan._search(SEARCH_AT, mx)
    search_end = SEARCH_AT + mx + 1.0
    lan.run_until(search_end)
    found = len(lan.arrivals)
    converged = max(lan.arrivals.values()) - SEARCH_AT if found == n else float("nan")
    responses = lan.responses
    received = list(lan.to_cp)
    # steady state: count from here on
    lan.multicast = [0] * n
    lan.cp_cpu = 0.0
    lan.gone = 0
    lan.to_cp = []
    end = search_end + steady_minutes * 60
    lan.run_until(end)
    lost = lan.gone + (n - len(cp.devices))
    sent = sum(lan.multicast)
    used, known = registry_bytes(received, cp.device_id, max(n, 1))
    assert known == found, (known, found)
    return LanFigures(
        devices=n, mx=mx, found=found, converged_after=converged, responses=responses,
        steady_minutes=steady_minutes, multicast_per_device_min=sent / n / steady_minutes,
        lan_multicast_per_s=sent / (steady_minutes * 60), lost=lost, registry_bytes=used,
        cp_cpu_s_per_min=lan.cp_cpu / steady_minutes, cp_cpu_per_datagram=lan.cp_cpu / max(1, len(lan.to_cp)),
        wall_s=time.perf_counter() - wall,
    )
