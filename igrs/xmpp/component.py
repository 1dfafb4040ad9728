"""The device-bind component: an XEP-0114 external component for Prosody and ejabberd.

An XMPP server knows rosters but not IGRS binding, so a small component (``igrs.<domain>``)
does what the relay's account server does (specs/relay-xmpp-server.md):

* a device sets its verification code (``#verifycode``); it is kept as PBKDF2-SHA256 with a
  random salt (the relay's ``hash_verify_code``), hashed in a thread, never on the loop;
* a user binds a device with the code (``#devicebind``): attempt guards per device and per
  account (``PairingGuard``: 5 failures lock for 30 s, doubling, at most 1 h); an unknown
  device and a wrong code get the same answer; on success the component writes **both
  rosters** (subscription ``both``) through the server's admin interface (``RosterAdmin``);
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
import secrets
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, cast
from xml.etree import ElementTree as ET

from igrs.core.security.pairing import PairingGuard
from igrs.relay.codes import stretch as hash_verify_code
from igrs.xmpp import namespaces as ns

if TYPE_CHECKING:
    from slixmpp import Iq
    from slixmpp.xmlstream import StanzaBase

MIN_CODE, MAX_CODE = 4, 64  # characters, as the relay's register_device (specs/relay.md)
MAX_GUARDS = 10_000  # guards kept per kind; idle ones are dropped first (memory bound)
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


class Guards:
    """One ``PairingGuard`` per key (device JID or account JID), bounded in number."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.by_key: dict[str, PairingGuard] = {}

    def get(self, key: str) -> PairingGuard:
        g = self.by_key.get(key)
        if g is None:
            if len(self.by_key) >= MAX_GUARDS:
                now = self.clock()
                idle = [k for k, v in self.by_key.items() if v.failures == 0 and v.locked_for(now) == 0]
                for k in idle[: len(self.by_key) // 2 or 1]:
                    del self.by_key[k]
            g = self.by_key[key] = PairingGuard()
        return g

    def locked_for(self, *keys: str) -> float:
        now = self.clock()
        return max(self.get(k).locked_for(now) for k in keys)


class BindError(Exception):
    """An IQ error: RFC 6120 condition and type."""

    def __init__(self, condition: str, etype: str, text: str = "") -> None:
        super().__init__(text or condition)
        self.condition, self.etype, self.text = condition, etype, text


WRONG = BindError("not-authorized", "auth", "unknown device or wrong verification code")


class BindService:
    """The component's rules, free of XMPP framing (tested through the component)."""

    def __init__(
        self, store: BindStore, admin: RosterAdmin, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.store = store
        self.admin = admin
        self.by_device = Guards(clock)
        self.by_account = Guards(clock)
        self.clock = clock

    async def set_code(self, device: str, code: str) -> None:
        if not MIN_CODE <= len(code) <= MAX_CODE:
            raise BindError("bad-request", "modify", f"a verification code is {MIN_CODE}-{MAX_CODE} characters")
        salt = secrets.token_hex(16)
        digest = await asyncio.to_thread(hash_verify_code, code, salt)
        self.store.codes[device] = f"{salt}${digest}"
        self.store.save()

    async def bind(self, user: str, device: str, code: str) -> None:
        wait = max(self.by_device.locked_for(device), self.by_account.locked_for(user))
        if wait > 0:
            raise BindError("resource-constraint", "wait", f"bind locked for {wait:.0f} s after failures")
        record = self.store.codes.get(device)
        # Hash even for an unknown device: the same work, the same answer (no enumeration).
        salt, digest = record.split("$") if record else (secrets.token_hex(16), "")
        got = await asyncio.to_thread(hash_verify_code, code, salt)
        if not record or not secrets.compare_digest(got, digest):
            now = self.clock()
            self.by_device.get(device).record_failure(now)
            self.by_account.get(user).record_failure(now)
            raise WRONG
        self.by_device.get(device).record_success()
        self.by_account.get(user).record_success()
        if user in self.store.owners.get(device, []):
            raise BindError("conflict", "cancel", "device already bound to this user")
        await self.admin.relate(user, device)
        self.store.owners.setdefault(device, []).append(user)
        self.store.save()

    async def unbind(self, user: str, device: str) -> None:
        if user not in self.store.owners.get(device, []):
            raise BindError("item-not-found", "cancel", "device is not bound to this user")
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
        except BindError as e:
            reply = self._error(iq, e)
        except Exception as e:  # an admin-interface failure: the caller learns, the component lives
            reply = self._error(iq, BindError("internal-server-error", "wait", str(e)[:200]))
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
        raise BindError("bad-request", "modify", f"{kind} not defined for {uri}")

    @staticmethod
    def _error(iq: Iq, e: BindError) -> Any:
        reply = iq.reply(clear=True)
        reply["type"] = "error"
        reply["error"]["condition"] = e.condition
        reply["error"]["type"] = e.etype
        if e.text:
            reply["error"]["text"] = e.text
        return reply


async def run_component(
    jid: str, secret: str, host: str, port: int, admin: RosterAdmin, state: Path | None,
    stop: asyncio.Event | None = None,
) -> None:  # fmt: skip
    """Connect and serve until ``stop`` is set (the CLI: until interrupted)."""
    component = BindComponent(jid, secret, host, port, BindService(BindStore.load(state), admin))
    await component.start()
    try:
        await (stop or asyncio.Event()).wait()
    finally:
        await component.stop()
