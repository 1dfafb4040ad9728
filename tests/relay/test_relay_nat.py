"""A home behind a masquerading NAT router; the relay and a remote phone on the WAN side.

The home TV cannot be reached inbound (shown: a direct TCP connect from the WAN fails), yet
it receives messages pushed through the relay over the connection it opened outward.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from netbed import Host, LineReader, NetBed, free_port

pytestmark = pytest.mark.netns

RELAY_CLI = [sys.executable, "-m", "igrs", "relay"]
ROOT = Path(__file__).resolve().parents[2]
ENV = {
    **os.environ,
    "PYTHONUNBUFFERED": "1",
    "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
}

TCP_PROBE = """
import socket, sys
s = socket.socket(); s.settimeout(float(sys.argv[3]))
try:
    s.connect((sys.argv[1], int(sys.argv[2]))); print("connected")
except OSError as e:
    print(type(e).__name__, e.errno)
"""
LISTENER = """
import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[2]))); s.listen(); print("listening", flush=True)
while True:
    c, _ = s.accept(); c.close()
"""


def run(host: Host, *args: str, timeout: float = 30) -> str:
    cp = host.run([*RELAY_CLI, *args], timeout=timeout, env=ENV, cwd=ROOT)
    assert cp.returncode == 0, f"{args[0]} on {host.name}: {cp.stderr}"
    return cp.stdout


def probe(host: Host, addr: str, port: int, timeout: float = 2.0) -> str:
    cp = host.run([sys.executable, "-c", TCP_PROBE, addr, str(port), str(timeout)], timeout=timeout + 10)
    return cp.stdout.strip()


def test_home_device_behind_nat_gets_pushed_messages(netbed: NetBed, tmp_path: Path) -> None:
    home, wan = netbed.lan("home"), netbed.lan("wan")
    router = netbed.router("rt", inside=home, outside=wan)
    tv = netbed.host("tv", home, gateway=router)
    relay = netbed.host("relay", wan)
    phone = netbed.host("phone", wan)
    port, svc = free_port("tcp"), free_port("tcp")

    # 1. the home device is not reachable inbound, although it listens
    listener = tv.popen([sys.executable, "-c", LISTENER, tv.addr, str(svc)], stdout=subprocess.PIPE, text=True)
    assert LineReader(listener.stdout).wait_for(lambda ln: ln == "listening", 10)
    assert probe(router, tv.addr, svc) == "connected"  # reachable inside the home
    assert "errno" not in probe(router, tv.addr, svc)
    assert probe(phone, tv.addr, svc).startswith("OSError 101")  # no route to the home LAN
    assert router.outside is not None
    phone.sh(f"ip route add {home.subnet} via {router.outside.addr}")
    before = router.dropped_unsolicited()
    assert probe(phone, tv.addr, svc, timeout=1.5) in ("TimeoutError None", "timeout None", "TimeoutError 110")
    assert router.dropped_unsolicited() > before  # the NAT dropped the unsolicited SYNs

    # 2. the relay on the WAN
    srv = relay.popen(
        [
            *RELAY_CLI,
            "serve",
            "--host",
            relay.addr,
            "--port",
            str(port),
            "--state-dir",
            str(tmp_path / "relay"),
            "--cert-host",
            relay.addr,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=ENV,
        cwd=ROOT,
    )
    out, err = LineReader(srv.stdout), LineReader(srv.stderr)
    fp_line = out.wait_for(lambda ln: ln.startswith("fingerprint"), 20)
    assert fp_line, f"relay did not start: {err.text()}"
    conn = ["--relay", f"{relay.addr}:{port}", "--fingerprint", fp_line.split()[-1]]

    # 3. accounts: the TV registers itself from the home; the phone's user binds it
    user_c, tv_c = tmp_path / "phone.json", tmp_path / "tv.json"
    user_id = json.loads(run(phone, "register-user", *conn, "--name", "alice", "--save", str(user_c)))["id"]
    tv_id = json.loads(
        run(
            tv,
            "register-device",
            *conn,
            "--name",
            "living-room-tv",
            "--device-type",
            "TV",
            "--verify-code",
            "471193",
            "--save",
            str(tv_c),
        )
    )["id"]
    run(phone, "bind", "--creds", str(user_c), "--device", tv_id, "--verify-code", "471193")

    # 4. one message stored while the TV is away, then the TV connects outward and listens
    stored = json.loads(
        run(phone, "send", "--creds", str(user_c), "--to", tv_id, "--durable", "recorded while you were off")
    )
    assert stored["status"] == "stored"
    lst = tv.popen(
        [*RELAY_CLI, "listen", "--creds", str(tv_c), "--count", "2"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=ENV,
        cwd=ROOT,
    )
    lout, lerr = LineReader(lst.stdout), LineReader(lst.stderr)
    first = lout.wait_for(lambda ln: ln.startswith("message"), 20)
    assert first == f"message {user_id} urn:IGRS:relay:app stored recorded while you were off", lerr.text()
    presence = json.loads(run(phone, "presence", "--creds", str(user_c)))
    assert presence["online"] == {tv_id: True}

    # 5. a live push from the WAN phone reaches the TV through the relay
    receipt = json.loads(run(phone, "send", "--creds", str(user_c), "--to", tv_id, "play channel 5"))
    assert receipt == {"status": "delivered"}
    second = lout.wait_for(lambda ln: ln.startswith("message"), 20)
    assert second == f"message {user_id} urn:IGRS:relay:app play channel 5"
    assert lst.wait(20) == 0

    # 6. remote access to the home: the TV is also an IGRS device on the home LAN (its IGRS
    #    id is its relay id) sharing the sample Volume service, and acts as gateway; a PC is
    #    another home device. The owner pairs the gateway with the TV, locally, once.
    pc = netbed.host("pc", home, gateway=router)
    dport = free_port("udp")
    lan_if = tv.iface_on(home).name
    dev = pc.popen([sys.executable, "-m", "igrs", "device", "run", "--name", "Study PC",
                    "--type", "PC", "--port", str(dport), "--json",
                    "--state-dir", str(tmp_path / "pc-dev")],
                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV, cwd=ROOT)
    tvdev = tv.popen([sys.executable, "-m", "igrs", "device", "run", "--name", "Living room TV",
                      "--type", "TV", "--id", tv_id, "--sample-service", "-i", lan_if,
                      "--port", str(dport), "--json", "--state-dir", str(tmp_path / "tv-dev")],
                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV, cwd=ROOT)
    ready = LineReader(dev.stdout).wait_for(lambda ln: '"ready"' in ln, 20)
    assert ready, "home device did not start"
    pc_id = json.loads(ready)["id"]
    tv_out = LineReader(tvdev.stdout)
    assert tv_out.wait_for(lambda ln: '"ready"' in ln, 20), "the TV's IGRS device did not start"
    gw_state = str(tmp_path / "gateway-cp")
    pair = tv.popen([sys.executable, "-m", "igrs", "pair", tv_id, "-i", lan_if, "--port", str(dport),
                     "--state-dir", gw_state],
                    stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                    env=ENV, cwd=ROOT)
    pin = tv_out.wait_for(lambda ln: '"pin"' in ln, 20)
    assert pin, "the TV showed no PIN"
    out_pair, err_pair = pair.communicate(json.loads(pin)["pin"] + "\n", timeout=30)
    assert pair.returncode == 0 and out_pair.startswith("paired with Living room TV"), err_pair

    gw = tv.popen([*RELAY_CLI, "gateway", "--creds", str(tv_c), "--interface", lan_if,
                   "--port", str(dport), "--state-dir", gw_state],
                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV, cwd=ROOT)
    gout, gerr = LineReader(gw.stdout), LineReader(gw.stderr)
    assert gout.wait_for(lambda ln: ln.startswith("gateway "), 20), gerr.text()

    #    the phone, on the WAN, lists the home's devices and their services ...
    devices = json.loads(run(phone, "home-devices", "--creds", str(user_c), "--gateway", tv_id,
                             "--search-timeout", "1.5"))
    by_id = {d["device_id"]: d for d in devices}
    assert by_id[pc_id]["name"] == "Study PC", (devices, gerr.text())
    assert by_id[tv_id]["paired"] is True and by_id[pc_id]["paired"] is False
    assert [s["service_type"] for s in by_id[tv_id]["services"]] == ["urn:IGRS:ServiceType:Volume:1"]
    assert all(d["address"].startswith("10.77.") for d in devices)
    #    ... invokes the TV's Volume service through the relay and sees the typed result
    gw_cmd = ["--creds", str(user_c), "--gateway", tv_id]
    assert run(phone, "invoke", *gw_cmd, tv_id, "Volume", "SetLevel", "level=30").strip() == "30"
    assert json.loads(run(phone, "home-get", *gw_cmd, tv_id, "Volume", "level")) == {"level": 30}
    refused = phone.run([*RELAY_CLI, "invoke", *gw_cmd, pc_id, "Volume", "SetLevel", "level=5"],
                        timeout=30, env=ENV, cwd=ROOT)
    assert refused.returncode == 1 and "gateway: 412" in refused.stderr  # PC: not paired

    # 7. an unrelated relay user on the WAN is refused by the relay
    mallory_c = tmp_path / "mallory.json"
    run(phone, "register-user", *conn, "--name", "mallory", "--save", str(mallory_c))
    denied = phone.run([*RELAY_CLI, "invoke", "--creds", str(mallory_c), "--gateway", tv_id, tv_id,
                        "Volume", "SetLevel", "level=99"], timeout=30, env=ENV, cwd=ROOT)
    assert denied.returncode == 1 and "403 FORBIDDEN" in denied.stderr, denied.stderr
    assert json.loads(run(phone, "home-get", *gw_cmd, tv_id, "Volume", "level")) == {"level": 30}
