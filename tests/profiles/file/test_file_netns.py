"""Across two namespace hosts: an upload interrupted by killing the receiving device resumes
after the device restarts (same identity, same pairing) and completes with a matching SHA-256."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from netbed import LineReader, free_port, wait_until

pytestmark = [pytest.mark.netns, pytest.mark.timeout(120)]

FILE_CLI = [sys.executable, "-m", "igrs", "file"]
IGRS = [sys.executable, "-m", "igrs"]
SIZE = 24 * 1024 * 1024


def _env(state: Path) -> dict[str, str]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "IGRS_STATE_DIR": str(state)}
    env.pop("IGRS_INTERFACES", None)
    return env


def test_upload_interrupted_by_killing_the_receiver_resumes(netbed, tmp_path: Path) -> None:
    lan = netbed.lan("home")
    pc, phone = netbed.host("pc", lan), netbed.host("phone", lan)
    port = free_port("udp")
    share, src = tmp_path / "inbox", tmp_path / "video.bin"
    share.mkdir()
    src.write_bytes(os.urandom(SIZE))
    want = hashlib.sha256(src.read_bytes()).hexdigest()
    pc_env, phone_env = _env(tmp_path / "pc-state"), _env(tmp_path / "phone-state")

    def serve() -> tuple[subprocess.Popen[str], LineReader]:
        proc = pc.popen([*FILE_CLI, "serve", "--name", "PC", "--port", str(port), "--json",
                         "--share-folder", f"inbox={share}:rw"],
                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=pc_env)
        out = LineReader(proc.stdout)
        LineReader(proc.stderr)
        assert out.wait_for(lambda ln: '"ready"' in ln, timeout=20), out.text()
        return proc, out

    server, server_out = serve()
    # pair the phone with the PC (the PIN the PC prints goes to `igrs pair` on stdin)
    pair = phone.popen([*IGRS, "pair", "PC", "--port", str(port)], stdin=subprocess.PIPE,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=phone_env)
    pin_line = server_out.wait_for(lambda ln: '"pin"' in ln, timeout=20)
    assert pin_line, server_out.text()
    out, err = pair.communicate(json.loads(pin_line)["pin"] + "\n", timeout=30)
    assert pair.returncode == 0, out + err

    # a slow upload; the PC is killed (SIGKILL) while it is half-way
    put_argv = [*FILE_CLI, "put", "PC", str(src), "/inbox/video.bin", "--port", str(port), "--json"]
    upload = phone.popen([*put_argv, "--limit-rate", str(8 * 1024 * 1024)], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, env=phone_env)
    partial_dir = share / ".igrs-partial"

    def half_way() -> bool:
        return any(p.stat().st_size > SIZE // 3 for p in partial_dir.glob("*.part"))

    assert wait_until(half_way, timeout=30), "the upload never got going"
    os.killpg(server.pid, signal.SIGKILL)
    server.wait(timeout=10)
    out, err = upload.communicate(timeout=60)
    assert upload.returncode == 1 and "run the same command again to resume" in err, out + err
    assert not (share / "video.bin").exists()  # never a half-written file under the final name
    kept = max(p.stat().st_size for p in partial_dir.glob("*.part"))
    assert 0 < kept < SIZE

    # the PC comes back (same identity and pairing); the same command resumes and completes
    server, server_out = serve()
    time.sleep(0.5)
    done = phone.run(put_argv, timeout=60, env=phone_env)
    assert done.returncode == 0, done.stdout + done.stderr
    events = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    resume = next(e for e in events if e["event"] == "resume")
    assert 0 < resume["offset"] <= kept
    assert events[-1]["event"] == "done" and events[-1]["sha256"] == want
    assert hashlib.sha256((share / "video.bin").read_bytes()).hexdigest() == want
    assert not list(partial_dir.glob("*.part"))
    server.send_signal(signal.SIGTERM)
    server.wait(timeout=15)
