"""Helpers for the XMPP tests: parties registered in-band on a throw-away server."""

from __future__ import annotations

import asyncio
import contextlib
import secrets

from servers import LOOPBACK, Server

from igrs.relay.ids import Principal
from igrs.xmpp.client import XmppClient


class XWorld:
    """Opens XmppClients on ``server`` (registering their accounts) and closes them at the end."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.clients: list[XmppClient] = []
        self.passwords: dict[Principal, str] = {}

    async def client(self, principal: Principal | None = None, *, user: bool = True,
                     **kw: object) -> XmppClient:
        p = principal or (Principal.user() if user else Principal.device())
        pw = self.passwords.setdefault(p, secrets.token_hex(8))
        c = XmppClient(p, pw, domain=self.server.domain, servers=[(LOOPBACK, self.server.c2s_port)],
                       cafile=self.server.cert, register=True, **kw)  # type: ignore[arg-type]
        await c.connect()
        self.clients.append(c)
        return c

    async def befriend(self, a: XmppClient, b: XmppClient) -> None:
        await a.add_friend(b.principal)
        ev = await asyncio.wait_for(b.notifications.get(), 5)
        assert ev["event"] == "friend_request"
        await b.respond(a.principal, True)
        for c, other in ((a, b), (b, a)):
            for _ in range(100):
                if c.xmpp.client_roster[other.jid]["subscription"] == "both":
                    break
                await asyncio.sleep(0.02)
            assert c.xmpp.client_roster[other.jid]["subscription"] == "both"

    async def close(self) -> None:
        for c in self.clients:
            with contextlib.suppress(Exception):
                await c.close()


async def until(cond: object, timeout: float = 10.0) -> None:
    """Wait until ``cond()`` is true (polled every 20 ms), else fail."""
    for _ in range(int(timeout / 0.02)):
        if cond():  # type: ignore[operator]
            return
        await asyncio.sleep(0.02)
    raise AssertionError("condition not met in time")
