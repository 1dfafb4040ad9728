"""A flood of CreatePipeRequests claiming a paired device's id must not keep that device out
(issue 12, item 3).

Three hosts (tests/netbed.py): a TV (``igrs device run``) paired with a controller, and an
attacker that, from its one address, sends CreatePipeRequests claiming the controller's
public device id as fast as the TV answers (the claim is only disproved by the signature
of the AuthenticateRequest, which the attacker never sends). The controller meanwhile
opens nine secure pipes to the TV, one after the other: all nine must succeed.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from netbed import Host, LineReader

from igrs.node.keystore import KeyStore, PairedDevice

pytestmark = pytest.mark.netns

FLOOD = r"""
import asyncio, json, sys, time
from igrs.core.security import LocalIdentity, PipeInitiator
from igrs.errors import IGRSError
from igrs.net.http import IgrsHttpClient
from igrs.wire.answers import expect_success
from igrs.wire.bodies import pipes as bodies
from igrs.wire.ids import DeviceId

async def main():
    claimed, tv = DeviceId.parse(sys.argv[1]), DeviceId.parse(sys.argv[2])
    url, seconds = sys.argv[3], float(sys.argv[4])
    fake = LocalIdentity.generate(claimed)  # the claimed id, with a key of our own
    http = IgrsHttpClient(claimed)
    counts = {"accepted": 0, "refused": 0}
    end = time.monotonic() + seconds

    async def report():
        while time.monotonic() < end:
            await asyncio.sleep(0.5)
            print(json.dumps({"event": "flooding", **counts}), flush=True)

    async def flood():
        while time.monotonic() < end:
            init = PipeInitiator(fake, tv, peers=lambda _: fake.public_key)
            try:
                request = bodies.CreatePipeRequest(True, init.create_pipe_request())
                seq, frame = await http.send(url, request, tv)
                expect_success(frame, bodies.CreatePipeResponse, seq)
                counts["accepted"] += 1
            except IGRSError:
                counts["refused"] += 1

    await asyncio.gather(report(), *(flood() for _ in range(8)))

asyncio.run(main())
"""

CONTROLLER = r"""
import asyncio, json, sys
from igrs.errors import IGRSError
from igrs.node.control import ControlPoint
from igrs.node.pipe import open_pipe

async def main():
    iface, port, state, tv = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
    async with ControlPoint(interfaces=[iface], port=port, state_dir=state) as cp:
        for _ in range(20):
            await cp.search(timeout=0.5)
            if any(str(r.device_id) == tv for r in cp.devices):
                break
        record = cp.find(tv)
        ok, errors = 0, []
        for _ in range(9):
            try:
                pipe = await open_pipe(cp.http, record.url, cp.identity, record.device_id,
                                       cp.keystore.peer_key, keepalive_interval=0)
                ok += 1
                await pipe.close()
            except IGRSError as exc:
                errors.append(f"{type(exc).__name__} {exc.return_code}: {exc}")
            await asyncio.sleep(0.2)
        print(json.dumps({"ok": ok, "errors": errors}), flush=True)

asyncio.run(main())
"""


def pair_offline(tv_state: Path, controller_state: Path) -> tuple[str, str]:
    """Pairing records on both sides (what ``igrs pair`` would store); returns the two ids."""
    tv, controller = KeyStore(tv_state), KeyStore(controller_state)
    tv_identity, controller_identity = tv.load_or_create_identity(), controller.load_or_create_identity()
    now = time.time()
    tv.add(PairedDevice(controller_identity.device_id, controller_identity.public_key, "controller", now))
    controller.add(PairedDevice(tv_identity.device_id, tv_identity.public_key, "TV", now))
    return str(tv_identity.device_id), str(controller_identity.device_id)


def start_tv(host: Host, udp_port: int, state: Path) -> tuple[subprocess.Popen[str], Any]:
    proc = host.popen([sys.executable, "-m", "igrs", "device", "run", "--name", "TV", "--type", "TV", "--json",
                       "--port", str(udp_port), "--http-port", "3880", "--state-dir", str(state)],
                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out, err = LineReader(proc.stdout), LineReader(proc.stderr)
    ready = out.wait_for(lambda ln: '"ready"' in ln, timeout=30)
    assert ready is not None, f"the TV did not start: {err.text()[-3000:]}"
    return proc, json.loads(ready)


def test_a_flood_claiming_a_paired_id_does_not_keep_that_device_out(netbed: Any, free_udp_port: int,
                                                                   tmp_path: Path) -> None:
    lan = netbed.lan("home")
    tv_h, controller_h, attacker_h = (netbed.host(n, lan) for n in ("tv", "controller", "attacker"))
    tv_id, controller_id = pair_offline(tmp_path / "tv", tmp_path / "controller")
    tv, ready = start_tv(tv_h, free_udp_port, tmp_path / "tv")
    flood = attacker_h.popen([sys.executable, "-c", FLOOD, controller_id, tv_id, ready["location"], "60"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    flood_out, flood_err = LineReader(flood.stdout), LineReader(flood.stderr)
    try:
        assert flood_out.wait_for(lambda ln: '"flooding"' in ln, timeout=15), flood_err.text()[-2000:]
        cp = controller_h.run([sys.executable, "-c", CONTROLLER, controller_h.iface_on("home").name,
                               str(free_udp_port), str(tmp_path / "controller"), tv_id], timeout=60)
        assert cp.returncode == 0, cp.stderr[-3000:]
        result = json.loads(cp.stdout)
        flooded = flood_out.json_objects()[-1]
        assert flood.poll() is None, "the flood ended before the controller"
    finally:
        flood.kill()
        flood.wait()
        tv.terminate()
        tv.wait(timeout=10)
    print("controller:", result, "attacker:", flooded)
    assert result["ok"] == 9, result
