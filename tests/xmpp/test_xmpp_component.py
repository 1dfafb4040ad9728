"""The bind component and the strangers rule on ejabberd (real server, real component, real clients).

A device sets its verification code; a user binds it: a wrong code and an unknown device get the
same answer, attempts lock out, the right code writes both rosters; an unrelated user's message
and IQ get exactly the error a non-existent account gets, while the bound user's get through.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator

import pytest
from cluster import EjabberdCluster
from peers import Peer

from igrs.xmpp import namespaces as ns
from igrs.xmpp.component import BindComponent, BindService, BindStore, EjabberdAdmin

COMPONENT = "igrs.localhost"


@pytest.fixture(scope="module")
def ejabberd() -> EjabberdCluster:
    with EjabberdCluster(1) as c:
        for u in ("user1", "user2", "dev1", "stranger"):
            c.nodes[0].register(u, "pw-" + u)
        yield c


@pytest.fixture
async def component(ejabberd: EjabberdCluster) -> AsyncIterator[BindComponent]:
    n = ejabberd.nodes[0]
    admin = EjabberdAdmin(argv=[n.ctl, "-c", str(n.ctl_config), "-n", n.node], component=COMPONENT,
                          env={**os.environ, "ERL_EPMD_PORT": str(n.epmd.port)})  # fmt: skip
    comp = BindComponent(COMPONENT, ejabberd.component_secret, "127.0.0.1", n.component_port,
                         BindService(BindStore(None), admin))  # fmt: skip
    await comp.start()
    yield comp
    await comp.stop()


async def _peers(ejabberd: EjabberdCluster, *names: str) -> list[Peer]:
    addr = [("127.0.0.1", ejabberd.nodes[0].c2s_port)]
    peers = [Peer(f"{u}@localhost/t", "pw-" + u, addr) for u in names]
    for p in peers:
        await p.login()
    return peers


async def test_bind_codes_lockout_rosters_and_strangers(
    ejabberd: EjabberdCluster, component: BindComponent
) -> None:
    user1, user2, dev1, stranger = await _peers(ejabberd, "user1", "user2", "dev1", "stranger")
    try:
        assert (await dev1.ask(COMPONENT, ns.MOBILE_VERIFY_CODE, "set", code="12"))[1] == "bad-request"
        assert (await dev1.ask(COMPONENT, ns.MOBILE_VERIFY_CODE, "set", code="735194"))[0] == "result"
        wrong = await user1.ask(COMPONENT, ns.DEVICE_BIND, "set", device="dev1@localhost", code="000000")
        unknown = await user1.ask(COMPONENT, ns.DEVICE_BIND, "set", device="ghost@localhost", code="735194")
        assert wrong == unknown == ("error", "not-authorized")
        # user2: 5 failures lock binding of dev1, even with the right code (per-device guard).
        for _ in range(4):
            assert (await user2.ask(COMPONENT, ns.DEVICE_BIND, "set", device="dev1@localhost",
                                    code="111111"))[1] == "not-authorized"  # fmt: skip
        locked = await user1.ask(COMPONENT, ns.DEVICE_BIND, "set", device="dev1@localhost", code="735194")
        assert locked == ("error", "resource-constraint")
        svc = component.service
        svc.by_device.get("dev1@localhost").record_success()  # the lock-out's time passes
        svc.by_account.get("user1@localhost").record_success()
        assert (await user1.ask(COMPONENT, ns.DEVICE_BIND, "set", device="dev1@localhost",
                                code="735194"))[0] == "result"  # fmt: skip
        again = await user1.ask(COMPONENT, ns.DEVICE_BIND, "set", device="dev1@localhost", code="735194")
        assert again == ("error", "conflict")
        assert "user1@localhost" in (await dev1.ask(COMPONENT, ns.QUERY_BIND, "get"))[1]
        assert "dev1@localhost" in (await user1.ask(COMPONENT, ns.QUERY_BIND, "get"))[1]
        await user1.get_roster()
        await dev1.get_roster()
        assert user1.client_roster["dev1@localhost"]["subscription"] == "both"
        assert dev1.client_roster["user1@localhost"]["subscription"] == "both"

        # Related: IQ and message reach the device.
        assert (await user1.ask("dev1@localhost/t", ns.REQUEST))[0] == "result"
        assert await user1.send_and_wait_error("dev1@localhost", "from-owner", wait=0.5) is None
        # Unrelated: the same refusal as for an account that does not exist, messages and IQs.
        for to in ("dev1@localhost/t", "dev1@localhost"):
            ghost = to.replace("dev1", "ghost")
            assert await stranger.ask(to, ns.REQUEST) == await stranger.ask(ghost, ns.REQUEST) == (
                "error", "service-unavailable")  # fmt: skip
        assert await stranger.send_and_wait_error("dev1@localhost", "from-stranger") == "service-unavailable"
        assert await stranger.send_and_wait_error("ghost@localhost", "from-stranger") == "service-unavailable"
        bodies = [m[2] for m in dev1.messages]
        assert "from-owner" in bodies and "from-stranger" not in bodies

        # Unbind: both roster items go, and the user becomes a stranger to the device.
        assert (await user1.ask(COMPONENT, ns.UNBIND, "set", device="dev1@localhost"))[0] == "result"
        gone = await user1.ask(COMPONENT, ns.UNBIND, "set", device="dev1@localhost")
        assert gone == ("error", "item-not-found")
        # Not answered any more. Seen: a timeout, not service-unavailable (open, specs/relay-xmpp-server.md).
        assert (await user1.ask("dev1@localhost/t", ns.REQUEST))[0] != "result"
    finally:
        for p in (user1, user2, dev1, stranger):
            await p.close()
