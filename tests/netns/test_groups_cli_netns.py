"""Device groups through the command line across real hosts (specs/groups.md §9): every
``igrs`` invocation is its own process in its own network namespace (tests/netbed.py), each
host with its own state root (``$IGRS_STATE_DIR``) and the documented default folders.

The centralised flow create -> pair -> join -> list -> leave, a third host's leave refused,
list counts that follow the membership, and a running join that ends when its group does.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from netbed import Host, LineReader, wait_until

pytestmark = pytest.mark.netns

IGRS = [sys.executable, "-m", "igrs"]


def env_for(state_root: Path) -> dict[str, str]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "IGRS_STATE_DIR": str(state_root)}
    env.pop("IGRS_INTERFACES", None)
    return env


class Cli:
    """``igrs`` commands of one host (its namespace and its state root)."""

    def __init__(self, host: Host, port: int, state_root: Path) -> None:
        self.host, self.port, self.env = host, port, env_for(state_root)

    def argv(self, *words: str) -> list[str]:
        return [*IGRS, *words, "--port", str(self.port)]

    def run(self, *words: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
        return self.host.run(self.argv(*words), timeout=timeout, env=self.env)

    def start(self, *words: str, stdin: bool = False) -> tuple[subprocess.Popen[str], LineReader, LineReader]:
        proc = self.host.popen(self.argv(*words), stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=self.env)
        return proc, LineReader(proc.stdout), LineReader(proc.stderr)


def event(out: LineReader, name: str, timeout: float = 20) -> dict[str, Any] | None:
    def match(line: str) -> bool:
        try:
            return json.loads(line).get("event") == name
        except (ValueError, AttributeError):
            return False

    line = out.wait_for(match, timeout)
    return json.loads(line) if line else None


def listed(cli: Cli) -> dict[str, dict[str, Any]]:
    res = cli.run("group", "list", "--json", "--timeout", "1")
    assert res.returncode == 0, res.stderr
    return {g["name"]: g for g in json.loads(res.stdout)}


def test_centralised_group_from_the_command_line_across_hosts(netbed: Any, free_udp_port: int,
                                                             tmp_path: Path) -> None:
    lan = netbed.lan("home")
    tv_h, phone_h, tablet_h = (netbed.host(n, lan) for n in ("tv", "phone", "tablet"))
    tv, phone, tablet = (Cli(h, free_udp_port, tmp_path / h.name) for h in (tv_h, phone_h, tablet_h))

    # create: the TV hosts a centralised group under its persistent identity (devices/tv)
    master, m_out, m_err = tv.start("group", "create", "Living room", "--centralised", "--device-name", "TV",
                                    "--json")
    ready = event(m_out, "ready")
    assert ready, f"{m_out.text()}\n{m_err.text()}"
    gid, tv_id = ready["group_id"], ready["device_id"]
    assert json.loads((tmp_path / "tv" / "devices" / "tv" / "device.json").read_text())["device_id"] == tv_id

    # pair: the phone's controller identity pairs with the TV (the PIN the TV shows)
    pair, p_out, p_err = phone.start("pair", "TV", stdin=True)
    pin = event(m_out, "pin")
    assert pin, f"the TV showed no PIN\n{m_out.text()}\n{p_err.text()}"
    assert pair.stdin is not None
    pair.stdin.write(pin["pin"] + "\n")
    pair.stdin.flush()
    assert pair.wait(30) == 0, f"{p_out.text()}\n{p_err.text()}"

    # join: the same identity (controller) is admitted; list on a third host counts it
    join, j_out, j_err = phone.start("group", "join", "Living room", "--json", "-t", "1")
    joined = event(j_out, "joined", 30)
    assert joined, f"{j_out.text()}\n{j_err.text()}\n{m_out.text()}"
    phone_id = joined["device_id"]
    assert phone_id != tv_id and joined["group_id"] == gid
    assert event(m_out, "MemberJoined"), m_out.text()
    group = listed(tablet)["Living room"]
    assert (group["id"], group["kind"], group["master"]) == (gid, "centralised", tv_id)
    assert group["member_count"] == 1, group

    # a third host's leave: it is not a member, and says so
    res = tablet.run("group", "leave", "Living room", "-t", "1")
    assert res.returncode == 1 and "not paired" in res.stderr, (res.stdout, res.stderr)

    # leave on the phone ends its running join, which quits; the master drops the member
    res = phone.run("group", "leave", "Living room", "--json", "-t", "1")
    assert res.returncode == 0, (res.stdout, res.stderr)
    assert json.loads(res.stdout.splitlines()[-1])["event"] == "left"
    assert join.wait(20) == 0, f"{j_out.text()}\n{j_err.text()}"
    left = event(m_out, "MemberLeft")
    assert left and left["device_id"] == phone_id and left["reason"] == "quit", m_out.text()
    assert wait_until(lambda: listed(tablet)["Living room"]["member_count"] == 0, 10)

    # nothing left to leave: exit 1 with the master's word for it
    res = phone.run("group", "leave", "Living room", "-t", "1")
    assert res.returncode == 1 and "not a member" in res.stderr, (res.stdout, res.stderr)

    # a running join ends, exit 1 with the reason, when its master ends the group
    join, j_out, j_err = phone.start("group", "join", "Living room", "--json", "-t", "1")
    assert event(j_out, "joined", 30), f"{j_out.text()}\n{j_err.text()}"
    os.killpg(master.pid, signal.SIGTERM)  # the group's end: dissolution
    assert master.wait(20) == 0, f"{m_out.text()}\n{m_err.text()}"
    assert join.wait(20) == 1, f"{j_out.text()}\n{j_err.text()}"
    assert "dissolved" in j_err.text(), j_err.text()
