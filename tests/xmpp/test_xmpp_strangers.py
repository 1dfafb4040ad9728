"""The strangers rule on Prosody and ejabberd: only related parties reach each other.

A device bound to its owner (through the bind component, both rosters written): the owner's and
the device's messages and IQs get through both ways; an unrelated user's message and IQ, to the
device's bare or full JID, get exactly the answer a non-existent account gets and never reach the
device; a friend request (presence subscription) still reaches a protected account. On Prosody
no client can pose as the component to write rosters.
"""

from __future__ import annotations

import asyncio

import pytest
from bindbed import BindBed
from servers import Server
from slixmpp.exceptions import IqError

from igrs.xmpp import namespaces as ns
from igrs.xmpp.component import ROSTER_ADMIN


async def test_only_related_parties_reach_each_other(xmpp_server: Server) -> None:
    async with BindBed(xmpp_server) as bed:
        comp = xmpp_server.component_domain
        owner, dev1, stranger = await bed.peers("owner", "dev", "stranger")
        dev, ghost = bed.jid("dev"), bed.jid("ghost")
        assert (await dev1.ask(comp, ns.MOBILE_VERIFY_CODE, "set", code="583920"))[0] == "result"
        assert (await owner.ask(comp, ns.DEVICE_BIND, "set", device=dev, code="583920"))[0] == "result"

        # Related parties: IQs and messages both ways.
        assert (await owner.ask(dev + "/t", ns.REQUEST))[0] == "result"
        assert (await dev1.ask(owner.boundjid.full, ns.REQUEST))[0] == "result"
        assert await owner.send_and_wait_error(dev, "owner-to-dev", wait=0.3) is None
        assert await dev1.send_and_wait_error(owner.boundjid.bare, "dev-to-owner", wait=0.3) is None

        # A stranger: the answer for the device is the answer for an account that does not exist.
        probes = len(dev1.iqs)
        for to, none in ((dev + "/t", ghost + "/t"), (dev, ghost)):
            assert await stranger.ask(to, ns.REQUEST) == await stranger.ask(none, ns.REQUEST) == (
                "error", "service-unavailable")  # fmt: skip
            assert await stranger.ask(to, ns.REQUEST, "set") == await stranger.ask(none, ns.REQUEST, "set")
            assert await stranger.send_and_wait_error(to, "from-stranger") == "service-unavailable"
            assert await stranger.send_and_wait_error(none, "from-stranger") == "service-unavailable"
        # A friend request is how a relation starts: it reaches a protected account.
        stranger.send_presence(pto=owner.boundjid.bare, ptype="subscribe")
        for _ in range(50):
            if any(t == "subscribe" for _, _, t in owner.presence):
                break
            await asyncio.sleep(0.02)
        assert any(t == "subscribe" and f.startswith(stranger.boundjid.bare) for _, f, t in owner.presence)
        await asyncio.sleep(0.2)
        bodies = [m[2] for m in dev1.messages]
        assert "owner-to-dev" in bodies and "from-stranger" not in bodies
        assert "dev-to-owner" in [m[2] for m in owner.messages]
        assert len(dev1.iqs) == probes, f"a stranger's IQ reached the device: {dev1.iqs[probes:]}"

        if xmpp_server.kind == "prosody":  # only the component may write rosters through the server
            iq = stranger.make_iq_set(ito=xmpp_server.domain)
            q = iq.xml.makeelement(f"{{{ROSTER_ADMIN}}}query", {})
            q.append(q.makeelement(f"{{{ROSTER_ADMIN}}}relate", {"a": stranger.boundjid.bare, "b": dev}))
            iq.xml.append(q)
            with pytest.raises(IqError) as refused:
                await iq.send(timeout=5)
            assert refused.value.iq["error"]["condition"] == "forbidden"
            assert await stranger.ask(dev + "/t", ns.REQUEST) == ("error", "service-unavailable")
