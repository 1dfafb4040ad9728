"""The bind component on Prosody and ejabberd (real server, real component, real clients).

A device sets its verification code (the relay's minimum strength); a user binds it under the
relay's bind rule (the same BindGuard, texts and lock-out): a wrong code and an unknown device get
the same answer, attempts lock out per device and per account, the right code writes both
rosters and the two reach each other; after unbind the former owner is a stranger again: its IQ
and message do not reach the device.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import time
from pathlib import Path

import pytest
from bindbed import SECRET, BindBed
from servers import LOOPBACK, Server

from igrs.relay import codes
from igrs.relay.directory import BIND_REFUSED
from igrs.relay.errors import RelayError
from igrs.xmpp import namespaces as ns

# What a former owner hears from the device (and from a non-existent account) after unbind.
FORMER_OWNER = {"prosody": ("error", "service-unavailable"), "ejabberd": ("timeout", None)}


async def test_bind_lockout_rosters_unbind(xmpp_server: Server) -> None:
    async with BindBed(xmpp_server) as bed:
        comp = xmpp_server.component_domain
        user1, user2, dev1 = await bed.peers("user", "other", "dev")
        dev, ghost = bed.jid("dev"), bed.jid("ghost")
        # The relay's minimum code strength, with the relay's words.
        for weak in ("12", "123456", "121212"):
            assert await dev1.ask(comp, ns.MOBILE_VERIFY_CODE, "set", code=weak) == ("error", "bad-request")
            with pytest.raises(RelayError) as ei:
                codes.check_strength(weak)
            assert dev1.error_text == ei.value.reason
        assert (await dev1.ask(comp, ns.MOBILE_VERIFY_CODE, "set", code="735194"))[0] == "result"
        # One answer, in the relay's words, for a wrong code and an unknown device.
        wrong = await user1.ask(comp, ns.DEVICE_BIND, "set", device=dev, code="000000")
        wrong_text = user1.error_text
        unknown = await user1.ask(comp, ns.DEVICE_BIND, "set", device=ghost, code="735194")
        assert wrong == unknown == ("error", "not-authorized")
        assert wrong_text == user1.error_text == BIND_REFUSED
        # The relay's bind guard: 5 failures on the device (however its JID is spelled) lock its
        # binding for 30 s, even for another account with the right code; 5 failures of an
        # account lock that account's binds of any device.
        for device in (dev, dev, dev, dev.upper() + "/x"):
            assert await user2.ask(comp, ns.DEVICE_BIND, "set", device=device, code="111111") == (
                "error", "not-authorized")
        locked = await user1.ask(comp, ns.DEVICE_BIND, "set", device=dev, code="735194")
        assert locked == ("error", "resource-constraint")
        assert user1.error_text == "bind locked for 30 s after failed attempts"
        for answer in ("not-authorized", "resource-constraint"):  # user2's 5th failure, then locked
            assert (await user2.ask(comp, ns.DEVICE_BIND, "set", device=ghost, code="111111"))[1] == answer
        svc = bed.component.service
        assert svc.guard.evaluated == 7  # refused attempts cost no key stretching
        svc.clock = lambda: time.monotonic() + 31  # the lock-out's time passes
        assert (await user1.ask(comp, ns.DEVICE_BIND, "set", device=dev, code="735194"))[0] == "result"
        assert await user1.ask(comp, ns.DEVICE_BIND, "set", device=dev, code="735194") == ("error", "conflict")
        assert user1.boundjid.bare in (await dev1.ask(comp, ns.QUERY_BIND, "get"))[1]
        assert dev in (await user1.ask(comp, ns.QUERY_BIND, "get"))[1]
        for a, b in ((user1, dev), (dev1, user1.boundjid.bare)):
            await a.get_roster()
            assert a.client_roster[b]["subscription"] == "both"
        # Related: the IQ and the message reach the device.
        assert (await user1.ask(dev + "/t", ns.REQUEST))[0] == "result"
        assert await user1.send_and_wait_error(dev, "from-owner", wait=0.5) is None

        # Unbind: both roster items go, and the former owner is a stranger to the device.
        assert (await user1.ask(comp, ns.UNBIND, "set", device=dev))[0] == "result"
        assert await user1.ask(comp, ns.UNBIND, "set", device=dev) == ("error", "item-not-found")
        # Not a leak: the device receives nothing, and the former owner gets the same answer as for
        # an account that does not exist. On ejabberd that answer is none at all: the server's
        # service-unavailable bounce comes from the device's JID, which the owner's own privacy
        # list (it spoke to the component, so it is provisioned) now refuses like any stranger.
        seen = len(dev1.iqs)
        after = await user1.ask(dev + "/t", ns.REQUEST, timeout=0.5)
        assert after == await user1.ask(ghost + "/t", ns.REQUEST, timeout=0.5) == FORMER_OWNER[xmpp_server.kind]
        said = await user1.send_and_wait_error(dev, "after-unbind", wait=0.5)
        assert said == await user1.send_and_wait_error(ghost, "after-unbind", wait=0.5)
        await asyncio.sleep(0.2)
        assert len(dev1.iqs) == seen, f"the device received the former owner's IQ: {dev1.iqs[seen:]}"
        assert "after-unbind" not in [m[2] for m in dev1.messages]


async def test_component_command_binds_and_stops_on_sigterm(xmpp_server: Server, tmp_path: Path) -> None:
    """``igrs relay xmpp-component`` started as an operator would: a bind through it writes both
    rosters and its state file; SIGTERM ends it cleanly (exit 0) within a few seconds."""
    state = tmp_path / "bind.json"
    args = ["--jid", xmpp_server.component_domain, "--secret", SECRET, "--host", LOOPBACK,
            "--port", str(xmpp_server.component_port), "--server", xmpp_server.kind, "--state", str(state)]
    if xmpp_server.kind == "ejabberd":
        args += ["--ejabberd-api", f"http://{LOOPBACK}:{xmpp_server.api_port}/api"]  # type: ignore[union-attr]
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "igrs", "relay", "xmpp-component", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    assert proc.stdout is not None and proc.stderr is not None
    try:
        line = await asyncio.wait_for(proc.stdout.readline(), 30)
        assert line.decode().startswith(f"xmpp component {xmpp_server.component_domain} connected"), (
            line, await asyncio.wait_for(proc.stderr.read(), 15))
        async with BindBed(xmpp_server, component=False) as bed:
            comp, dev = xmpp_server.component_domain, bed.jid("dev")
            user, dev1 = await bed.peers("user", "dev")
            assert (await dev1.ask(comp, ns.MOBILE_VERIFY_CODE, "set", code="246810"))[0] == "result"
            assert (await user.ask(comp, ns.DEVICE_BIND, "set", device=dev, code="246810"))[0] == "result"
            await user.get_roster()
            assert user.client_roster[dev]["subscription"] == "both"
        assert json.loads(state.read_text())["owners"] == {dev: [user.boundjid.bare]}
        assert state.stat().st_mode & 0o777 == 0o600
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        rc = await asyncio.wait_for(proc.wait(), 15)
        took = time.monotonic() - t0
        print(f"\nigrs relay xmpp-component ({xmpp_server.kind}) exited {took:.2f} s after SIGTERM (rc {rc})")
        assert rc == 0 and took < 5, (await proc.stderr.read()).decode()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
