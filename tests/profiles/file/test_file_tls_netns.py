"""A third device on the LAN sniffs the transfers between two paired devices (three namespace
hosts on a bridge that floods every frame, as Wi-Fi does): the bytes of a file put and got
inside TLS never appear in its capture, while those of a plain HTTP transfer do (the check
that the capture sees the traffic at all). specs/file-profile.md §5, specs/security.md §11."""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from netbed import LineReader, free_port

pytestmark = [pytest.mark.netns, pytest.mark.timeout(150)]

IGRS = [sys.executable, "-m", "igrs"]
SIZE = 1 << 20
PLAIN_GET = """
import asyncio, sys
from igrs import ControlPoint
from igrs.profiles.file.client import FileClient

async def main() -> None:
    async with ControlPoint(port=int(sys.argv[1]), state_dir=sys.argv[2]) as cp:
        await cp.search(timeout=1.5)
        async with FileClient.connect(cp, "PC", tls=False) as files:
            await files.get(sys.argv[3], sys.argv[4])
            print(files.transport)

asyncio.run(main())
"""


def _env(state: Path) -> dict[str, str]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "IGRS_STATE_DIR": str(state)}
    env.pop("IGRS_INTERFACES", None)
    return env


def _marked(marker: bytes) -> bytes:
    """SIZE random bytes with ``marker`` every 1000 bytes: some copy lies whole in any segment."""
    data = bytearray(os.urandom(SIZE))
    for at in range(0, SIZE - len(marker), 1000):
        data[at:at + len(marker)] = marker
    return bytes(data)


def _done(proc: subprocess.CompletedProcess[str]) -> dict:
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")][-1]


def test_a_sniffer_on_the_lan_sees_no_file_bytes(netbed, require_cmd, tmp_path: Path) -> None:
    require_cmd("tshark")
    lan = netbed.lan("home")
    pc, phone, eve = netbed.host("pc", lan), netbed.host("phone", lan), netbed.host("eve", lan)
    # no MAC learning: the bridge floods every frame to every port, like a shared radio channel
    subprocess.run(["ip", "-n", lan.ns, "link", "set", "br0", "type", "bridge", "ageing_time", "0"], check=True)
    port = free_port("udp")
    share = tmp_path / "inbox"
    share.mkdir()
    secret, control = secrets.token_hex(16).encode(), secrets.token_hex(16).encode()
    src = tmp_path / "secret.bin"
    src.write_bytes(_marked(secret))
    (share / "control.bin").write_bytes(_marked(control))
    pc_env, phone_env = _env(tmp_path / "pc-state"), _env(tmp_path / "phone-state")

    server = pc.popen([*IGRS, "file", "serve", "--name", "PC", "--port", str(port), "--json",
                       "--share-folder", f"inbox={share}:rw"],
                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=pc_env)
    server_out = LineReader(server.stdout)
    LineReader(server.stderr)
    assert server_out.wait_for(lambda ln: '"ready"' in ln, timeout=20), server_out.text()
    pair = phone.popen([*IGRS, "pair", "PC", "--port", str(port)], stdin=subprocess.PIPE,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=phone_env)
    pin_line = server_out.wait_for(lambda ln: '"pin"' in ln, timeout=20)
    assert pin_line, server_out.text()
    out, err = pair.communicate(json.loads(pin_line)["pin"] + "\n", timeout=30)
    assert pair.returncode == 0, out + err

    pcap = tmp_path / "eve.pcap"
    sniffer = eve.popen(["tshark", "-i", eve.iface_on(lan).name, "-w", str(pcap), "-q"],
                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    sniffed = LineReader(sniffer.stderr)
    assert sniffed.wait_for(lambda ln: "Capturing on" in ln, timeout=20), sniffed.text()

    put = _done(phone.run([*IGRS, "file", "put", "PC", str(src), "/inbox/secret.bin", "--port", str(port),
                           "--json"], timeout=60, env=phone_env))
    got = _done(phone.run([*IGRS, "file", "get", "PC", "/inbox/secret.bin", str(tmp_path / "back.bin"),
                           "--port", str(port), "--json"], timeout=60, env=phone_env))
    assert put["transport"] == got["transport"] == "tls"
    assert (share / "secret.bin").read_bytes() == (tmp_path / "back.bin").read_bytes() == src.read_bytes()
    plain = phone.run([sys.executable, "-c", PLAIN_GET, str(port), str(tmp_path / "phone-state" / "controller"),
                       "/inbox/control.bin", str(tmp_path / "control.bin")], timeout=60, env=phone_env)
    assert plain.returncode == 0 and plain.stdout.strip() == "http", plain.stdout + plain.stderr

    sniffer.send_signal(signal.SIGINT)
    sniffer.wait(timeout=20)
    server.send_signal(signal.SIGTERM)
    server.wait(timeout=15)
    captured = pcap.read_bytes()
    assert control in captured, "the sniffer did not see the plain transfer: the capture proves nothing"
    assert secret not in captured, "file bytes sent inside TLS were readable on the LAN"
    # ... and it did see the TLS transfers: two handshakes, and at least their bytes
    hellos = eve.run(["tshark", "-r", str(pcap), "-Y", "tls.handshake.type == 1", "-T", "fields",
                      "-e", "tcp.dstport"], timeout=60)
    tls_ports = set(hellos.stdout.split())
    assert len(hellos.stdout.split()) >= 2 and len(tls_ports) == 1, hellos.stdout + hellos.stderr
    lengths = eve.run(["tshark", "-r", str(pcap), "-Y", f"tcp.port == {tls_ports.pop()}", "-T", "fields",
                       "-e", "tcp.len"], timeout=60)
    assert sum(int(n) for n in lengths.stdout.split()) > 2 * SIZE
