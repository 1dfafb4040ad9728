"""ISDP discovery across real hosts: every device and control point is its own process in its
own network namespace (tests/netbed.py), talking over veths and a bridge."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass

import pytest
from netbed import Host, LineReader, LossUnavailable, wait_until

pytestmark = pytest.mark.netns

IGRS = [sys.executable, "-m", "igrs"]


def igrs_env() -> dict[str, str]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("IGRS_INTERFACES", None)
    return env


@pytest.fixture(autouse=True)
def _private_state_dir(tmp_path, monkeypatch):
    """Device identities go to this test's tmp dir, not ~/.local/state/igrs."""
    monkeypatch.setenv("IGRS_STATE_DIR", str(tmp_path / "igrs-state"))


@dataclass
class DevProc:
    host: Host
    name: str
    proc: subprocess.Popen[str]
    out: LineReader
    err: LineReader
    id: str = ""
    location: str = ""

    def diag(self) -> str:
        return f"[{self.name} rc={self.proc.poll()}] stdout:\n{self.out.text()}\nstderr:\n{self.err.text()}"


def start_devices(
    specs: list[tuple[Host, str, str]], port: int, max_age: int | None = None, extra: tuple[str, ...] = ()
) -> list[DevProc]:
    """Start `igrs device run` for each (host, name, type) at once; wait until all are ready."""
    devs = []
    for host, name, dtype in specs:
        argv = [*IGRS, "device", "run", "--name", name, "--type", dtype, "--port", str(port), "--json", *extra]
        if max_age is not None:
            argv += ["--max-age", str(max_age)]
        proc = host.popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=igrs_env())
        devs.append(DevProc(host, name, proc, LineReader(proc.stdout), LineReader(proc.stderr)))
    for d in devs:
        line = d.out.wait_for(lambda ln: '"ready"' in ln, timeout=20)
        assert line, f"device never became ready\n{d.diag()}"
        ev = json.loads(line)
        assert ev["event"] == "ready" and ev["id"].startswith("urn:IGRS:Device:DeviceId:"), line
        d.id, d.location = ev["id"], ev["location"]
    return devs


def discover(host: Host, port: int, timeout: float = 2.0, *extra: str) -> list[dict]:
    cp = host.run(
        [*IGRS, "discover", "--json", "--port", str(port), "--timeout", str(timeout), *extra],
        timeout=timeout + 20,
        env=igrs_env(),
    )
    assert cp.returncode == 0, f"discover failed rc={cp.returncode}\n{cp.stdout}\n{cp.stderr}"
    found = json.loads(cp.stdout)
    assert isinstance(found, list), cp.stdout
    return found


def by_id(found: list[dict]) -> dict[str, dict]:
    ids = [d["id"] for d in found]
    assert len(ids) == len(set(ids)), f"a device listed twice: {ids}"
    return {d["id"]: d for d in found}


# A control point on the Python API that prints one JSON line per discovery event.
WATCHER = r"""
import asyncio, json, sys
from igrs import ControlPoint

async def main():
    async with ControlPoint(port=int(sys.argv[1])) as cp:
        async def pump():
            async for ev in cp.events():
                print(json.dumps({"event": type(ev).__name__, "id": str(ev.device.device_id),
                                  "reason": getattr(ev, "reason", None)}), flush=True)
        task = asyncio.create_task(pump())
        await asyncio.sleep(0)
        print(json.dumps({"event": "watching"}), flush=True)
        await cp.search(timeout=1.0)
        await task

asyncio.run(main())
"""


def start_watcher(host: Host, port: int, cli: bool) -> tuple[LineReader, LineReader]:
    """A watching control point: ``igrs discover --watch --json`` or WATCHER (Python API)."""
    if cli:
        argv = [*IGRS, "discover", "--watch", "--json", "--port", str(port)]
    else:
        argv = [sys.executable, "-c", WATCHER, str(port)]
    proc = host.popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=igrs_env())
    out, err = LineReader(proc.stdout), LineReader(proc.stderr)
    if not cli:
        assert out.wait_for(lambda ln: "watching" in ln, 20), f"watcher: {out.text()}\n{err.text()}"
    return out, err


KINDS = {"appeared": ("appeared", "DeviceAppeared"), "gone": ("gone", "DeviceGone")}


def event_for(out: LineReader, kind: str, dev_id: str, timeout: float) -> dict | None:
    """Next JSON event line of ``kind`` ("appeared" / "gone") about dev_id, or None."""

    def match(line: str) -> bool:
        try:
            ev = json.loads(line)
        except ValueError:
            return False
        return isinstance(ev, dict) and ev.get("event") in KINDS[kind] and ev.get("id") == dev_id

    line = out.wait_for(match, timeout)
    return json.loads(line) if line else None


def one_lan(bed, n_hosts: int) -> list[Host]:
    lan = bed.lan("home")
    return [bed.host(f"h{i}", lan) for i in range(n_hosts)]


# ------------------------------------------------------------------------------------------


def test_control_point_finds_every_device_on_the_lan(netbed, free_udp_port):
    tv_h, pc_h, phone_h, cp_h = one_lan(netbed, 4)
    devs = start_devices(
        [(tv_h, "Living room TV", "TV"), (pc_h, "Study PC", "PC"), (phone_h, "Alice phone", "MobilePhone")],
        free_udp_port,
    )
    t0 = time.monotonic()
    found = by_id(discover(cp_h, free_udp_port, 2.0))
    elapsed = time.monotonic() - t0
    for d, dtype in zip(devs, ("TV", "PC", "MobilePhone"), strict=True):
        assert d.id in found, f"{d.name} not found: {found}\n{d.diag()}"
        rec = found[d.id]
        assert rec["name"] == d.name
        assert dtype in rec["type"]
        assert rec["address"] == d.host.addr
        assert rec["location"] == d.location and d.host.addr in rec["location"]
        assert rec["interfaces"] and isinstance(rec["age"], int | float)
    assert len(found) == 3, found
    assert elapsed < 8, f"discover took {elapsed:.1f} s"  # 2 s search + interpreter start


def test_killed_device_expires_after_max_age(netbed, free_udp_port):
    dev_h, cp_h = one_lan(netbed, 2)
    (dev,) = start_devices([(dev_h, "Crashy TV", "TV")], free_udp_port, max_age=3)
    out, err = start_watcher(cp_h, free_udp_port, cli=True)
    assert event_for(out, "appeared", dev.id, 20), f"{out.text()}\n{err.text()}"
    dev.proc.send_signal(signal.SIGKILL)  # no byebye
    t_kill = time.monotonic()
    dev.proc.wait(5)
    gone = event_for(out, "gone", dev.id, 3 + 3)
    waited = time.monotonic() - t_kill
    assert gone, f"not gone {waited:.1f} s after SIGKILL with max-age 3\n{out.text()}\n{err.text()}"
    assert gone["reason"] == "expired", gone
    assert waited <= 3 + 1.5, f"expired only after {waited:.1f} s"


def test_sigterm_sends_byebye(netbed, free_udp_port):
    dev_h, cp_h = one_lan(netbed, 2)
    (dev,) = start_devices([(dev_h, "Polite TV", "TV")], free_udp_port)  # default max-age
    out, err = start_watcher(cp_h, free_udp_port, cli=False)
    assert event_for(out, "appeared", dev.id, 5), f"{out.text()}\n{err.text()}"
    dev.proc.send_signal(signal.SIGTERM)
    t_term = time.monotonic()
    gone = event_for(out, "gone", dev.id, 5)
    waited = time.monotonic() - t_term
    assert gone, f"no DeviceGone after SIGTERM\n{out.text()}\n{err.text()}\n{dev.diag()}"
    assert gone["reason"] == "byebye" and waited < 2.0, (gone, waited)
    assert dev.proc.wait(5) == 0, dev.diag()


def test_repeated_searches_find_all_despite_30_percent_loss(netbed, free_udp_port):
    hosts = one_lan(netbed, 4)
    try:
        for h in hosts:
            method = netbed.set_loss(h, 30)  # every datagram a host sends: 30 % lost
    except LossUnavailable as exc:
        pytest.skip(str(exc))
    devs = start_devices(
        [(hosts[0], "TV", "TV"), (hosts[1], "PC", "PC"), (hosts[2], "Phone", "MobilePhone")], free_udp_port
    )
    wanted = {d.id for d in devs}
    seen: set[str] = set()
    rounds = 0
    while seen != wanted and rounds < 8:
        rounds += 1
        seen |= set(by_id(discover(hosts[3], free_udp_port, 1.0, "--mx", "1"))) & wanted
    assert seen == wanted, f"after {rounds} searches only {len(seen)}/3 found"
    print(f"all 3 devices found in {rounds} search(es) with 30% loss ({method})")


def _on(rec: dict, host: Host, lan: str) -> bool:
    iface = host.iface_on(lan)
    return any(x in (iface.name, iface.addr) for x in rec["interfaces"])


def test_two_homed_control_point_lists_each_device_once(netbed, free_udp_port):
    lan1, lan2 = netbed.lan("lan1"), netbed.lan("lan2")
    cp_h = netbed.host("cp", lan1)
    cp_h.connect(lan2)
    d1_h, d2_h = netbed.host("d1", lan1), netbed.host("d2", lan2)
    both_h = netbed.host("both", lan1)
    both_h.connect(lan2)
    d1, d2, both = start_devices(
        [(d1_h, "Kitchen TV", "TV"), (d2_h, "Garage PC", "PC"), (both_h, "Bridge box", "PC")], free_udp_port
    )
    found = by_id(discover(cp_h, free_udp_port, 2.0))  # raises if an id is listed twice
    assert set(found) == {d1.id, d2.id, both.id}, found
    assert _on(found[d1.id], cp_h, "lan1") and not _on(found[d1.id], cp_h, "lan2"), found[d1.id]
    assert _on(found[d2.id], cp_h, "lan2") and not _on(found[d2.id], cp_h, "lan1"), found[d2.id]
    assert found[d1.id]["address"] == d1_h.addr and found[d2.id]["address"] == d2_h.addr
    rec = found[both.id]
    assert _on(rec, cp_h, "lan1") and _on(rec, cp_h, "lan2"), rec
    assert rec["address"] in (both_h.addr_on("lan1"), both_h.addr_on("lan2")), rec


# A spoofer: sends a DeviceOnlineAdvertisement (LOCATION on its own address) or a
# DeviceOfflineAdvertisement for a device id it does not own, to the ISDP group of its LAN.
SPOOFER = r"""
import socket, sys
from igrs.wire import isdp
from igrs.wire.ids import DeviceId, DeviceType

port, addr, device, kind = int(sys.argv[1]), sys.argv[2], DeviceId.parse(sys.argv[3]), sys.argv[4]
if kind == "alive":
    location = f"http://{addr}:3880/IGRS"
    msg = isdp.DeviceOnlineAdvertisement(device, DeviceType("TV"), location, 1800, "Spoofed TV")
else:
    msg = isdp.DeviceOfflineAdvertisement(device, DeviceType("TV"))
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(addr))
s.bind((addr, 0))
for _ in range(2):
    s.sendto(isdp.encode(msg, host=f"224.0.0.110:{port}"), ("224.0.0.110", port))
"""


def spoof(host: Host, port: int, device_id: str, kind: str) -> None:
    res = host.run([sys.executable, "-c", SPOOFER, str(port), host.addr, device_id, kind], timeout=20,
                   env=igrs_env())
    assert res.returncode == 0, res.stderr


def updated_for(out: LineReader, dev_id: str, timeout: float, pred: object) -> dict | None:
    def match(line: str) -> bool:
        try:
            ev = json.loads(line)
        except ValueError:
            return False
        return (isinstance(ev, dict) and ev.get("event") == "updated" and ev.get("id") == dev_id
                and pred(ev))  # type: ignore[operator]

    line = out.wait_for(match, timeout)
    return json.loads(line) if line else None


def test_an_unauthenticated_datagram_never_repoints_a_known_device(netbed, free_udp_port):
    """specs/isdp.md §11a. A spoofer announces the TV's id with a LOCATION on its own address:
    the control point keeps the TV's address and shows the spoofer's beside it, and ignores the
    spoofer's byebye. A device whose own address stopped answering (killed) is followed to the
    new address. The base code moved the entry, then deleted the TV on the spoofed byebye."""
    tv_h, gone_h, cp_h, spoofer_h = one_lan(netbed, 4)
    tv, dead = start_devices([(tv_h, "Living room TV", "TV"), (gone_h, "Killed TV", "TV")], free_udp_port)
    out, err = start_watcher(cp_h, free_udp_port, cli=True)
    def both_appeared() -> bool:
        seen = {e.get("id") for e in out.json_objects() if isinstance(e, dict) and e.get("event") == "appeared"}
        return {tv.id, dead.id} <= seen

    assert wait_until(both_appeared, 20), f"{out.text()}\n{err.text()}"

    spoof(spoofer_h, free_udp_port, tv.id, "alive")
    ev = updated_for(out, tv.id, 10, lambda e: True)
    assert ev, f"no update after the spoofed alive\n{out.text()}\n{err.text()}"
    assert ev["address"] == tv_h.addr and tv_h.addr in ev["location"], f"re-pointed: {ev}"
    assert ev.get("candidates") == [spoofer_h.addr], ev  # shown beside the TV's own address
    spoof(spoofer_h, free_udp_port, tv.id, "byebye")
    assert event_for(out, "gone", tv.id, 3) is None, f"a spoofed byebye removed the TV\n{out.text()}"
    moved = [json.loads(ln) for ln in out.lines if f'"{tv.id}"' in ln and '"updated"' in ln]
    assert all(e["address"] == tv_h.addr for e in moved), moved

    dead.proc.send_signal(signal.SIGKILL)  # no byebye: its address stops answering
    dead.proc.wait(5)
    spoof(spoofer_h, free_udp_port, dead.id, "alive")
    ev = updated_for(out, dead.id, 15, lambda e: e["address"] == spoofer_h.addr)
    assert ev, f"the entry did not move off a dead address\n{out.text()}\n{err.text()}"
    assert ev["candidates"] == [] and spoofer_h.addr in ev["location"], ev

    tv.proc.send_signal(signal.SIGTERM)  # the TV's own byebye still counts
    gone = event_for(out, "gone", tv.id, 5)
    assert gone and gone["reason"] == "byebye", f"{out.text()}\n{tv.diag()}"


# An ezbox-era peer's ears: joined to 239.255.255.250 only, on the host's LAN interface.
ALT_LISTENER = r"""
import json, socket, struct, sys, time
port, addr = int(sys.argv[1]), sys.argv[2]
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("239.255.255.250", port))
s.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP,
             struct.pack("4s4s", socket.inet_aton("239.255.255.250"), socket.inet_aton(addr)))
s.settimeout(0.2)
print(json.dumps({"event": "listening"}), flush=True)
end = time.monotonic() + float(sys.argv[3])
while time.monotonic() < end:
    try:
        data, src = s.recvfrom(4096)
    except socket.timeout:
        continue
    print(json.dumps({"from": src[0], "data": data.decode("utf-8", "replace")}), flush=True)
"""


def test_alt_group_announcements_reach_an_ezbox_era_listener(netbed, free_udp_port):
    """``igrs device run --alt-group`` on one host is heard by a listener on another host that
    joined 239.255.255.250 only; a device without the option is not."""
    dev_h, other_h, ear_h = one_lan(netbed, 3)
    ear = ear_h.popen([sys.executable, "-c", ALT_LISTENER, str(free_udp_port), ear_h.addr, "12"],
                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=igrs_env())
    out, err = LineReader(ear.stdout), LineReader(ear.stderr)
    assert out.wait_for(lambda ln: "listening" in ln, 10), err.text()
    alt, = start_devices([(dev_h, "Alt TV", "TV")], free_udp_port, extra=("--alt-group",))
    plain, = start_devices([(other_h, "Plain TV", "TV")], free_udp_port)
    heard = out.wait_for(lambda ln: alt.id in ln and "isdp:alive" in ln, 10)
    assert heard, f"nothing on 239.255.255.250 from {alt.id}\n{out.text()}\n{err.text()}\n{alt.diag()}"
    line = json.loads(heard)
    assert line["from"] == dev_h.addr and f"HOST: 239.255.255.250:{free_udp_port}" in line["data"]
    assert plain.id not in out.text()  # the IANA group only without --alt-group
    assert any(plain.id == d["id"] for d in discover(ear_h, free_udp_port))  # found there, by search
    for d in (alt, plain):
        d.proc.send_signal(signal.SIGTERM)
        assert d.proc.wait(10) == 0, d.diag()
    assert out.wait_for(lambda ln: alt.id in ln and "isdp:byebye" in ln, 5), out.text()
    ear.wait(15)
