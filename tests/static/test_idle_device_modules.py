"""An idle ``igrs device run`` leaves the heavy modules out (issue 15, footprint rows).

A real device is started in a subprocess (``--interface lo``, a free port, a scratch state
dir, asyncio's loop); once it says it is up, it is asked (a line on its stdin, read by a
thread the wrapper starts) which modules it has imported. Profiles, the relay, the bridges,
aiohttp, lxml, the cipher and PAKE code load on first use only, not to announce and wait. What
each costs in RSS: benchmarks/bench_discovery.py --only footprint.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from static_support import ROOT
from support import stop

# Runs the CLI in-process; a line on stdin prints the imported modules as one JSON line.
_WRAPPER = """
import json, sys, threading
def report():
    sys.stdin.readline()
    sys.stdout.write("MODULES " + json.dumps(sorted(sys.modules)) + "\\n")  # one write: print's two
    sys.stdout.flush()  # could take the device's own lines in between
threading.Thread(target=report, daemon=True).start()
from igrs.cli.main import main
sys.exit(main(sys.argv[1:]))
"""

# Top-level packages and igrs subpackages an idle device must not import.
HEAVY = ("aiohttp", "lxml", "spake2", "construct", "xmlschema", "zeroconf", "nats", "rich", "uvloop",
         "multidict", "yarl", "igrs.profiles", "igrs.relay", "igrs.bridges", "igrs.conformance", "igrs.apps",
         "igrs.core.security", "igrs.net.tls", "igrs.net.aiohttp_bridge")
# What a bare idle device no longer imports (issue 15, branch footprint): ifaddr with ctypes (the
# addresses come from netlink, igrs.net.netlink); shutil with bz2, lzma and zlib (argparse's help
# formatter and tempfile pulled them in); pkgutil; the description model and the group datagrams
# and the service and session bodies (all load on first use). The File profile uses shutil and
# hosts a service: only the bare device is held to these.
BARE_IDLE_HEAVY = ("ifaddr", "ctypes", "_ctypes", "shutil", "tempfile", "bz2", "lzma", "zlib", "pkgutil",
                "igrs.wire.description", "igrs.wire.group_datagrams", "igrs.wire.bodies")
# cryptography: the identity (Ed25519) and the sealed pipes' AEAD load on the first pairing or
# secure message; no part of it is needed to announce and wait.
HEAVY_PREFIXES = ("cryptography",)


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _idle_modules(tmp_path: Path, *options: str) -> set[str]:
    argv = ["device", "run", "--interface", "lo", "--port", str(_free_udp_port()), "--http-port", "0",
            "--name", "idle", "--state-dir", str(tmp_path / "state"), "--loop", "asyncio", *options]
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.Popen([sys.executable, "-c", _WRAPPER, *argv], cwd=ROOT, env=env, text=True,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdin is not None and proc.stdout is not None
    try:
        for line in proc.stdout:
            if " is up as " in line:
                break
        else:
            pytest.fail(f"the device did not start: {proc.stderr.read() if proc.stderr else ''}")
        proc.stdin.write("\n")
        proc.stdin.flush()
        for line in proc.stdout:  # the device's last start-up lines may still be coming
            if "MODULES " in line:
                return set(json.loads(line[line.index("MODULES ") + len("MODULES "):]))
        pytest.fail("no module list")
    finally:
        stop(proc)


def _heavy(modules: set[str], heavy: tuple[str, ...] = HEAVY) -> list[str]:
    return sorted(m for m in modules
                  if any(m == h or m.startswith(h + ".") for h in heavy) or m.startswith(HEAVY_PREFIXES))


def test_an_idle_device_imports_no_profile_relay_aiohttp_or_crypto(tmp_path: Path) -> None:
    modules = _idle_modules(tmp_path)
    assert "igrs.node.device" in modules and "igrs.net.isdp" in modules, "not a running device"
    heavy = _heavy(modules, HEAVY + BARE_IDLE_HEAVY)
    assert not heavy, f"an idle device imports {heavy}"


def test_a_device_sharing_a_folder_loads_aiohttp_on_the_first_transfer_only(tmp_path: Path) -> None:
    share = tmp_path / "share"
    share.mkdir()
    modules = _idle_modules(tmp_path, "--share-folder", str(share))
    assert "igrs.profiles.file.server" in modules, "the folder is not shared"
    heavy = [m for m in _heavy(modules) if not m.startswith("igrs.profiles.file")
             and m not in ("igrs.profiles", "igrs.apps")]
    assert not heavy, f"a device sharing a folder, idle, imports {heavy}"
    assert "igrs.profiles.file.http_transfers" not in modules
