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


def start_serve(state: Path, *options: str, port: int = 0
                ) -> tuple[subprocess.Popen[str], int, str]:
    """`igrs relay serve` on loopback: the process, its port and its certificate's fingerprint."""
    serve = subprocess.Popen(
        [PY, "-m", "igrs", "relay", "serve", "--port", str(port), "--state-dir", str(state),
         *options], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    assert serve.stdout is not None
    lines = [serve.stdout.readline() for _ in range(3)]
    found = re.search(r"listening on [\d.]+:(\d+)", lines[0])
    assert found, lines
    return serve, int(found.group(1)), lines[2].split()[-1]


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
    serve, port, fp = start_serve(tmp_path / "state")
    try:
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
    serve, port, fp = start_serve(state, "--closed-registration")
    try:
        conn = ["--relay", f"127.0.0.1:{port}", "--fingerprint", fp]
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
        assert json.loads(cli("relations", "--creds", str(user)).stdout) == {"relations": {},
                                                                             "names": {}}
        usage = cli("--help").stdout
        for cmd in ("modify", "reset-code", "rotate-token", "delete-account", "add-account"):
            assert re.search(rf"^\s+{cmd}\s+\S", usage, re.M), cmd  # listed with its help
    finally:
        serve.send_signal(signal.SIGTERM)
        serve.wait(timeout=10)


def test_names_hints_help_and_lost_relay(tmp_path: Path) -> None:
    """As a newcomer meets the relay (issue 13, item 8): serve says who can connect, related
    parties are addressed by name, a 403 says how to become related, `request` lists its ops,
    and `listen` says when the relay is gone and when it is back (issue 13, item 2)."""
    serve, port, fp = start_serve(tmp_path / "state")
    conn = ["--relay", f"127.0.0.1:{port}", "--fingerprint", fp]
    alice, bob, tv = tmp_path / "alice.json", tmp_path / "bob.json", tmp_path / "tv.json"
    listen: subprocess.Popen[str] | None = None
    try:
        cli("register-user", *conn, "--name", "alice", "--save", str(alice))
        cli("register-user", *conn, "--name", "bob", "--save", str(bob))
        cli("register-device", *conn, "--name", "Kitchen TV", "--verify-code", "tv-code-7",
            "--save", str(tv))
        tv_id = json.loads(tv.read_text())["id"]
        bob_id = json.loads(bob.read_text())["id"]
        cli("bind", "--creds", str(alice), "--device", tv_id, "--verify-code", "tv-code-7")
        # a stranger: refused with the way to become related
        refused = subprocess.run([PY, "-m", "igrs", "relay", "send", "--creds", str(alice),
                                  "--to", bob_id, "hi"], capture_output=True, text=True,
                                 timeout=30, cwd=ROOT)
        assert refused.returncode == 1 and "403" in refused.stderr
        assert "igrs relay friend --user" in refused.stderr
        # a stranger's name is not looked up (no directory): a clear usage error, exit 2
        unknown = subprocess.run([PY, "-m", "igrs", "relay", "send", "--creds", str(alice),
                                  "--to", "bob", "hi"], capture_output=True, text=True,
                                 timeout=30, cwd=ROOT)
        assert unknown.returncode == 2 and "no related user or device is named 'bob'" in unknown.stderr
        cli("friend", "--creds", str(alice), "--user", bob_id)
        cli("friend", "--creds", str(bob), "--user", "alice", "--accept")  # by name: pending
        listen = subprocess.Popen([PY, "-m", "igrs", "relay", "listen", "--creds", str(tv)],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                  cwd=ROOT)
        assert listen.stdout is not None and listen.stdout.readline().startswith("listening as")
        assert json.loads(cli("send", "--creds", str(alice), "--to", "Kitchen TV",
                              "to the TV by name").stdout) == {"status": "delivered"}
        assert json.loads(cli("send", "--creds", str(alice), "--to", "bob", "--durable",
                              "hi bob").stdout)["status"] == "stored"
        assert listen.stdout.readline().strip().endswith("to the TV by name")
        online = json.loads(cli("presence", "--creds", str(alice), "Kitchen TV").stdout)
        assert online["online"] == {tv_id: True}
        # the relay dies: listen says so, and says when it is back
        serve.kill()
        serve.wait(timeout=10)
        assert listen.stderr is not None
        assert "disconnected from the relay" in listen.stderr.readline()
        serve, _, _ = start_serve(tmp_path / "state", port=port)
        assert "reconnected" in listen.stderr.readline()
    finally:
        if listen is not None:
            listen.kill()
        serve.send_signal(signal.SIGTERM)
        serve.wait(timeout=10)
        assert serve.stderr is not None
        assert "--host 0.0.0.0" in serve.stderr.read()  # who can connect, said at start
    help_ = cli("request", "--help").stdout
    for op in ("bind", "relations", "item_put", "rotate_token"):
        assert re.search(rf"^\s+{op}\s", help_, re.M), op
    serve_help = " ".join(cli("serve", "--help").stdout.split())
    assert "0.0.0.0" in serve_help and "this machine only" in serve_help
