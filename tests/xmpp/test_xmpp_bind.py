"""Bind with a verification code over XMPP: XmppClient against the binding component
(igrs.xmpp.component, xmppb) beside a real ejabberd — set code, wrong code, bind, querybind,
messages between the bound parties, unbind."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from bindbed import SECRET, admin_for
from servers import LOOPBACK, Server
from xmpp_helpers import XWorld, until

from igrs.relay.errors import RelayError
from igrs.xmpp.component import BindComponent, BindService, BindStore

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
async def xw(ejabberd_server: Server) -> AsyncIterator[XWorld]:
    """The session's ejabberd (conftest) with the bind component connected beside it."""
    comp = BindComponent(ejabberd_server.component_domain, SECRET, LOOPBACK,
                         ejabberd_server.component_port,
                         BindService(BindStore(None), admin_for(ejabberd_server)))
    await comp.start()
    w = XWorld(ejabberd_server)
    try:
        yield w
    finally:
        await w.close()
        await comp.stop()


async def test_bind_with_code_then_unbind(xw: XWorld) -> None:
    alice, tv = await xw.client(), await xw.client(user=False)
    assert await tv.set_verify_code("735194") == {"status": "ok"}
    with pytest.raises(RelayError) as ei:
        await alice.bind(tv.principal, "000000")
    assert ei.value.code == 403
    assert (await alice.bind(tv.principal, "735194"))["status"] == "bound"
    # both rosters written, and alice has seen tv's presence (until then tv counts as offline: 410)
    await until(lambda: alice.related(tv.jid) and tv.related(alice.jid) and not alice.known_offline(tv.jid))
    assert (await alice.request("relations"))["relations"] == {"owned_by": [], "linked": [str(tv.principal)]}
    assert (await tv.request("relations"))["relations"] == {"owned_by": [str(alice.principal)], "linked": []}
    assert await alice.query_bind() == {"users": [], "devices": [str(tv.principal)]}
    assert await tv.query_bind() == {"users": [str(alice.principal)], "devices": []}
    with pytest.raises(RelayError) as ei:
        await alice.bind(tv.principal, "735194")
    assert ei.value.code == 409
    assert await alice.send(tv.principal, b"hello") == {"status": "delivered"}
    assert (await tv.receive(5)).body == b"hello"
    assert await alice.unbind(tv.principal) == {"status": "unbound"}
    await until(lambda: not alice.related(tv.jid) and not tv.related(alice.jid))
    with pytest.raises(RelayError) as ei:
        await alice.send(tv.principal, b"gone")
    assert ei.value.code == 403
