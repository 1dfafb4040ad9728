"""Liveness: a client corrects contacts' presence the server got wrong (specs/relay-xmpp.md).

A server reports a contact offline when its stream closes. It does not when (a) the cluster
node holding the contact's session crashed: the other nodes never retract that presence
(shared/reference/xmpp-binding.md §4, "Stale presence"); (b) the contact hangs or its network
goes half-open while the server has no pings of its own (Prosody 0.12 core) or holds the
session for XEP-0198 hibernation. So each client probes, every ``interval`` seconds, the full
JID of every contact it believes online with an XEP-0199 ping; an error answer or no answer
within ``timeout`` means that resource is gone, and the client applies a synthetic
``unavailable`` presence for it (roster and presence events, as if the server had sent it).
A resource that timed out (the server still holds it: hung, or an XEP-0198 session) is probed
again and restored when it answers; one the server reports absent is forgotten (its next login
brings a real presence). Worst-case detection: ``interval + timeout``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

log = logging.getLogger(__name__)

PROBE_INTERVAL = 30.0  # s, as the relay's ping_interval (specs/relay.md): project choice
PROBE_TIMEOUT = 10.0  # s; interval + timeout = 40 s worst case, inside the relay's 90 s bound


class Liveness:
    """Attached to one slixmpp ClientXMPP (``Liveness(xmpp)``); runs while a session is up."""

    def __init__(self, xmpp: Any, interval: float = PROBE_INTERVAL, timeout: float = PROBE_TIMEOUT) -> None:
        self.xmpp = xmpp
        self.interval = interval
        self.timeout = timeout
        self.corrected = 0  # resources this client declared gone (for tests and logs)
        self.restored = 0  # ... and found answering again
        self._down: dict[str, None] = {}  # full JIDs declared gone that the server still holds
        self._task: asyncio.Task[None] | None = None
        xmpp.add_event_handler("session_start", self._start)
        xmpp.add_event_handler("session_resumed", self._start)
        xmpp.add_event_handler("disconnected", self._stop)
        xmpp.add_event_handler("presence_available", self._back)

    def configure(self, interval: float, timeout: float) -> None:
        """New probe period and timeout; a running probe loop restarts with them."""
        self.interval, self.timeout = interval, timeout
        if self._task is not None and not self._task.done():
            self._task.cancel()
            self._task = asyncio.ensure_future(self._run())

    def _start(self, _event: Any) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.ensure_future(self._run())

    def _stop(self, _event: Any) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None

    def _back(self, pres: Any) -> None:
        self._down.pop(str(pres["from"]), None)

    def targets(self) -> list[str]:
        """Full JIDs to probe: every resource of every contact believed online, and those declared gone."""
        me = self.xmpp.boundjid.bare
        roster = self.xmpp.client_roster
        out = [f"{bare}/{res}" for bare in roster if bare != me for res in roster[bare].resources]
        return out + sorted(set(self._down) - set(out))

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            await asyncio.gather(*(self.probe(j) for j in self.targets()))

    async def probe(self, full: str) -> bool:
        """Ping ``full``; apply its departure (or return) to the roster; True if it answered."""
        from slixmpp.exceptions import IqError, IqTimeout

        try:
            await self.xmpp.plugin["xep_0199"].send_ping(full, timeout=self.timeout)
        except (IqError, IqTimeout) as e:
            if full not in self._down:
                self.corrected += 1
                log.info("liveness: %s did not answer a ping (%s): offline", full, type(e).__name__)
                self._apply(full, "unavailable")
            if isinstance(e, IqError):
                self._down.pop(full, None)  # the server has no such session: its next login brings presence
            else:
                self._down[full] = None  # held by the server (hung, hibernated): probe again
            return False
        except Exception:  # the stream went away under the probe: the next session probes again
            return False
        if full in self._down:
            del self._down[full]
            self.restored += 1
            self._apply(full, "available")
        return True

    def _apply(self, full: str, kind: str) -> None:
        """Hand a synthetic presence to slixmpp's presence handlers (not through the stream:
        XEP-0198 counts only stanzas the server sent)."""
        pres = self.xmpp.Presence()
        pres["from"], pres["to"] = full, self.xmpp.boundjid
        if kind == "unavailable":
            pres["type"] = "unavailable"
        with contextlib.suppress(Exception):
            self.xmpp.event(f"presence_{kind}", pres)
