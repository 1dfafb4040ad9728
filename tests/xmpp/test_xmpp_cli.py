"""``igrs relay ... --xmpp`` end to end on Prosody, each command a subprocess: register, friends,
send/listen, presence, and a phone invoking a home service through a gateway over XMPP."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from pairing import pair_with
from servers import LOOPBACK, RESUME_WINDOW, Server, start_server

from igrs import ControlPoint, Device
from igrs.apps.sample_service import Volume

pytestmark = pytest.mark.timeout(90)

ROOT = Path(__file__).resolve().parents[2]
LO = ["lo"]


@pytest.fixture(scope="module")
def prosody() -> Iterator[Server]:
    server = start_server("prosody", resume_window=RESUME_WINDOW)
    try:
        yield server
    finally:
        server.close()


async def cli(*args: str, ok: bool = True) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "igrs", "relay", *args, cwd=ROOT,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 40)
    rc = proc.returncode
    assert rc is not None
    if ok:
        assert rc == 0, f"igrs relay {' '.join(args)} -> {rc}\n{err.decode()}"
    return rc, out.decode(), err.decode()


async def test_cli_over_xmpp(prosody: Server, tmp_path: Path, free_udp_port: int) -> None:
    conn = ["--xmpp-server", f"{LOOPBACK}:{prosody.c2s_port}", "--cafile", str(prosody.cert)]
    phone_c, tv_c = tmp_path / "phone.json", tmp_path / "tv.json"
    _, out, _ = await cli("register-user", "--xmpp", prosody.domain, *conn, "--name", "alice",
                          "--save", str(phone_c))
    phone = json.loads(out)
    assert phone["jid"].startswith("u") and phone["jid"].endswith("@" + prosody.domain)
    assert (phone_c.stat().st_mode & 0o777) == 0o600
    # a device: the account is created; the verification code needs the binding component,
    # which this server does not run (tests/xmpp/test_xmpp_component.py, xmppb): said, exit 1
    rc, out, err = await cli("register-device", "--xmpp", prosody.domain, *conn, "--name", "tv",
                             "--verify-code", "8812", "--save", str(tv_c), ok=False)
    tv = json.loads(out)
    assert rc == 1 and "verification code is not set" in err and tv_c.exists()
    me, tv_id = phone["id"], tv["id"]

    # friends: request, accept (the requester is offline: the server keeps the request)
    pc, tc = ["--creds", str(phone_c)], ["--creds", str(tv_c)]
    assert json.loads((await cli("friend", *pc, "--user", tv_id))[1]) == {"state": "friend_out"}
    await cli("friend", *tc, "--user", me, "--accept")
    assert json.loads((await cli("relations", *pc))[1])["relations"]["linked"] == [tv_id]
    assert json.loads((await cli("relations", *tc))[1])["relations"]["owned_by"] == [me]

    # send / listen; a NORMAL message sent while the TV is offline is stored
    _, out, _ = await cli("send", *pc, "--to", tv_id, "--durable", "while you were away")
    assert json.loads(out) == {"status": "stored"}
    listen = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "igrs", "relay", "listen", *tc, "--count", "3", cwd=ROOT,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        assert listen.stdout is not None
        first = await asyncio.wait_for(listen.stdout.readline(), 20)
        assert first.decode().startswith("listening as ")
        _, out, _ = await cli("send", *pc, "--to", tv_id, "hello from the phone")
        assert json.loads(out) == {"status": "delivered"}
        _, out, _ = await cli("send", *pc, "--to", me, "--to-user-devices", "to all my devices")
        assert json.loads(out)["delivered"] == [tv_id]
        out_b, err_b = await asyncio.wait_for(listen.communicate(), 20)
    finally:
        if listen.returncode is None:
            listen.kill()
    assert [ln for ln in out_b.decode().splitlines() if ln.startswith("message ")] == [
        f"message {me} urn:IGRS:relay:app stored while you were away",
        f"message {me} urn:IGRS:relay:app hello from the phone",
        f"message {me} urn:IGRS:relay:app to all my devices",
    ], err_b.decode()
    assert json.loads((await cli("presence", *pc))[1]) == {"online": {tv_id: False}}

    # an account operation the XMPP binding does not offer: a usage error, one line
    rc, _, err = await cli("request", *pc, "rotate_token", ok=False)
    assert rc == 2 and "not offered over XMPP" in err

    # the gateway over XMPP: the TV's gateway process serves a paired home device
    pins: list[str] = []
    state = tmp_path / "gateway-cp"
    async with Device(name="Living room TV", device_type="TV", interfaces=LO, port=free_udp_port,
                      http_port=0, on_pin=pins.append, watch_interfaces=False) as dev:
        dev.add_service(Volume())
        async with ControlPoint(interfaces=LO, port=free_udp_port, keepalive_interval=0,
                                state_dir=state) as cp:
            await pair_with(cp, dev, pins)
        gw = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "igrs", "relay", "gateway", *tc, "--interface", "lo",
            "--port", str(free_udp_port), "--state-dir", str(state), cwd=ROOT,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        try:
            assert gw.stdout is not None
            line = await asyncio.wait_for(gw.stdout.readline(), 20)
            assert line.decode().startswith(f"gateway {tv_id} "), line
            home = [*pc, "--gateway", tv_id]
            _, out, _ = await cli("invoke", *home, str(dev.device_id), "Volume", "SetLevel", "level=30")
            assert json.loads(out) == 30
            _, out, _ = await cli("home-get", *home, str(dev.device_id), "Volume", "level")
            assert json.loads(out) == {"level": 30}
        finally:
            gw.terminate()
            await asyncio.wait_for(gw.wait(), 10)
