"""The bind component on a test server, for the component and strangers tests.

The servers are conftest's shared ones (component port open with ``SECRET``); ``BindBed``
connects the component (``igrs.xmpp.component``) with the roster writer of that server kind and
logs in ``Peer`` clients, each registered in-band under a name unique to the test.
"""

from __future__ import annotations

import secrets

from peers import Peer
from servers import LOOPBACK, Server

from igrs.xmpp.component import BindComponent, BindService, BindStore, EjabberdAdmin, ProsodyAdmin, RosterAdmin

SECRET = "igrs-test-component"  # the component secret of the test servers (conftest)


def admin_for(server: Server) -> RosterAdmin:
    if server.kind == "ejabberd":
        return EjabberdAdmin(url=f"http://{LOOPBACK}:{server.api_port}/api",  # type: ignore[union-attr]
                             component=server.component_domain)  # fmt: skip
    return ProsodyAdmin(domain=server.domain)


class BindBed:
    """``async with BindBed(server) as bed``: the component connected (unless ``component=False``:
    another process runs it); ``await bed.peers(...)``."""

    def __init__(self, server: Server, component: bool = True) -> None:
        self.server = server
        self.tag = secrets.token_hex(3)
        self.component = BindComponent(server.component_domain, SECRET, LOOPBACK, server.component_port,
                                       BindService(BindStore(None), admin_for(server)))  # fmt: skip
        self.connect = component
        self.opened: list[Peer] = []

    def jid(self, name: str) -> str:
        return f"{name}{self.tag}@{self.server.domain}"

    async def peers(self, *names: str) -> list[Peer]:
        out = []
        for name in names:
            p = Peer(self.jid(name) + "/t", "pw-" + name, [(LOOPBACK, self.server.c2s_port)], register=True)
            self.opened.append(p)
            await p.login()
            out.append(p)
        return out

    async def __aenter__(self) -> BindBed:
        if self.connect:
            await self.component.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        for p in self.opened:
            await p.close()
        if self.connect:
            await self.component.stop()
        self.component.service.close()
