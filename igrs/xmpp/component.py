"""The device-bind component: an XEP-0114 external component for Prosody and ejabberd.

An XMPP server knows rosters but not IGRS binding, so a small component (``igrs.<domain>``)
does what the relay's account server does (specs/relay-xmpp-server.md):

* a device sets its verification code (``#verifycode``): the relay's minimum strength, kept
  as the relay's PBKDF2-SHA256 (``igrs.relay.codes``), stretched in a thread, never on the loop;
* a user binds a device with the code (``#devicebind``) under the relay's bind rule
  (``BindGuard.check``: per device, per account; 5 failures lock for 30 s, doubling, at most
  1 h; an unknown device and a wrong code get the one answer); on success the component writes
  **both rosters** (subscription ``both``) through the server's admin interface (``RosterAdmin``);
* ``#unbind`` removes both roster items; ``#querybind`` lists a device's users or a user's
  devices;
* every account that speaks to it is provisioned with the strangers rule (``RosterAdmin.
  provision``) before it is answered.

The sender's JID is authenticated by the server, so the component trusts ``from``.
slixmpp is imported on first use (the ``xmpp`` extra).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, cast
from xml.etree import ElementTree as ET

from igrs.relay import codes
from igrs.relay.errors import RelayCode, RelayError
from igrs.relay.guard import BindAttempt, BindGuard
from igrs.relay.limits import Limits
from igrs.xmpp import namespaces as ns

if TYPE_CHECKING:
    from slixmpp import Iq
    from slixmpp.xmlstream import StanzaBase

ADDRESS_OF_ACCOUNT = "xmpp-account:"  # the bind guard's address key of an account (no address seen)
# The relay's error codes as IQ errors (RFC 6120 condition, type); the text is the relay's reason.
CONDITIONS: dict[int, tuple[str, str]] = {
    RelayCode.BAD_FRAME: ("bad-request", "modify"),
    RelayCode.FORBIDDEN: ("not-authorized", "auth"),
    RelayCode.NOT_FOUND: ("item-not-found", "cancel"),
    RelayCode.CONFLICT: ("conflict", "cancel"),
    RelayCode.RATE_LIMITED: ("resource-constraint", "wait"),
}
PRIVACY_LIST = "igrs-related-only"
# Project namespace of the component -> Prosody roster writes (igrs/xmpp/deploy/mod_igrs_roster_admin.lua).
ROSTER_ADMIN = "urn:igrs:xmpp:roster-admin:0"


class RosterAdmin(Protocol):
    """The server's admin interface the component writes through (one per server kind)."""

    def attach(self, xmpp: Any) -> None: ...
    async def relate(self, a: str, b: str) -> None: ...
    async def unrelate(self, a: str, b: str) -> None: ...
    async def provision(self, jid: str) -> None: ...


def _split(jid: str) -> tuple[str, str]:
    user, _, host = jid.partition("@")
    return user, host.partition("/")[0]


def privacy_query(component: str, list_name: str = PRIVACY_LIST) -> str:
    """XEP-0016 list: only roster contacts with a subscription (both/to/from) reach the account.

    Messages, IQs and inbound presence from anyone else are refused by the server itself, with
    the same ``service-unavailable`` it gives for a JID that does not exist. The component's
    domain is allowed (its answers are IQs); ejabberd lets its own server's stanzas (pings)
    through any list (mod_privacy ``do_check_packet``).
    """
    return (
        f"<query xmlns='jabber:iq:privacy'><list name='{list_name}'>"
        f"<item type='jid' value='{component}' action='allow' order='0'/>"
        "<item type='subscription' value='both' action='allow' order='1'/>"
        "<item type='subscription' value='from' action='allow' order='2'/>"
        "<item type='subscription' value='to' action='allow' order='3'/>"
        "<item action='deny' order='9'><message/><iq/><presence-in/></item>"
        "</list></query>"
    )


@dataclass
class EjabberdAdmin:
    """ejabberd through its HTTP API (mod_http_api on loopback, the shipped config's ``/api``
    listener): add/delete_rosteritem, privacy_set (mod_admin_extra).

    One HTTP request per command (milliseconds; ``ejabberdctl`` starts an Erlang VM per call,
    about 0.3 s); the two sides of a relation are written concurrently.
    """

    url: str  # e.g. http://127.0.0.1:5281/api
    component: str  # the component's domain, allowed through every account's list
    provisioned: set[str] = field(default_factory=set)

    def attach(self, xmpp: Any) -> None:
        """Nothing to attach: ejabberd is written over HTTP."""

    async def _call(self, command: str, **args: str) -> None:
        body = json.dumps(args).encode()

        def post() -> None:
            req = urllib.request.Request(f"{self.url}/{command}", data=body,
                                         headers={"Content-Type": "application/json"})  # fmt: skip
            try:
                with urllib.request.urlopen(req, timeout=10) as r:
                    answer = r.read().decode(errors="replace").strip()
            except urllib.error.HTTPError as e:
                raise RuntimeError(f"ejabberd {command} -> {e.code}: {e.read()[:200]!r}") from e
            if answer not in ("0", ""):  # ejabberd commands of type rescode answer 0 on success
                raise RuntimeError(f"ejabberd {command} -> {answer[:200]}")

        await asyncio.to_thread(post)

    async def _item(self, a: str, b: str) -> None:
        (au, ah), (bu, bh) = _split(a), _split(b)
        await self._call("add_rosteritem", localuser=au, localhost=ah, user=bu, host=bh, nick=bu,
                         group="IGRS", subs="both")  # fmt: skip

    async def relate(self, a: str, b: str) -> None:
        await asyncio.gather(self._item(a, b), self._item(b, a))

    async def unrelate(self, a: str, b: str) -> None:
        (au, ah), (bu, bh) = _split(a), _split(b)
        await asyncio.gather(
            self._call("delete_rosteritem", localuser=au, localhost=ah, user=bu, host=bh),
            self._call("delete_rosteritem", localuser=bu, localhost=bh, user=au, host=ah),
        )

    async def provision(self, jid: str) -> None:
        if jid in self.provisioned:
            return
        user, host = _split(jid)
        await self._call("privacy_set", user=user, host=host, xmlquery=privacy_query(self.component))
        default = f"<query xmlns='jabber:iq:privacy'><default name='{PRIVACY_LIST}'/></query>"
        await self._call("privacy_set", user=user, host=host, xmlquery=default)
        self.provisioned.add(jid)


@dataclass
class ProsodyAdmin:
    """Prosody through the shipped module mod_igrs_roster_admin: one IQ from the component to
    the server per change. The strangers rule is server-wide there (mod_igrs_strangers), so
    ``provision`` has nothing to do."""

    domain: str  # the XMPP server's domain (the IQ's ``to``)
    xmpp: Any = None

    def attach(self, xmpp: Any) -> None:
        self.xmpp = xmpp

    async def _send(self, op: str, a: str, b: str) -> None:
        from slixmpp.exceptions import IqError

        iq = self.xmpp.make_iq_set(ito=self.domain, ifrom=self.xmpp.boundjid)
        query = ET.Element(f"{{{ROSTER_ADMIN}}}query")
        ET.SubElement(query, f"{{{ROSTER_ADMIN}}}{op}", a=a, b=b)
        iq.append(query)
        try:
            await iq.send(timeout=10)
        except IqError as e:
            raise RuntimeError(f"prosody {op} -> {e.iq['error']['condition']}") from e

    async def relate(self, a: str, b: str) -> None:
        await self._send("relate", a, b)

    async def unrelate(self, a: str, b: str) -> None:
        await self._send("unrelate", a, b)

    async def provision(self, jid: str) -> None:
        """Nothing: mod_igrs_strangers applies to every account."""


@dataclass
class BindStore:
    """Verification-code hashes and owners, one JSON file (written atomically)."""

    path: Path | None
    codes: dict[str, str] = field(default_factory=dict)  # device bare JID -> "salt$digest"
    owners: dict[str, list[str]] = field(default_factory=dict)  # device -> users

    @classmethod
    def load(cls, path: Path | None) -> BindStore:
        if path is None or not path.exists():
            return cls(path)
        data = json.loads(path.read_text())
        return cls(path, dict(data.get("codes", {})), {k: list(v) for k, v in data.get("owners", {}).items()})

    def save(self) -> None:
        if self.path is None:
            return
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"codes": self.codes, "owners": self.owners}))
        os.chmod(tmp, 0o600)
        tmp.replace(self.path)

    def devices_of(self, user: str) -> list[str]:
        return sorted(d for d, users in self.owners.items() if user in users)


class BindService:
    """The component's rules, free of XMPP framing (tested through the component).

    The bind rule is the relay's, by the same code: ``igrs.relay.codes`` for the code's strength
    and its PBKDF2 (in a pool of ``KDF_THREADS``, never on the loop), ``igrs.relay.guard.BindGuard``
    with the relay's limits for the attempts. Errors are the relay's ``RelayError`` (mapped to IQ
    errors by :data:`CONDITIONS`)."""

    def __init__(self, store: BindStore, admin: RosterAdmin, limits: Limits | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:  # fmt: skip
        lim = limits or Limits()
        self.store = store
        self.admin = admin
        self.guard = BindGuard(lim.bind_max_failures, lim.bind_lockout, lim.bind_max_lockout)
        self.clock = clock
        self.kdf = ThreadPoolExecutor(codes.KDF_THREADS, thread_name_prefix="igrs-xmpp-kdf")

    async def _run(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self.kdf, fn, *args)

    async def set_code(self, device: str, code: str) -> None:
        codes.check_strength(code)
        self.store.codes[device] = await self._run(codes.seal, code)
        self.store.save()

    async def bind(self, user: str, device: str, code: str) -> None:
        device = bare_jid(device)
        # The source-address dimension: an XEP-0114 component never sees the client's address,
        # so it is keyed by the account (specs/relay-xmpp-server.md, "Bind guard").
        attempt = BindAttempt(device, user, ADDRESS_OF_ACCOUNT + user)
        await self.guard.check(attempt, lambda: self._run(codes.matches, self.store.codes.get(device), code),
                               lambda: self.clock())  # fmt: skip
        if user in self.store.owners.get(device, []):
            raise RelayError(RelayCode.CONFLICT, "device already bound to this user")
        await self.admin.relate(user, device)
        self.store.owners.setdefault(device, []).append(user)
        self.store.save()

    async def unbind(self, user: str, device: str) -> None:
        device = bare_jid(device)
        if user not in self.store.owners.get(device, []):
            raise RelayError(RelayCode.NOT_FOUND, "device is not bound to this user")
        await self.admin.unrelate(user, device)
        self.store.owners[device].remove(user)
        if not self.store.owners[device]:
            del self.store.owners[device]
        self.store.save()

    def query(self, jid: str) -> tuple[str, list[str]]:
        """A device gets its users; anyone else gets their devices."""
        if jid in self.store.codes:
            return "user", sorted(self.store.owners.get(jid, []))
        return "device", self.store.devices_of(jid)

    def close(self) -> None:
        self.kdf.shutdown(wait=False, cancel_futures=True)


def bare_jid(text: str) -> str:
    """The normalised bare JID (``Dev@Host/x`` -> ``dev@host``); a malformed one is kept as
    given: it names no device, so it gets the one bind answer."""
    from slixmpp import JID
    from slixmpp.jid import InvalidJID

    try:
        return str(JID(text).bare)
    except InvalidJID:
        return text


def _text(query: ET.Element, ns_uri: str, name: str) -> str:
    el = query.find(f"{{{ns_uri}}}{name}")
    return (el.text or "").strip() if el is not None else ""


class BindComponent:
    """The XEP-0114 connection: routes the vendor IQ namespaces to ``BindService``."""

    HANDLED = (ns.MOBILE_VERIFY_CODE, ns.DEVICE_BIND, ns.UNBIND, ns.QUERY_BIND)

    def __init__(self, jid: str, secret: str, host: str, port: int, service: BindService) -> None:
        from slixmpp.componentxmpp import ComponentXMPP
        from slixmpp.xmlstream.handler import CoroutineCallback
        from slixmpp.xmlstream.matcher import MatchXPath

        self.service = service
        self.host, self.port = host, port
        self.xmpp = ComponentXMPP(jid, secret, host, port)
        service.admin.attach(self.xmpp)
        for uri in self.HANDLED:
            self.xmpp.register_handler(CoroutineCallback(
                uri, MatchXPath(f"{{{self.xmpp.default_ns}}}iq/{{{uri}}}query"), self._on_iq
            ))  # fmt: skip
        self.ready = asyncio.Event()
        self.xmpp.add_event_handler("session_start", lambda _e: self.ready.set())

    async def start(self, timeout: float = 10.0) -> None:
        self.xmpp.connect(self.host, self.port)
        await asyncio.wait_for(self.ready.wait(), timeout)

    async def stop(self) -> None:
        with contextlib.suppress(Exception):
            await self.xmpp.disconnect(wait=1.0)

    async def _on_iq(self, stanza: StanzaBase) -> None:
        iq = cast("Iq", stanza)
        query = next(iter(iq.xml), None)
        if query is None:
            return
        uri = query.tag[1:].partition("}")[0]
        sender = iq["from"].bare
        reply = iq.reply(clear=True)
        try:
            await self.service.admin.provision(sender)
            result = await self._handle(uri, iq["type"], sender, query)
            if result is not None:
                reply.xml.append(result)
        except RelayError as e:
            reply = self._error(iq, *CONDITIONS.get(e.code, ("internal-server-error", "wait")), e.reason)
        except Exception as e:  # an admin-interface failure: the caller learns, the component lives
            reply = self._error(iq, "internal-server-error", "wait", str(e)[:200])
        reply.send()

    async def _handle(self, uri: str, kind: str, sender: str, query: ET.Element) -> ET.Element | None:
        svc = self.service
        if uri == ns.MOBILE_VERIFY_CODE and kind == "set":
            await svc.set_code(sender, _text(query, uri, "code"))
            return None
        if uri == ns.DEVICE_BIND and kind == "set":
            await svc.bind(sender, _text(query, uri, "device"), _text(query, uri, "code"))
            return None
        if uri == ns.UNBIND and kind == "set":
            await svc.unbind(sender, _text(query, uri, "device"))
            return None
        if uri == ns.QUERY_BIND and kind == "get":
            tag, jids = svc.query(sender)
            out = ET.Element(f"{{{uri}}}query")
            for j in jids:
                ET.SubElement(out, f"{{{uri}}}{tag}").text = j
            return out
        raise RelayError(RelayCode.BAD_FRAME, f"{kind} not defined for {uri}")

    @staticmethod
    def _error(iq: Iq, condition: str, etype: str, text: str) -> Any:
        reply = iq.reply(clear=True)
        reply["type"] = "error"
        reply["error"]["condition"] = condition
        reply["error"]["type"] = etype
        if text:
            reply["error"]["text"] = text
        return reply
