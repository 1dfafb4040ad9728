"""One identity per device (issue 13, item 3): a second ``igrs device run`` with the same
``--name`` (the same state folder, so the same device id) is refused before it announces
anything, naming the pid that holds the folder; the folder of a dead device is taken over."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from netbed import LineReader

from igrs.node.keystore import KeyStore, StateDirInUse

IGRS = [sys.executable, "-m", "igrs"]


def env() -> dict[str, str]:
    out = {**os.environ, "PYTHONUNBUFFERED": "1"}
    out.pop("IGRS_INTERFACES", None)
    return out


def device_argv(port: int) -> list[str]:
    return [*IGRS, "device", "run", "--name", "Twin TV", "--json", "--interface", "lo", "--port", str(port),
            "--http-port", "0", "--max-age", "60"]


@pytest.fixture
def procs() -> Iterator[list[subprocess.Popen[str]]]:
    started: list[subprocess.Popen[str]] = []
    try:
        yield started
    finally:
        for proc in started:
            if proc.poll() is None:
                proc.kill()
            proc.wait(timeout=10)


def start(procs: list[subprocess.Popen[str]], argv: list[str]) -> tuple[subprocess.Popen[str], LineReader]:
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env())
    procs.append(proc)
    return proc, LineReader(proc.stdout)


def test_a_second_device_on_the_same_state_folder_is_refused(procs: list[subprocess.Popen[str]],
                                                              free_udp_port: int) -> None:
    first, first_out = start(procs, device_argv(free_udp_port))
    ready = first_out.wait_for(lambda s: '"event": "ready"' in s, 20)
    assert ready, first_out.lines
    _watcher, seen = start(procs, [*IGRS, "discover", "--watch", "--json", "--interface", "lo",
                                   "--port", str(free_udp_port)])
    assert seen.wait_for(lambda s: '"appeared"' in s and json.loads(ready)["id"] in s, 10), seen.lines
    second = subprocess.run(device_argv(free_udp_port), capture_output=True, text=True, timeout=30, env=env())
    assert second.returncode == 2, second.stdout + second.stderr
    assert f"is in use by pid {first.pid}; pass --state-dir or another --name" in second.stderr, second.stderr
    assert "Traceback" not in second.stderr and second.stdout == ""  # never announced
    # the watchers keep the real device: no byebye of its identity came from the second one
    assert seen.wait_for(lambda s: '"gone"' in s, 1.5) is None, seen.lines
    assert first.poll() is None


def test_the_folder_of_a_dead_device_is_taken_over(procs: list[subprocess.Popen[str]], free_udp_port: int,
                                                   isolated_state_dir: Path) -> None:
    first, out = start(procs, device_argv(free_udp_port))
    ready = out.wait_for(lambda s: '"event": "ready"' in s, 20)
    assert ready, out.lines
    owner = isolated_state_dir / "devices" / "twin-tv" / "owner.pid"
    assert owner.read_text().strip() == str(first.pid)
    first.send_signal(signal.SIGKILL)  # no clean-up: owner.pid names a dead process
    first.wait(timeout=10)
    again, out = start(procs, device_argv(free_udp_port))
    ready_again = out.wait_for(lambda s: '"event": "ready"' in s, 20)
    assert ready_again, out.lines
    assert json.loads(ready_again)["id"] == json.loads(ready)["id"]  # the same identity, one device
    assert owner.read_text().strip() == str(again.pid)


def test_claim_in_one_process(tmp_path: Path) -> None:
    store = KeyStore(tmp_path / "dev")
    claim = store.claim()
    with pytest.raises(StateDirInUse) as refused:
        KeyStore(tmp_path / "dev").claim()  # another Device object on the same folder
    assert refused.value.pid == os.getpid()
    claim.release()
    KeyStore(tmp_path / "dev").claim().release()  # free again
