"""Dead-device detection on one XMPP server (Prosody and ejabberd), the relay's 90 s bound.

The device is a real process (an XmppClient with XEP-0198) related to an observer:
* SIGKILL: the kernel closes its connection; the server holds the session for the resume
  window (test servers: servers.RESUME_WINDOW s; shipped 20 s) and then tells the observer;
* SIGSTOP (hung, or half-open: the connection stays up): Prosody 0.12 never notices, ejabberd
  only after its ping timeout; the observer's liveness probe (igrs/xmpp/liveness.py, short
  period here, shipped 30 s / 10 s) shows it offline, and restores it when it answers again.
Timings are printed (-s).
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest
from servers import LOOPBACK, RESUME_WINDOW
from xmpp_helpers import XWorld

from igrs.relay.ids import Principal
from igrs.xmpp.client import XmppClient

pytestmark = pytest.mark.timeout(60)

PROBE_INTERVAL, PROBE_TIMEOUT = 1.0, 2.0  # s, test values (shipped: igrs.xmpp.liveness)
BOUND = 90.0  # s, specs/relay.md

DEVICE = """
import asyncio, sys
from igrs.xmpp.client import XmppClient
async def main():
    c = XmppClient(sys.argv[1], sys.argv[2], domain=sys.argv[3], servers=[(sys.argv[4], int(sys.argv[5]))],
                   cafile=sys.argv[6])
    await c.connect()
    print("READY", flush=True)
    await asyncio.Event().wait()
asyncio.run(main())
"""


@pytest.fixture
def spawn() -> Iterator[list[subprocess.Popen[str]]]:
    procs: list[subprocess.Popen[str]] = []
    yield procs
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGCONT)
            p.kill()
        p.wait()


async def device_process(xw: XWorld, observer: XmppClient, procs: list[subprocess.Popen[str]]
                         ) -> tuple[Principal, subprocess.Popen[str]]:  # fmt: skip
    """A device related to ``observer`` (set up in-process), then logged in by its own process."""
    dev = await xw.client(user=False)
    await xw.befriend(observer, dev)
    await observer.subscribe_presence()
    await dev.close()
    xw.clients.remove(dev)
    await seen(observer, dev.principal, False, 5)
    s = xw.server
    proc = subprocess.Popen(
        [sys.executable, "-c", DEVICE, str(dev.principal), xw.passwords[dev.principal], s.domain, LOOPBACK,
         str(s.c2s_port), str(s.cert)], stdout=subprocess.PIPE, text=True)  # fmt: skip
    procs.append(proc)
    line = await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), 20)  # type: ignore[union-attr]
    assert line.strip() == "READY"
    await seen(observer, dev.principal, True, 5)
    return dev.principal, proc


async def seen(c: XmppClient, who: Principal, online: bool, timeout: float) -> float:
    deadline = time.monotonic() + timeout
    while True:
        ev = await asyncio.wait_for(c.presence.get(), max(0.01, deadline - time.monotonic()))
        if ev.principal == who and ev.online == online:
            return time.monotonic()


async def test_killed_and_hung_devices_shown_offline(xw: XWorld, spawn: list[subprocess.Popen[str]]) -> None:
    """Two devices at once: one SIGKILLed (its observer's probe off: the server tells), one
    SIGSTOPped (its observer's probe on: the probe tells, and restores it after SIGCONT)."""
    watch_killed, watch_hung = await xw.client(), await xw.client()
    (killed, p_killed), (hung, p_hung) = await asyncio.gather(
        device_process(xw, watch_killed, spawn), device_process(xw, watch_hung, spawn))
    watch_hung.liveness.configure(PROBE_INTERVAL, PROBE_TIMEOUT)
    await asyncio.sleep(PROBE_INTERVAL + 0.5)
    assert watch_hung.liveness.corrected == 0  # a live device answers the probe
    os.kill(p_killed.pid, signal.SIGKILL)
    os.kill(p_hung.pid, signal.SIGSTOP)
    t0 = time.monotonic()
    t_killed, t_hung = await asyncio.gather(
        seen(watch_killed, killed, False, RESUME_WINDOW + 10),
        seen(watch_hung, hung, False, PROBE_INTERVAL + PROBE_TIMEOUT + 5))
    assert watch_killed.liveness.corrected == 0  # the server told (probe period 30 s)
    assert watch_hung.liveness.corrected == 1
    assert (await watch_hung.subscribe_presence())[str(hung)] is False
    os.kill(p_hung.pid, signal.SIGCONT)
    t1 = time.monotonic()
    back = await seen(watch_hung, hung, True, PROBE_INTERVAL + PROBE_TIMEOUT + 5) - t1
    assert watch_hung.liveness.restored == 1  # the probe found it answering again
    print(f"\nDEAD-DEVICE {xw.server.kind}: SIGKILLed device shown offline after {t_killed - t0:.2f} s "
          f"(resume window {RESUME_WINDOW} s); SIGSTOPped device shown offline by the probe after "
          f"{t_hung - t0:.2f} s, online again {back:.2f} s after SIGCONT (probe {PROBE_INTERVAL} s / "
          f"{PROBE_TIMEOUT} s); bound {BOUND} s")  # fmt: skip
