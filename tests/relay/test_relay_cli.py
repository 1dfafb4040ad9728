"""The CLI end to end: `serve`, then two clients exchange a message with one command each."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

PY = sys.executable
ROOT = Path(__file__).resolve().parents[2]


def cli(*args: str, **kw: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PY, "-m", "igrs", "relay", *args],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
        cwd=ROOT,
        **kw,
    )  # type: ignore[call-overload]


def test_serve_register_bind_send_listen(tmp_path: Path) -> None:
    serve = subprocess.Popen(
        [PY, "-m", "igrs", "relay", "serve", "--port", "0", "--state-dir", str(tmp_path / "state")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    try:
        assert serve.stdout is not None
        lines = [serve.stdout.readline() for _ in range(3)]
        port = int(re.search(r"listening on [\d.]+:(\d+)", lines[0]).group(1))  # type: ignore[union-attr]
        fp = lines[2].split()[-1]
        assert re.fullmatch(r"([0-9A-F]{2}:){31}[0-9A-F]{2}", fp)
        conn = ["--relay", f"127.0.0.1:{port}", "--fingerprint", fp]
        user = tmp_path / "phone.json"
        tv = tmp_path / "tv.json"
        cli("register-user", *conn, "--name", "alice", "--save", str(user))
        cli(
            "register-device",
            *conn,
            "--name",
            "tv",
            "--verify-code",
            "881205",
            "--device-type",
            "TV",
            "--save",
            str(tv),
        )
        assert (user.stat().st_mode & 0o777) == 0o600
        tv_id = json.loads(tv.read_text())["id"]
        user_id = json.loads(user.read_text())["id"]
        cli("bind", "--creds", str(user), "--device", tv_id, "--verify-code", "881205")

        listen = subprocess.Popen(
            [PY, "-m", "igrs", "relay", "listen", "--creds", str(tv), "--count", "2"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )
        try:
            assert listen.stdout is not None
            assert listen.stdout.readline().startswith("listening as ")
            out = cli("send", "--creds", str(user), "--to", tv_id, "hello from the phone")
            assert json.loads(out.stdout) == {"status": "delivered"}
            out = cli("send", "--creds", str(user), "--to", user_id, "--to-user-devices", "to all my devices")
            assert json.loads(out.stdout)["delivered"] == [tv_id]
            stdout, _ = listen.communicate(timeout=20)
        finally:
            listen.kill()
        got = stdout.splitlines()
        assert got == [
            f"message {user_id} urn:IGRS:relay:app hello from the phone",
            f"message {user_id} urn:IGRS:relay:app to all my devices",
        ]
        out = cli("presence", "--creds", str(user))
        assert json.loads(out.stdout)["online"] == {tv_id: False}
        bad = subprocess.run(
            [
                PY,
                "-m",
                "igrs",
                "relay",
                "send",
                "--creds",
                str(tv),
                "--to",
                "urn:IGRS:User:UserId:00000000-0000-0000-0000-000000000001",
                "x",
            ],
            capture_output=True,
            text=True,
            timeout=30,
            cwd=ROOT,
        )
        assert bad.returncode == 1 and "403" in bad.stderr
    finally:
        serve.send_signal(signal.SIGTERM)
        serve.wait(timeout=10)
    assert serve.returncode == 0
    assert (tmp_path / "state" / "relay.sqlite3").exists()
    assert os.path.exists(tmp_path / "state" / "relay-cert.pem")


def test_account_commands_and_closed_registration(tmp_path: Path) -> None:
    """The operator adds accounts to a closed relay; the owner renames, resets the code of,
    revokes the token of and deletes a device with one command each."""
    state = tmp_path / "state"
    serve = subprocess.Popen(
        [PY, "-m", "igrs", "relay", "serve", "--port", "0", "--state-dir", str(state),
         "--closed-registration"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        assert serve.stdout is not None
        lines = [serve.stdout.readline() for _ in range(3)]
        port = int(re.search(r"listening on [\d.]+:(\d+)", lines[0]).group(1))  # type: ignore[union-attr]
        conn = ["--relay", f"127.0.0.1:{port}", "--fingerprint", lines[2].split()[-1]]
        refused = subprocess.run([PY, "-m", "igrs", "relay", "register-user", *conn, "--name",
                                  "x"], capture_output=True, text=True, timeout=30, cwd=ROOT)
        assert refused.returncode == 1 and "403" in refused.stderr
        user, tv = tmp_path / "owner.json", tmp_path / "tv.json"
        add = ["add-account", "--state-dir", str(state), "--relay", f"127.0.0.1:{port}"]
        cli(*add, "user", "--name", "owner", "--save", str(user))
        weak = subprocess.run([PY, "-m", "igrs", "relay", *add, "device", "--name", "tv",
                               "--verify-code", "123456"], capture_output=True, text=True,
                              timeout=30, cwd=ROOT)
        assert weak.returncode == 1 and "straight run" in weak.stderr
        cli(*add, "device", "--name", "tv", "--verify-code", "tv-code-1", "--save", str(tv))
        tv_id = json.loads(tv.read_text())["id"]
        cli("bind", "--creds", str(user), "--device", tv_id, "--verify-code", "tv-code-1")
        out = cli("modify", "--creds", str(user), "--device", tv_id, "--name", "Kitchen TV")
        assert json.loads(out.stdout)["name"] == "Kitchen TV"
        cli("reset-code", "--creds", str(tv), "--verify-code", "new-code-22")
        # the owner's own token: rotated, and the creds file keeps working
        old_token = json.loads(user.read_text())["token"]
        cli("rotate-token", "--creds", str(user))
        assert json.loads(user.read_text())["token"] != old_token
        assert (user.stat().st_mode & 0o777) == 0o600
        # the device's token, revoked by its owner: the old credentials are refused
        out = cli("rotate-token", "--creds", str(user), "--device", tv_id)
        assert json.loads(out.stdout)["token"]
        stale = subprocess.run([PY, "-m", "igrs", "relay", "relations", "--creds", str(tv)],
                               capture_output=True, text=True, timeout=30, cwd=ROOT)
        assert stale.returncode == 1 and "401" in stale.stderr
        assert json.loads(cli("delete-account", "--creds", str(user), "--device", tv_id,
                              "--yes").stdout) == {"deleted": tv_id}
        assert json.loads(cli("relations", "--creds", str(user)).stdout) == {"relations": {}}
        usage = cli("--help").stdout
        for cmd in ("modify", "reset-code", "rotate-token", "delete-account", "add-account"):
            assert re.search(rf"^\s+{cmd}\s+\S", usage, re.M), cmd  # listed with its help
    finally:
        serve.send_signal(signal.SIGTERM)
        serve.wait(timeout=10)
