"""``igrs conformance watch``: the passive checker on live traffic. Joins the ISDP groups on
the chosen interfaces (receive only: nothing is ever sent, and ``IP_MULTICAST_IF`` /
``IPV6_MULTICAST_IF`` name the interface anyway), checks every datagram heard with the rules
of ``igrs.conformance.passive`` and prints each violation as it is found.

A flood cannot hurt it: datagrams wait in a bounded queue (excess dropped and counted), and
violation lines are rate-limited ("… K more suppressed"). Output and exit statuses:
specs/conformance/passive.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import socket
import sys
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, TextIO

from igrs.conformance.passive import PassiveChecker, Violation, endpoint_text
from igrs.constants import IGRS_PORT, IPV4_GROUP, IPV4_GROUP_ALT, IPV6_GROUP
from igrs.core.discovery import Interface
from igrs.net.isdp import _v4_group_socket, _v6_group_socket

QUEUE_LIMIT: Final = 4096  # datagrams waiting to be checked; more are dropped and counted
READ_BATCH: Final = 256  # datagrams read per wake-up of a socket
CHECK_BATCH: Final = 256  # datagrams checked before yielding to the event loop
OUTPUT_RATE: Final = 20.0  # violation lines per second ...
OUTPUT_BURST: Final = 50.0  # ... with this burst; the rest are counted and summarised
TICK: Final = 1.0  # s between overdue-announcement checks and "suppressed" summaries
STATUS_INTERVAL: Final = 10.0  # s between "… N IGRS message(s) so far" lines (stderr)
RECV_BUFFER: Final = 65536  # bytes read per datagram (larger ones are reported by size)
IP_RECVTTL: Final = getattr(socket, "IP_RECVTTL", 12)
IP_TTL: Final = getattr(socket, "IP_TTL", 2)
IPV6_RECVHOPLIMIT: Final = getattr(socket, "IPV6_RECVHOPLIMIT", 51)
IPV6_HOPLIMIT: Final = getattr(socket, "IPV6_HOPLIMIT", 52)


@dataclass
class Listener:
    sock: socket.socket
    group: str
    iface: Interface

    @property
    def label(self) -> str:
        return f"{self.iface.name} {endpoint_text(self.group, self.sock.getsockname()[1])}"


def open_listeners(interfaces: Sequence[Interface], port: int,
                   warn: Callable[[str], None]) -> list[Listener]:
    """Group sockets joined on exactly these interfaces (a failure to join one is warned)."""
    out: list[Listener] = []
    for iface in interfaces:
        for group in ((IPV4_GROUP, IPV4_GROUP_ALT) if iface.family == 4 else (IPV6_GROUP,)):
            try:
                out.append(Listener(_group_socket(group, port, iface), group, iface))
            except OSError as exc:
                warn(f"cannot listen on {group} on {iface.name}: {exc}")
    return out


def _group_socket(group: str, port: int, iface: Interface) -> socket.socket:
    options: list[tuple[int, int, int | bytes]]
    if iface.family == 4:
        sock = _v4_group_socket(group, port, iface)
        options = [(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(iface.address)),
                   (socket.IPPROTO_IP, IP_RECVTTL, 1)]
    else:
        sock = _v6_group_socket(port, iface)
        options = [(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF, iface.scope_id),
                   (socket.IPPROTO_IPV6, IPV6_RECVHOPLIMIT, 1)]
    try:
        for level, name, value in options:
            sock.setsockopt(level, name, value)
    except OSError:
        sock.close()
        raise
    return sock


def _ttl(ancillary: list[tuple[int, int, bytes]]) -> int | None:
    for level, kind, data in ancillary:
        if ((level, kind) in ((socket.IPPROTO_IP, IP_TTL), (socket.IPPROTO_IPV6, IPV6_HOPLIMIT))
                and len(data) >= 4):
            return int.from_bytes(data[:4], sys.byteorder)
    return None


class Output:
    """Violation lines (text or JSON), at most OUTPUT_RATE/s with an OUTPUT_BURST burst."""

    def __init__(self, as_json: bool, out: TextIO, err: TextIO, *, rate: float = OUTPUT_RATE,
                 burst: float = OUTPUT_BURST) -> None:
        self.as_json, self.out, self.err = as_json, out, err
        self.rate, self.burst = rate, burst
        self.tokens, self.at = burst, time.monotonic()
        self.suppressed = 0  # in total
        self._unsaid = 0  # suppressed since the last "… K more suppressed"

    def _line(self, text: str, obj: dict[str, Any]) -> None:
        with contextlib.suppress(OSError, ValueError):  # a closed pipe must not stop the watch
            print(json.dumps(obj) if self.as_json else text, file=self.out, flush=True)

    def violation(self, v: Violation) -> None:
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
        self.at = now
        if self.tokens >= 1:
            self.tokens -= 1
            self._line(str(v), {"event": "violation", **v.to_json()})
        else:
            self.suppressed += 1
            self._unsaid += 1

    def flush(self) -> None:
        if self._unsaid:
            self._line(f"… {self._unsaid} more suppressed", {"event": "suppressed", "count": self._unsaid})
            self._unsaid = 0

    def status(self, text: str) -> None:
        """A progress line for the person watching: stderr only (stdout stays violations)."""
        with contextlib.suppress(OSError, ValueError):
            print(text, file=self.err, flush=True)

    def info(self, text: str, obj: dict[str, Any]) -> None:
        """Status (ready, summary): a JSON line on stdout with --json; text on stderr always."""
        if self.as_json:
            self._line(text, obj)
        with contextlib.suppress(OSError, ValueError):
            print(text, file=self.err, flush=True)


@dataclass
class Watch:
    """The live checker: listeners -> bounded queue -> PassiveChecker -> Output."""

    listeners: list[Listener]
    output: Output
    port: int = IGRS_PORT
    checker: PassiveChecker = field(init=False)
    queue: deque[tuple[float, str, int, str, bytes, int | None]] = field(default_factory=deque)
    dropped: int = 0
    status_interval: float = STATUS_INTERVAL

    def __post_init__(self) -> None:
        self.checker = PassiveChecker(port=self.port, keep=False)
        self._ready = asyncio.Event()

    def _readable(self, listener: Listener) -> None:
        for _ in range(READ_BATCH):
            try:
                data, ancillary, _flags, addr = listener.sock.recvmsg(RECV_BUFFER, 64)
            except OSError:  # nothing more to read now (BlockingIOError), or the socket closed
                return
            if len(self.queue) >= QUEUE_LIMIT:
                self.dropped += 1
                continue
            src = str(addr[0]).partition("%")[0]
            self.queue.append((time.time(), src, addr[1], listener.group, data, _ttl(ancillary)))
            self._ready.set()

    async def _check(self) -> None:
        while True:
            await self._ready.wait()
            self._ready.clear()
            while self.queue:
                for _ in range(min(CHECK_BATCH, len(self.queue))):
                    ts, src, sport, group, data, ttl = self.queue.popleft()
                    for v in self.checker.datagram(ts, src, sport, group, self.port, data, ttl):
                        self.output.violation(v)
                await asyncio.sleep(0)

    async def _tick(self) -> None:
        next_status, last_seen = time.monotonic() + self.status_interval, 0
        while True:
            await asyncio.sleep(TICK)
            for v in self.checker.expire(time.time()):
                self.output.violation(v)
            self.output.flush()
            if time.monotonic() >= next_status:  # that it listens, and hears something
                next_status += self.status_interval
                seen = self.checker.seen
                self.output.status(f"… {seen} IGRS message(s) so far ({seen - last_seen} in the last "
                                   f"{self.status_interval:g} s), {self.checker.count} violation(s)")
                last_seen = seen

    async def run(self, stop: asyncio.Event, duration: float | None) -> None:
        loop = asyncio.get_running_loop()
        for listener in self.listeners:
            loop.add_reader(listener.sock.fileno(), self._readable, listener)
        tasks = [asyncio.create_task(self._check()), asyncio.create_task(self._tick())]
        try:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(duration):
                    await stop.wait()
            for listener in self.listeners:
                self._readable(listener)  # what arrived before the end still counts
            await asyncio.sleep(0)
        finally:
            for listener in self.listeners:
                loop.remove_reader(listener.sock.fileno())
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._drain()
        for v in self.checker.expire(time.time()):
            self.output.violation(v)
        self.output.flush()

    def _drain(self) -> None:
        while self.queue:
            ts, src, sport, group, data, ttl = self.queue.popleft()
            for v in self.checker.datagram(ts, src, sport, group, self.port, data, ttl):
                self.output.violation(v)


async def watch(interfaces: Sequence[Interface], *, port: int = IGRS_PORT, duration: float | None = None,
                as_json: bool = False, out: TextIO | None = None, err: TextIO | None = None,
                stop: asyncio.Event | None = None, status_interval: float = STATUS_INTERVAL) -> int:
    """Run the live checker until ``duration`` elapses or ``stop`` is set (default: SIGINT or
    SIGTERM); the exit status: 0 no violation, 1 violations, 2 nothing could be listened on."""
    output = Output(as_json, out or sys.stdout, err or sys.stderr)
    listeners = open_listeners(interfaces, port, lambda text: print(f"igrs: {text}", file=output.err))
    if not listeners:
        print("igrs: no ISDP group could be joined", file=output.err)
        return 2
    loop = asyncio.get_running_loop()
    own_signals = stop is None
    if stop is None:
        stop = asyncio.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
    w = Watch(listeners, output, port, status_interval=status_interval)
    labels = [listener.label for listener in listeners]
    output.info(f"watching {', '.join(labels)}", {"event": "ready", "listening": labels})
    try:
        await w.run(stop, duration)
    finally:
        if own_signals:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)
        for listener in listeners:
            listener.sock.close()
    c = w.checker
    output.info(f"{c.seen} IGRS message(s) checked, {c.count} violation(s)",
                {"event": "summary", "checked": c.seen, "violations": c.count,
                 "suppressed": output.suppressed, "dropped": w.dropped})
    if output.suppressed or w.dropped:
        with contextlib.suppress(OSError, ValueError):
            print(f"({output.suppressed} violation line(s) suppressed, {w.dropped} datagram(s) dropped "
                  "unchecked: queue full)", file=output.err, flush=True)
    return 1 if c.count else 0
