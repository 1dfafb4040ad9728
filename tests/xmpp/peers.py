"""Plain slixmpp clients for the server-side tests (the component, the strangers rule, failover).

``Peer`` logs in over STARTTLS to one of several addresses (in order: client fail-over),
records every inbound message and presence with its arrival time, and answers IQs in the
project's request namespace. The certificate is the fixture's self-signed one, so it is not
verified (loopback only).
"""

from __future__ import annotations

import asyncio
import ssl
import time
from typing import Any

import slixmpp
from slixmpp.exceptions import IqError, IqTimeout
from slixmpp.xmlstream import ET
from slixmpp.xmlstream.handler import Callback
from slixmpp.xmlstream.matcher import MatchXPath

from igrs.xmpp import namespaces as ns

PROBE_NS = ns.REQUEST


class Peer(slixmpp.ClientXMPP):
    def __init__(self, jid: str, password: str, addresses: list[tuple[str, int]], *, sm: bool = False,
                 register: bool = False) -> None:  # fmt: skip
        super().__init__(jid, password)
        self.iqs: list[tuple[float, str, str]] = []  # probes received: (time, from full, type)
        if register:  # XEP-0077 in-band, at the first login (no admin tool call per account)
            self.register_plugin("xep_0077")
            self.plugin["xep_0077"].force_registration = True
            self.add_event_handler("register", self._register)
        self.addresses = addresses
        self.ssl_context.check_hostname = False
        self.ssl_context.verify_mode = ssl.CERT_NONE
        self.register_plugin("xep_0199")
        if sm:
            self.register_plugin("xep_0198")
        self.messages: list[tuple[float, str, str]] = []  # (time, from bare, text)
        self.presence: list[tuple[float, str, str]] = []  # (time, from full, type)
        self.online = asyncio.Event()
        self.add_event_handler("session_start", self._start)
        self.add_event_handler("presence", self._presence)
        self.add_event_handler("disconnected", lambda _e: self.online.clear())
        any_message = MatchXPath(f"{{{self.default_ns}}}message")
        self.register_handler(Callback("any message", any_message, self._message))
        self.register_handler(Callback("probe", MatchXPath(f"{{{self.default_ns}}}iq/{{{PROBE_NS}}}query"),
                                       self._probe))  # fmt: skip
        self.address_used: tuple[str, int] | None = None
        self.error_text = ""  # the <text/> of the last IQ error ask() got

    async def _start(self, _event: Any) -> None:
        self.send_presence()
        await self.get_roster()
        self.online.set()

    def _presence(self, p: Any) -> None:
        self.presence.append((time.monotonic(), str(p["from"]), p["type"]))

    def _message(self, m: Any) -> None:
        if m["type"] == "error":
            return
        self.messages.append((time.monotonic(), m["from"].bare, m["body"]))

    async def _register(self, _form: Any) -> None:
        resp = self.Iq()
        resp["type"] = "set"
        resp["register"]["username"] = self.boundjid.user
        resp["register"]["password"] = self.password
        await resp.send()

    def _probe(self, iq: Any) -> None:
        self.iqs.append((time.monotonic(), str(iq["from"]), iq["type"]))
        if iq["type"] == "get":
            iq.reply().send()

    async def login(self, timeout: float = 10.0) -> None:
        """Try the addresses in order until a session starts (the client fail-over)."""
        last: Exception | None = None
        for addr in self.addresses:
            self.online.clear()
            self.connect(*addr)
            try:
                await asyncio.wait_for(self.online.wait(), timeout / len(self.addresses))
            except TimeoutError as e:
                last = e
                self.abort()
                continue
            self.address_used = addr
            return
        raise TimeoutError(f"{self.boundjid.bare}: no address answered") from last

    async def close(self) -> None:
        if self.online.is_set():
            await self.disconnect(wait=0.5)
        else:
            self.abort()

    async def ask(self, to: str, uri: str, kind: str = "get", timeout: float = 5, **fields: str
                  ) -> tuple[str, str | None]:  # fmt: skip
        """Send an IQ with ``<query xmlns=uri>`` children; ("result", None) or ("error", condition)."""
        iq = self.make_iq(ito=to, itype=kind)
        q = ET.Element(f"{{{uri}}}query")
        for k, v in fields.items():
            ET.SubElement(q, f"{{{uri}}}{k}").text = v
        iq.append(q)
        try:
            res = await iq.send(timeout=timeout)
        except IqError as e:
            self.error_text = e.iq["error"]["text"]
            return "error", e.iq["error"]["condition"]
        except IqTimeout:
            return "timeout", None
        return "result", ET.tostring(res.xml, encoding="unicode")

    async def send_and_wait_error(self, to: str, body: str, wait: float = 1.0) -> str | None:
        """Send a chat message; the error condition that comes back within ``wait``, else None."""
        fut: asyncio.Future[str] = asyncio.get_running_loop().create_future()

        def on_error(m: Any) -> None:
            if m["type"] == "error" and m["from"].bare == slixmpp.JID(to).bare and not fut.done():
                fut.set_result(m["error"]["condition"])

        handler = Callback(f"err {to} {body}", MatchXPath(f"{{{self.default_ns}}}message"), on_error)
        self.register_handler(handler)
        try:
            self.send_message(mto=to, mbody=body, mtype="chat")
            return await asyncio.wait_for(fut, wait)
        except TimeoutError:
            return None
        finally:
            self.remove_handler(handler.name)
