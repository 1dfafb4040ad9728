"""Shared-folder mistakes (issue 13, item 5): refused at start with a clean message (exit 2),
and at run time told truly on both ends — the client CLI prints "permission denied" or
"read-only file system", the device logs one line, no traceback, no "action failed (500)"
nor "upload interrupted".

The device runs as root without CAP_DAC_OVERRIDE / CAP_DAC_READ_SEARCH (``setpriv``), so file
modes bind it as they bind a normal user, and in a mount namespace of its own (``unshare``)
where the writable share is a bind mount the test can turn read-only.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from netbed import LineReader
from support import skip_or_fail

IGRS = [sys.executable, "-m", "igrs"]
CAPLESS = ["setpriv", "--bounding-set", "-dac_override,-dac_read_search"]


def needs_root_tools() -> None:
    if os.geteuid() != 0:
        skip_or_fail("needs root (setpriv drops root's file-permission override; unshare -m)")
    for tool in ("setpriv", "unshare", "nsenter", "mount"):
        if shutil.which(tool) is None:
            skip_or_fail(f"{tool} not installed (apt-get install util-linux mount)")


def env() -> dict[str, str]:
    out = {**os.environ, "PYTHONUNBUFFERED": "1"}
    out.pop("IGRS_INTERFACES", None)
    return out


def igrs(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*IGRS, *args], capture_output=True, text=True, timeout=timeout, env=env())


# --- at start ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("command", [["device", "run", "--name", "Bad share"], ["file", "serve"]])
def test_a_missing_folder_is_a_usage_error(command: list[str], free_udp_port: int) -> None:
    cp = igrs(*command, "--interface", "lo", "--port", str(free_udp_port), "--share-folder", "/nonexistent:rw")
    assert cp.returncode == 2, cp.stdout + cp.stderr
    assert cp.stderr == "igrs: --share-folder /nonexistent:rw: /nonexistent is not a directory\n"
    assert cp.stdout == ""  # nothing announced


def test_unreadable_and_read_only_folders_are_refused_at_start(tmp_path: Path, free_udp_port: int) -> None:
    needs_root_tools()
    closed, ro = tmp_path / "closed", tmp_path / "ro"
    closed.mkdir(mode=0o000)
    ro.mkdir()
    common = ["--interface", "lo", "--port", str(free_udp_port)]
    unreadable = subprocess.run([*CAPLESS, *IGRS, "device", "run", "--name", "Closed", *common,
                                 "--share-folder", str(closed)], capture_output=True, text=True, timeout=30,
                                env=env())
    assert unreadable.returncode == 2, unreadable.stderr
    assert "cannot be read by this process (permission denied)" in unreadable.stderr
    script = (f"mount --bind {ro} {ro} && mount -o remount,bind,ro {ro} && exec "
              + shlex.join([*IGRS, "device", "run", "--name", "RO", *common, "--share-folder", f"{ro}:rw"]))
    read_only = subprocess.run(["unshare", "-m", "sh", "-c", script], capture_output=True, text=True,
                               timeout=30, env=env())
    assert read_only.returncode == 2, read_only.stderr
    assert f"--share-folder {ro}:rw: {ro} is shared writable but this process cannot write there " \
           "(read-only file system)" in read_only.stderr
    for cp in (unreadable, read_only):
        assert "Traceback" not in cp.stderr


# --- at run time ------------------------------------------------------------------------------------
@dataclass
class Sharing:
    pid: int
    common: list[str]
    pub: Path
    inbox: Path
    log: LineReader


@pytest.fixture
def sharing(tmp_path: Path, free_udp_port: int) -> Iterator[Sharing]:
    """A capless device in its own mount namespace sharing pub (ro) and inbox (rw, a bind
    mount), and a controller paired with it."""
    needs_root_tools()
    pub, inbox = tmp_path / "pub", tmp_path / "inbox"
    pub.mkdir()
    inbox.mkdir()
    (pub / "a.txt").write_text("hello\n")
    common = ["--interface", "lo", "--port", str(free_udp_port), "--state-dir", str(tmp_path / "controller")]
    device = [*CAPLESS, *IGRS, "device", "run", "--name", "Share PC", "--json", "--interface", "lo",
              "--port", str(free_udp_port), "--http-port", "0", "--state-dir", str(tmp_path / "dut"),
              "--share-folder", f"pub={pub}", "--share-folder", f"inbox={inbox}:rw"]
    script = f"mount --bind {inbox} {inbox} && exec " + shlex.join(device)
    proc = subprocess.Popen(["unshare", "-m", "sh", "-c", script], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env())
    out, err = LineReader(proc.stdout), LineReader(proc.stderr)
    try:
        ready = out.wait_for(lambda s: '"event": "ready"' in s, 20)
        assert ready, out.lines + err.lines
        pair = subprocess.Popen([*IGRS, "pair", json.loads(ready)["id"], *common], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env())
        shown = out.wait_for(lambda s: '"event": "pin"' in s, 20)
        assert shown, out.lines + err.lines
        answer, why = pair.communicate(json.loads(shown)["pin"] + "\n", timeout=30)
        assert pair.returncode == 0, answer + why
        yield Sharing(proc.pid, common, pub, inbox, err)
    finally:
        for folder in (pub, pub / "a.txt", inbox):
            if folder.exists():
                folder.chmod(0o755)
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def test_refusals_of_the_device_disk_are_told_on_both_ends(sharing: Sharing, tmp_path: Path) -> None:
    s = sharing
    local = tmp_path / "up.txt"
    local.write_text("some data\n")

    s.pub.chmod(0o000)  # the share became unreadable after the start
    listing = igrs("file", "ls", "Share PC", "/pub", *s.common)
    assert listing.returncode == 1
    assert listing.stderr == "igrs: Browse: the device's file system refused: permission denied (403)\n"
    s.pub.chmod(0o755)

    (s.pub / "a.txt").chmod(0o000)
    got = igrs("file", "get", "Share PC", "/pub/a.txt", str(tmp_path / "a.txt"), "--no-verify", "--no-progress",
               *s.common)
    assert got.returncode == 1
    refused = "the device's file system refused: permission denied"
    assert got.stderr == f"igrs: GET /pub/a.txt: {refused} (HTTP 403)\n"
    (s.pub / "a.txt").chmod(0o644)

    (s.inbox / "locked").mkdir(mode=0o555)  # a folder of the writable share the device may not write
    put = igrs("file", "put", "Share PC", str(local), "/inbox/locked/", "--no-progress", *s.common)
    assert put.returncode == 1, put.stderr
    assert f"PUT /inbox/locked/up.txt: {refused} (HTTP 403)" in put.stderr
    assert "interrupted" not in put.stderr

    made = igrs("file", "mkdir", "Share PC", "/inbox/locked/d", *s.common)
    assert made.stderr == "igrs: MakeDirectory: the device's file system refused: permission denied (403)\n"

    # the writable share's file system turns read-only under the running device
    subprocess.run(["nsenter", "-t", str(s.pid), "-m", "mount", "-o", "remount,bind,ro", str(s.inbox)],
                   check=True, timeout=15)
    put = igrs("file", "put", "Share PC", str(local), "/inbox/new.txt", "--no-progress", *s.common)
    assert put.returncode == 1
    assert put.stderr == "igrs: BeginPut: the device's file system refused: read-only file system (403)\n"

    s.log.join(0.5)
    device_log = "\n".join(s.log.lines)
    assert "Traceback" not in device_log
    assert "Browse refused by the file system: [Errno 13] Permission denied" in device_log
    assert "Read-only file system" in device_log
