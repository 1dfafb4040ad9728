"""IGRS over DNS-SD against a real peer: Avahi (specs/dnssd.md).

Two namespace hosts on one LAN (tests/netbed.py): ``avahi`` runs avahi-daemon on a private
D-Bus (ecosystem-checks.md §4.5: nothing touches the machine's /run/dbus, and the daemon
only ever sees the test LAN); ``igrs`` runs our side as its own process.

* ``avahi-browse -r -t -p _igrs._tcp`` sees an igrs device announced from the other host,
  with its address, HTTP port and TXT record.
* the igrs DNS-SD browser sees a service published with ``avahi-publish -s``, and refuses
  one whose TXT record is invalid.

Our side runs through the CLI once it has the DNS-SD options (``igrs device run --dnssd``,
``igrs discover --via mdns``), else through ``python -m igrs.bridges.dnssd``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from netbed import Host, LineReader, NetBed

pytestmark = [pytest.mark.interop, pytest.mark.netns]

IGRS = [sys.executable, "-m", "igrs"]
BRIDGE = [sys.executable, "-m", "igrs.bridges.dnssd"]
STARTUP_TIMEOUT = 15.0

# A private bus for one test: permissive, reachable only through a socket in the test's tmp dir.
DBUS_CONF = """<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path={socket}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <allow own="*"/>
    <allow send_destination="*"/>
    <allow receive_sender="*"/>
  </policy>
</busconfig>
"""

AVAHI_CONF = """[server]
host-name={host_name}
use-ipv4=yes
use-ipv6=no
allow-interfaces={iface}
enable-dbus=yes
ratelimit-interval-usec=1000000
ratelimit-burst=1000
[wide-area]
enable-wide-area=no
[publish]
publish-hinfo=no
publish-workstation=no
publish-addresses=yes
"""


def igrs_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", **(extra or {})}
    env.pop("IGRS_INTERFACES", None)
    return env


def cli_has(argv: list[str], option: str) -> bool:
    """Whether the igrs CLI already offers ``option`` (the lead wires the DNS-SD options)."""
    cp = subprocess.run([*IGRS, *argv, "--help"], capture_output=True, text=True, timeout=30, check=False)
    return option in cp.stdout


@dataclass
class Avahi:
    host: Host  # runs avahi-daemon (and the avahi-* clients)
    peer: Host  # runs the igrs side
    env: dict[str, str]  # DBUS_SYSTEM_BUS_ADDRESS for the avahi-* clients
    daemon_log: LineReader

    def run(self, argv: list[str], timeout: float = 15.0) -> subprocess.CompletedProcess[str]:
        return self.host.run(argv, timeout=timeout, env=self.env)


def _stop(proc: subprocess.Popen, timeout: float = 5.0) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout)


@pytest.fixture
def avahi(netbed: NetBed, tmp_path: Path, require_cmd) -> Iterator[Avahi]:  # type: ignore[no-untyped-def]
    for cmd, package in (("avahi-daemon", "avahi-daemon"), ("avahi-browse", "avahi-utils"),
                         ("avahi-publish", "avahi-utils"), ("dbus-daemon", "dbus")):
        require_cmd(cmd, package)
    lan = netbed.lan("home")
    host = netbed.host("avahi", lan)
    peer = netbed.host("igrs", lan)
    iface = host.iface_on(lan).name
    run_dir = tmp_path / "avahi-run"  # bind-mounted on /run/avahi-daemon for this daemon only
    run_dir.mkdir()
    bus_socket = tmp_path / "system_bus_socket"
    (tmp_path / "dbus.conf").write_text(DBUS_CONF.format(socket=bus_socket))
    (tmp_path / "avahi-daemon.conf").write_text(
        AVAHI_CONF.format(host_name=f"igrs-avahi-{uuid.uuid4().hex[:8]}", iface=iface))
    env = {**os.environ, "DBUS_SYSTEM_BUS_ADDRESS": f"unix:path={bus_socket}"}
    procs: list[subprocess.Popen] = []
    try:
        # dbus-daemon in the avahi host's namespace (a unix socket only), by PID, no fork.
        dbus = host.popen(["dbus-daemon", "--config-file", str(tmp_path / "dbus.conf"), "--nofork",
                           "--print-address=1"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        procs.append(dbus)
        dbus_out = LineReader(dbus.stdout)
        assert dbus_out.wait_for(lambda ln: "unix:path=" in ln, timeout=STARTUP_TIMEOUT), (
            f"dbus-daemon did not start: {LineReader(dbus.stderr).text()}")
        # avahi-daemon: its pid file and socket go to a private /run/avahi-daemon (the mount
        # namespace of `ip netns exec` is a slave of the root one: the bind mount stays here).
        script = ('mkdir -p /run/avahi-daemon && mount --bind "$1" /run/avahi-daemon && '
                  'exec avahi-daemon -f "$2" --no-chroot --no-drop-root --no-rlimits')
        daemon = host.popen(["sh", "-c", script, "sh", str(run_dir), str(tmp_path / "avahi-daemon.conf")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
        procs.append(daemon)
        log = LineReader(daemon.stderr)
        ready = log.wait_for(lambda ln: "Server startup complete" in ln, timeout=STARTUP_TIMEOUT)
        assert ready, f"avahi-daemon did not start (rc={daemon.poll()}):\n{log.text()}"
        assert f"interface {iface}.IPv4" in log.text(), log.text()
        yield Avahi(host, peer, env, log)
    finally:
        for proc in reversed(procs):  # by PID, even when the test failed
            _stop(proc)


def _start_igrs_device(peer: Host, name: str, port: int,
                       iface: str) -> tuple[subprocess.Popen, LineReader, dict]:
    if cli_has(["device", "run"], "--dnssd"):
        argv = [*IGRS, "device", "run", "--dnssd", "--name", name, "--type", "TV", "--port", str(port),
                "--json", "-i", iface, "--no-pairing"]
    else:
        argv = [*BRIDGE, "device", "--name", name, "--type", "TV", "--port", str(port), "-i", iface]
    proc = peer.popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=igrs_env())
    out = LineReader(proc.stdout)
    line = out.wait_for(lambda ln: '"ready"' in ln, timeout=STARTUP_TIMEOUT)
    assert line, f"igrs device never became ready (rc={proc.poll()}):\n{LineReader(proc.stderr).text()}"
    return proc, out, json.loads(line)


def _browse_avahi(avahi: Avahi, name: str, deadline: float) -> list[str]:
    """avahi-browse until the resolved ('=') line of instance ``name`` shows up."""
    last = ""
    while time.monotonic() < deadline:
        cp = avahi.run(["avahi-browse", "-r", "-t", "-p", "_igrs._tcp"], timeout=15)
        last = cp.stdout + cp.stderr
        for line in cp.stdout.splitlines():
            fields = line.split(";", 9)
            if fields[0] == "=" and len(fields) == 10 and fields[3] == name:
                return fields
        time.sleep(0.5)
    raise AssertionError(f"avahi-browse never resolved {name}:\n{last}\n{avahi.daemon_log.text()}")


def test_avahi_browse_sees_igrs_device(avahi: Avahi, free_udp_port: int) -> None:
    name = f"igrs-tv-{uuid.uuid4().hex[:6]}"
    iface = avahi.peer.iface_on("home").name
    proc, _, ready = _start_igrs_device(avahi.peer, name, free_udp_port, iface)
    try:
        http_port = urlsplit(ready["location"]).port
        fields = _browse_avahi(avahi, name, time.monotonic() + 15)
        _, ifname, proto, _inst, stype, domain, hostname, address, port, txt = fields
        avahi_if = avahi.host.iface_on("home").name
        assert (ifname, proto, stype, domain) == (avahi_if, "IPv4", "_igrs._tcp", "local")
        assert hostname.startswith("igrs-") and hostname.endswith(".local")
        assert address == avahi.peer.addr and int(port) == http_port
        entries = {t.strip('"') for t in txt.split('" "')}
        assert {f"id={ready['id']}", "type=urn:IGRS:DeviceType:TV:1", f"name={name}", "version=IGRS/1.0",
                "desc=/IGRS/description.xml", "txtvers=1"} <= entries, txt
        # Avahi resolves the SRV target host name we announced to the device's address.
        cp = avahi.run(["avahi-resolve", "-4", "-n", hostname], timeout=15)
        assert cp.stdout.split() == [hostname, avahi.peer.addr], cp.stdout + cp.stderr
    finally:
        _stop(proc)


def _igrs_browse(peer: Host, iface: str, timeout: float) -> list[dict]:
    if cli_has(["discover"], "--via"):
        argv = [*IGRS, "discover", "--via", "mdns", "--json", "-i", iface, "--timeout", str(timeout)]
        cp = peer.run(argv, timeout=timeout + 30, env=igrs_env())
        assert cp.returncode == 0, cp.stdout + cp.stderr
        return json.loads(cp.stdout)
    cp = peer.run([*BRIDGE, "browse", "-i", iface, "-t", str(timeout)], timeout=timeout + 30, env=igrs_env())
    assert cp.returncode == 0, cp.stdout + cp.stderr
    return json.loads(cp.stdout)["devices"]


def test_igrs_browser_sees_avahi_publish(avahi: Avahi) -> None:
    good_id = f"urn:IGRS:Device:DeviceId:{uuid.uuid4()}"
    bad_id = "urn:IGRS:Device:DeviceId:not-a-uuid"
    published = []
    try:
        for inst, dev_id, port in ((f"avahi-nas-{uuid.uuid4().hex[:6]}", good_id, 9090),
                                   (f"avahi-bad-{uuid.uuid4().hex[:6]}", bad_id, 9091)):
            proc = avahi.host.popen(
                ["avahi-publish", "-s", inst, "_igrs._tcp", str(port), f"id={dev_id}",
                 "type=urn:IGRS:DeviceType:MediaServer:1", f"name={inst}", "version=IGRS/1.0",
                 "desc=/IGRS/description.xml"],
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=avahi.env)
            published.append(proc)
            out = LineReader(proc.stdout)
            assert out.wait_for(lambda ln: "Established under name" in ln, timeout=STARTUP_TIMEOUT), (
                f"avahi-publish failed (rc={proc.poll()}): {out.text()}")
        iface = avahi.peer.iface_on("home").name
        found: list[dict] = []
        for _ in range(3):  # bounded retries: mDNS answers can be lost on a busy 2-core box
            found = _igrs_browse(avahi.peer, iface, timeout=3.0)
            if any(d["id"] == good_id for d in found):
                break
        ours = {d["id"]: d for d in found}
        assert good_id in ours, found
        dev = ours[good_id]
        assert dev["type"] == "urn:IGRS:DeviceType:MediaServer:1" and dev["name"].startswith("avahi-nas-")
        assert dev["address"] == avahi.host.addr
        assert dev["location"] == f"http://{avahi.host.addr}:9090/IGRS"
        assert bad_id not in ours and all(d["name"].startswith("avahi-nas-") for d in found), found
    finally:
        for proc in published:
            _stop(proc)
