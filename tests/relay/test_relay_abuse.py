"""Registration and storage abuse, state-file modes and SIGTERM (issue 12, items 6-8), over
real TLS connections from several loopback addresses and against `igrs relay serve`."""

from __future__ import annotations

import asyncio
import logging
import os
import re
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from relay_helpers import Party, RawConn, World, answer, make_node, request_frame

from igrs.relay import Limits, Principal, RelayCode, RelayError
from igrs.relay.frames import FrameType

ROOT = Path(__file__).resolve().parents[2]


async def test_registration_rate_per_address_and_account_cap(tmp_path: Path) -> None:
    limits = Limits(registration_rate=0.001, registration_burst=3, max_accounts=5)
    async with make_node(tmp_path / "s", limits) as node:
        a = await RawConn.open(node, source="127.0.0.2")
        codes = [answer(await a.request("register_user", rid=i, name=f"u{i}"))[0]
                 for i in range(1, 5)]
        assert codes == [200, 200, 200, RelayCode.RATE_LIMITED]
        b = await RawConn.open(node, source="127.0.0.3")  # another address: its own budget
        assert answer(await b.request("register_device", rid=1, name="d",
                                      verify_code="d-code-1"))[0] == 200
        assert answer(await b.request("register_user", rid=2, name="u"))[0] == 200
        code, reason = answer(await b.request("register_user", rid=3, name="v"))
        assert (code, reason) == (RelayCode.STORAGE_FULL, "the relay has reached its account cap")
        a.close()
        b.close()


async def test_preauth_connections_per_address_are_capped(tmp_path: Path) -> None:
    async with make_node(tmp_path / "s", Limits(max_preauth_per_address=3)) as node:
        held = [await RawConn.open(node, source="127.0.0.2") for _ in range(3)]
        for c in held:  # each is known to the node once it has answered
            assert (await c.request("no_such_op")).type is FrameType.ERROR
        extra = await RawConn.open(node, source="127.0.0.2")
        code, reason = await extra.goaway()
        assert code == RelayCode.SERVER_FULL and "unauthenticated" in reason
        other = await RawConn.open(node, source="127.0.0.3")
        assert answer(await other.request("register_user", name="ok"))[0] == 200
        held[0].close()  # a slot comes free when one of them goes
        await asyncio.sleep(0.2)
        again = await RawConn.open(node, source="127.0.0.2")
        assert answer(await again.request("register_user", name="ok2"))[0] == 200
        for c in (*held, other, again):
            c.close()


def flood_frames(n: int, op: str, **args: object) -> bytes:
    return b"".join(request_frame(op, i + 1, **{k: (v.format(i) if isinstance(v, str) else v)
                                                for k, v in args.items()})
                    for i in range(n))


async def test_honest_client_is_answered_while_another_floods_registration_and_bind(
        world: World) -> None:
    """Four pre-auth connections pipeline key-stretching registrations and an account binds
    without pause; an authenticated client from another address keeps being answered."""
    me = await world.connect(await world.user("honest"))
    tv = await world.device("tv", code="tv-code-1")
    binder = await RawConn.open(world.node, source="127.0.0.3")
    code, result = answer(await binder.request("register_user", name="m"))
    assert code == 200 and isinstance(result, dict)
    await binder.auth(Party(Principal.parse(str(result["id"])), str(result["token"])))
    flood = [await RawConn.open(world.node, source="127.0.0.2") for _ in range(4)]
    # every connection is open before the flood starts: nothing below waits for the relay
    # but the honest requests
    for f in flood:
        f.send(flood_frames(3000, "register_device", name="d", verify_code="c-{}-x"))
    binder.send(flood_frames(3000, "bind", device=str(tv.principal), verify_code="g-{}-x"))
    latencies: list[float] = []
    t_end = time.monotonic() + 3.0
    while time.monotonic() < t_end:
        t0 = time.monotonic()
        try:
            await asyncio.wait_for(me.request("whoami"), t_end - t0)
        except TimeoutError:
            break
        latencies.append(time.monotonic() - t0)
        await asyncio.sleep(0.05)
    print(f"\nhonest requests during the flood: {len(latencies)} answered, max latency "
          f"{max(latencies, default=float('nan')) * 1e3:.1f} ms")
    assert len(latencies) >= 10
    for f in flood:
        f.close()
    binder.close()


async def test_node_wide_cap_on_stored_mail(tmp_path: Path) -> None:
    async with make_node(tmp_path / "s", Limits(max_stored_bytes=10_000)) as node:
        w = World(node)
        try:
            alice = await w.connect(await w.user())
            tv = await w.owned_device(alice)
            for _ in range(3):
                assert (await alice.send(tv.principal, b"x" * 3000, durable=True))["status"] == "stored"
            with pytest.raises(RelayError) as e:
                await alice.send(tv.principal, b"x" * 3000, durable=True)
            assert e.value.code == RelayCode.NODE_STORAGE_FULL
            t = await w.connect(tv)  # the device takes (and acknowledges) its mail
            for _ in range(3):
                assert (await t.receive(timeout=5)).stored
            await asyncio.sleep(0.3)
            assert (await alice.send(tv.principal, b"y" * 3000, durable=True))["status"] == "delivered"
        finally:
            await w.close()


def mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


async def test_state_dir_is_private_and_a_looser_mode_is_fixed(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    state = tmp_path / "state"
    async with make_node(state) as node:
        w = World(node)
        await w.user()  # something in the database and its WAL
        files = [state / n for n in ("relay.sqlite3", "relay.sqlite3-wal", "relay.sqlite3-shm",
                                     "relay-key.pem")]
        assert mode(state) == 0o700
        assert {f.name: mode(f) for f in files} == {f.name: 0o600 for f in files}
    os.chmod(state, 0o755)
    os.chmod(state / "relay.sqlite3", 0o644)
    caplog.set_level(logging.WARNING, logger="igrs.relay.server")
    async with make_node(state):
        assert mode(state) == 0o700 and mode(state / "relay.sqlite3") == 0o600
    assert "had mode 0755; changed to 0700" in caplog.text
    assert "relay.sqlite3 had mode 0644; changed to 0600" in caplog.text
    from igrs.relay.statedir import StateDirError

    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o1777)
    with pytest.raises(StateDirError):
        await make_node(shared).start()


async def test_serve_exits_soon_after_sigterm_with_connections_open(tmp_path: Path) -> None:
    """Idle clients, a client that reads nothing and four connections flooding key-stretching
    registrations are open when SIGTERM comes."""
    serve = subprocess.Popen(
        [sys.executable, "-m", "igrs", "relay", "serve", "--port", "0", "--state-dir",
         str(tmp_path / "state")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    conns: list[RawConn] = []
    try:
        assert serve.stdout is not None
        line = serve.stdout.readline()
        port = int(re.search(r"listening on [\d.]+:(\d+)", line).group(1))  # type: ignore[union-attr]
        for source in ("127.0.0.1", "127.0.0.4"):
            c = await RawConn.open(port, source=source)
            code, result = answer(await c.request("register_user", name="idle"))
            assert code == 200 and isinstance(result, dict)
            await c.auth(Party(Principal.parse(str(result["id"])), str(result["token"])))
            conns.append(c)
        conns.append(await RawConn.open(port, rcvbuf=4096, source="127.0.0.5"))  # never reads
        flood = [await RawConn.open(port, source="127.0.0.2") for _ in range(4)]
        conns += flood
        for f in flood:  # all open first: the flood starts on a relay that is still idle
            f.send(flood_frames(3000, "register_device", name="d", verify_code="c-{}-x"))
        await asyncio.sleep(1.0)
        t0 = time.monotonic()
        serve.send_signal(signal.SIGTERM)
        try:
            rc = await asyncio.to_thread(serve.wait, 15)
        except subprocess.TimeoutExpired:
            rc = None
        took = time.monotonic() - t0
        print(f"\nigrs relay serve exited {took:.2f} s after SIGTERM (rc {rc})")
        assert rc == 0 and took < 5
        for c in conns[:2]:  # the idle clients were told why
            assert (await c.until(FrameType.GOAWAY)) is not None
    finally:
        for c in conns:
            c.close()
        if serve.poll() is None:
            serve.kill()
            serve.wait()
