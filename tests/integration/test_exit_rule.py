"""How an ``igrs`` command ends (issue 13, item 9; README "Command line"): Ctrl-C is 130 with
an "interrupted" line everywhere (a transfer adds how to resume, and a prompt for the PIN does
not hang), usage errors are 2 without a traceback, a closed stdout (``| head``) is no error, and
a missing optional package (zeroconf) is one line, not "Event loop is closed" tracebacks."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from netbed import LineReader

from igrs.cli.main import main

IGRS = [sys.executable, "-m", "igrs"]
NOISE = ("Traceback", "Exception ignored", "Event loop is closed", "Broken pipe", "BrokenPipeError")


def env(**extra: str) -> dict[str, str]:
    out = {**os.environ, "PYTHONUNBUFFERED": "1", **extra}
    out.pop("IGRS_INTERFACES", None)
    return out


def quiet(text: str) -> bool:
    return not any(n in text for n in NOISE)


def interrupt(argv: list[str], ready: str | None, *, stdin: int | None = subprocess.DEVNULL,
              timeout: float = 30) -> tuple[int, str, float]:
    """Start ``argv``, wait for ``ready`` on its stdout or stderr (None: 1.5 s), SIGINT it;
    (status, stderr, seconds it took to end)."""
    proc = subprocess.Popen(argv, stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env())
    out, err = LineReader(proc.stdout), LineReader(proc.stderr)
    try:
        deadline = time.monotonic() + (1.5 if ready is None else timeout)
        while ready is None or not any(ready in line for line in out.lines + err.lines):
            if ready is None and time.monotonic() >= deadline:
                break
            assert time.monotonic() < deadline and proc.poll() is None, out.lines + err.lines
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        t0 = time.monotonic()
        status = proc.wait(timeout=15)
        took = time.monotonic() - t0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
    err.join()
    return status, err.text(), took


# --- Ctrl-C -----------------------------------------------------------------------------------------
def test_ctrl_c_of_a_one_shot_and_of_a_watching_command(free_udp_port: int) -> None:
    common = ["--interface", "lo", "--port", str(free_udp_port)]
    status, err, _ = interrupt([*IGRS, "discover", "--watch", *common], None)
    assert status == 130 and err.rstrip().endswith("igrs: interrupted") and quiet(err), err
    status, err, _ = interrupt([*IGRS, "conformance", "watch", *common], "watching lo")
    assert status == 130 and err.rstrip().endswith("igrs: interrupted") and quiet(err), err
    assert "IGRS message(s) checked" in err  # the summary still comes


@pytest.fixture
def sharing(free_udp_port: int, tmp_path: Path) -> Iterator[tuple[list[str], subprocess.Popen[str]]]:
    """A device sharing a 20 MB file, paired with the controller; (common options, device)."""
    share = tmp_path / "share"
    share.mkdir()
    (share / "big.bin").write_bytes(os.urandom(1 << 20) * 20)
    common = ["--interface", "lo", "--port", str(free_udp_port), "--state-dir", str(tmp_path / "controller")]
    dev = subprocess.Popen([*IGRS, "device", "run", "--name", "Big PC", "--json", "--interface", "lo",
                            "--port", str(free_udp_port), "--http-port", "0",
                            "--share-folder", f"share={share}:rw"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env())
    out = LineReader(dev.stdout)
    try:
        ready = out.wait_for(lambda s: '"ready"' in s, 20)
        assert ready, out.lines
        pair = subprocess.Popen([*IGRS, "pair", json.loads(ready)["id"], *common], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env())
        shown = out.wait_for(lambda s: '"pin"' in s, 20)
        assert shown, out.lines
        said, why = pair.communicate(json.loads(shown)["pin"] + "\n", timeout=30)
        assert pair.returncode == 0, said + why
        yield common, dev
    finally:
        dev.terminate()
        dev.wait(timeout=10)


def test_ctrl_c_of_a_transfer_says_how_to_resume(sharing: tuple[list[str], subprocess.Popen[str]],
                                                  tmp_path: Path) -> None:
    common, _ = sharing
    local = tmp_path / "big.bin"
    get = [*IGRS, "file", "get", "Big PC", "/share/big.bin", str(local), "--no-progress", *common]
    proc = subprocess.Popen([*get, "--limit-rate", "2000000"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env())
    try:
        partial = local.with_name(local.name + ".igrs-part")
        deadline = time.monotonic() + 20
        while not (partial.exists() and partial.stat().st_size > 0):  # the transfer is under way
            assert time.monotonic() < deadline and proc.poll() is None, proc.communicate()
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
    assert proc.returncode == 130, err
    assert err.rstrip().endswith("igrs: interrupted; run the same command again to resume") and quiet(err), err
    done = subprocess.run(get, capture_output=True, text=True, timeout=60, env=env())
    assert done.returncode == 0, done.stderr  # and it does resume to the end
    assert local.stat().st_size == 20 << 20


def test_ctrl_c_at_the_pin_prompt_does_not_hang(sharing: tuple[list[str], subprocess.Popen[str]],
                                                tmp_path: Path) -> None:
    common, _ = sharing
    other = [*common[:-1], str(tmp_path / "other-controller")]  # not paired yet: it asks for the PIN
    status, err, took = interrupt([*IGRS, "pair", "Big PC", *other], "Type the 6-digit PIN Big PC shows",
                                  stdin=subprocess.PIPE)
    assert status == 130 and err.rstrip().endswith("igrs: interrupted") and quiet(err), err
    assert took < 5, took  # the stdin reader does not hold the exit


# --- usage errors -----------------------------------------------------------------------------------
USAGE = [
    ["discover", "--interface", "no-such-if0"],
    ["discover", "--port", "70000"],
    ["device", "run", "--name", "X", "--type", ""],
    ["device", "run", "--name", "X", "--id", "not-an-id"],
    ["device", "run", "--name", "X", "--http-port", "99999"],
    ["device", "run", "--name", "X", "--media-folder", "/nonexistent"],
    ["call", "X", "Volume", "SetLevel", "level", "--interface", "lo"],
    ["conformance", "run", "X", "--case", "DISC-999"],
    ["conformance", "run", "X", "--off-subnet-source", "not-an-address"],
    ["demo", "--interface", "no-such-if0"],
    ["relay", "send", "--to", "someone", "hello"],
]


@pytest.mark.parametrize("argv", USAGE, ids=lambda a: " ".join(a[:3]))
def test_usage_errors_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    """In-process: each is refused before anything touches the network."""
    try:
        status = main(argv)
    except SystemExit as exc:  # argparse's own usage errors
        status = exc.code  # type: ignore[assignment]
    err = capsys.readouterr().err
    assert status == 2, err
    assert err.strip() and quiet(err), err


# --- noise ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("argv", [["conformance", "cases"], ["--help"], ["relay", "--help"]])
def test_a_closed_stdout_is_no_error(argv: list[str]) -> None:
    """``igrs ... | head -1``: the reader is gone before the command writes."""
    pipe = subprocess.PIPE
    proc = subprocess.Popen([*IGRS, *argv], stdout=pipe, stderr=pipe, text=True, env=env())
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()
    err = proc.stderr.read()
    assert proc.wait(timeout=30) == 0, err
    assert err == "", err


def test_a_missing_optional_package_is_one_line(free_udp_port: int) -> None:
    """Without zeroconf, ``--via mdns`` says what to install, and nothing else."""
    script = ("import sys; sys.modules['zeroconf'] = None\n"  # as if igrs[dnssd] were not installed
              "from igrs.cli.main import main; sys.exit(main())")
    cp = subprocess.run([sys.executable, "-c", script, "discover", "--via", "mdns", "--interface", "lo",
                         "--port", str(free_udp_port), "--timeout", "0.3"],
                        capture_output=True, text=True, timeout=30, env=env())
    assert cp.returncode == 1, cp.stderr
    assert cp.stderr == "igrs: DNS-SD needs the optional 'zeroconf' package: pip install 'igrs[dnssd]'\n"
