"""The NAT scenario over XMPP: a home behind a masquerading router, Prosody and a phone on the WAN.

The home's gateway (on the TV host, behind the NAT) logs in to the XMPP server outward; the
phone on the WAN invokes the Volume service of a paired home device through it, every command
an ``igrs relay ... --xmpp`` subprocess (tests/relay/test_relay_nat.py is the relay version).
The home device cannot be reached inbound; an unrelated user's call is refused (403).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from netbed import Host, LineReader, NetBed, free_port
from servers import START_TIMEOUT, make_cert, need

from igrs.xmpp.deploy import render_prosody

pytestmark = [pytest.mark.netns, pytest.mark.timeout(120)]

RELAY_CLI = [sys.executable, "-m", "igrs", "relay"]
ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PYTHONUNBUFFERED": "1",
       "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}  # fmt: skip
WAIT_LISTENING = f"""
import socket, sys, time
deadline = time.monotonic() + {START_TIMEOUT}
while time.monotonic() < deadline:
    try:
        socket.create_connection((sys.argv[1], int(sys.argv[2])), 0.2).close()
        sys.exit(0)
    except OSError:
        time.sleep(0.05)
sys.exit(1)
"""
DOMAIN = "localhost"  # the certificate's name; clients are pointed at the server's address


def run(host: Host, *args: str, rc: int = 0, timeout: float = 40) -> str:
    cp = host.run([*RELAY_CLI, *args], timeout=timeout, env=ENV, cwd=ROOT)
    assert cp.returncode == rc, f"{args[0]} on {host.name} -> {cp.returncode}: {cp.stderr}"
    return cp.stdout


def start_prosody(host: Host, root: Path) -> tuple[int, Path]:
    """Prosody from the shipped config, in ``host``'s namespace, on its WAN address."""
    binary = need("prosody")
    (root / "data").mkdir(parents=True)
    cert, key, _ = make_cert(root, DOMAIN)
    port = free_port("tcp")
    cfg = root / "prosody.cfg.lua"
    cfg.write_text(render_prosody(
        domain=DOMAIN, data_dir=root / "data", cert=cert, key=key, c2s_port=port, interface=host.addr,
        component_port=free_port("tcp"), allow_registration=True, registration_throttle_max=100000,
        resume_window=4, log=f'info = "{root / "prosody.log"}"', run_as_root=os.geteuid() == 0))  # fmt: skip
    host.popen([binary, "--config", str(cfg), "-F"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ok = host.run([sys.executable, "-c", WAIT_LISTENING, host.addr, str(port)], timeout=30)
    assert ok.returncode == 0, (root / "prosody.log").read_text(errors="replace")[-2000:]
    return port, cert


def test_phone_invokes_home_service_through_gateway_over_xmpp(netbed: NetBed, tmp_path: Path) -> None:
    home, wan = netbed.lan("home"), netbed.lan("wan")
    router = netbed.router("rt", inside=home, outside=wan)
    tv = netbed.host("tv", home, gateway=router)
    pc = netbed.host("pc", home, gateway=router)
    xmpp = netbed.host("xmpp", wan)
    phone = netbed.host("phone", wan)
    port, cert = start_prosody(xmpp, tmp_path / "prosody")
    conn = ["--xmpp-server", f"{xmpp.addr}:{port}", "--cafile", str(cert)]

    # accounts: the phone's user; the TV's gateway account, created from behind the NAT
    phone_c, tv_c, mallory_c = tmp_path / "phone.json", tmp_path / "tv.json", tmp_path / "mallory.json"
    me = json.loads(run(phone, "register-user", "--xmpp", DOMAIN, *conn, "--name", "alice",
                        "--save", str(phone_c)))["id"]  # fmt: skip
    # no binding component on this server: the account is made, the code is not set (exit 1)
    tv_id = json.loads(run(tv, "register-device", "--xmpp", DOMAIN, *conn, "--name", "tv",
                           "--verify-code", "4711", "--save", str(tv_c), rc=1))["id"]  # fmt: skip
    run(phone, "register-user", "--xmpp", DOMAIN, *conn, "--name", "mallory", "--save", str(mallory_c))
    pc_args, tv_args = ["--creds", str(phone_c)], ["--creds", str(tv_c)]
    assert json.loads(run(phone, "friend", *pc_args, "--user", tv_id)) == {"state": "friend_out"}
    run(tv, "friend", *tv_args, "--user", me, "--accept")
    assert json.loads(run(phone, "relations", *pc_args))["relations"]["linked"] == [tv_id]

    # the home device (a PC with the sample Volume service); the TV host's control point pairs it
    dport = free_port("udp")
    lan_if = tv.iface_on(home).name
    dev = pc.popen([sys.executable, "-m", "igrs", "device", "run", "--name", "Study PC", "--type", "PC",
                    "--sample-service", "--port", str(dport), "--json", "--state-dir", str(tmp_path / "pc")],
                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV, cwd=ROOT)  # fmt: skip
    dev_out = LineReader(dev.stdout)
    ready = dev_out.wait_for(lambda ln: '"ready"' in ln, 20)
    assert ready, "home device did not start"
    pc_id = json.loads(ready)["id"]
    gw_state = str(tmp_path / "gateway-cp")
    pair = tv.popen([sys.executable, "-m", "igrs", "pair", pc_id, "-i", lan_if, "--port", str(dport),
                     "--state-dir", gw_state], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE, text=True, env=ENV, cwd=ROOT)  # fmt: skip
    pin = dev_out.wait_for(lambda ln: '"pin"' in ln, 20)
    assert pin, "the PC showed no PIN"
    out_pair, err_pair = pair.communicate(json.loads(pin)["pin"] + "\n", timeout=30)
    assert pair.returncode == 0 and out_pair.startswith("paired with Study PC"), err_pair

    # the home is not reachable inbound: the phone has a route, the NAT drops the SYNs
    assert router.outside is not None
    phone.sh(f"ip route add {home.subnet} via {router.outside.addr}")
    before = router.dropped_unsolicited()
    probe = phone.run([sys.executable, "-c", "import socket,sys; s=socket.socket(); s.settimeout(1.5)\n"
                       "try: s.connect((sys.argv[1], 9)); print('connected')\nexcept OSError as e: print('no')",
                       pc.addr], timeout=15)  # fmt: skip
    assert probe.stdout.strip() == "no" and router.dropped_unsolicited() > before

    # the gateway logs in outward over XMPP; the phone invokes through it
    gw = tv.popen([*RELAY_CLI, "gateway", *tv_args, "--interface", lan_if, "--port", str(dport),
                   "--state-dir", gw_state], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                  env=ENV, cwd=ROOT)  # fmt: skip
    gout, gerr = LineReader(gw.stdout), LineReader(gw.stderr)
    assert gout.wait_for(lambda ln: ln.startswith(f"gateway {tv_id} "), 30), gerr.text()
    via = [*pc_args, "--gateway", tv_id]
    assert json.loads(run(phone, "invoke", *via, pc_id, "Volume", "SetLevel", "level=30")) == 30
    assert json.loads(run(phone, "home-get", *via, pc_id, "Volume", "level")) == {"level": 30}
    # an unrelated user on the WAN is refused (403: not related to the gateway)
    refused = phone.run([*RELAY_CLI, "invoke", "--creds", str(mallory_c), "--gateway", tv_id, pc_id, "Volume",
                         "SetLevel", "level=5"], timeout=40, env=ENV, cwd=ROOT)  # fmt: skip
    assert refused.returncode == 1 and "403" in refused.stderr, (refused.stdout, refused.stderr)
    assert json.loads(run(phone, "home-get", *via, pc_id, "Volume", "level")) == {"level": 30}
