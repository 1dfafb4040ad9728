"""XmppClient: the IGRS 2.0 transport over a standard XMPP server (specs/relay-xmpp.md).

One IGRS message = one ``<message>`` carrying ``<payload xmlns="urn:igrs:xmpp:payload:0"
ns="<IGRS namespace>" class="realtime|normal">`` with the body in base64. REALTIME is a
``headline`` with the XEP-0334 ``<no-store/>`` hint (never stored); NORMAL is a ``normal``
message with ``<store/>`` (offline storage and MAM). At-least-once delivery: XEP-0198 resumes a
stream inside the server's window; a *fresh* login replays the MAM archive of the last
``catchup`` seconds, and every message is de-duplicated by (sender, message id), so neither path
loses or repeats a message within one client.

Parties are :class:`Principal`: a user is ``u<uuid hex>@domain``, a device ``d<uuid hex>@domain``
(project choice: ':' is not allowed in a JID localpart). Only related parties (roster
subscription) are accepted; anything else is dropped, whatever the server lets through.
slixmpp is imported on first use (extra ``igrs[xmpp]``).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime
import itertools
import logging
import time
import uuid
import xml.etree.ElementTree as ET
from collections import OrderedDict
from collections.abc import AsyncIterator, Iterable, Sequence
from pathlib import Path
from typing import Any, Self

from igrs.relay.client import Message, PresenceEvent, route_queue
from igrs.relay.errors import RelayCode, RelayError
from igrs.relay.ids import Kind, Principal
from igrs.relay.payloads import DEFAULT_NAMESPACE
from igrs.relay.transport import Transport
from igrs.xmpp import namespaces as ns
from igrs.xmpp.liveness import Liveness

log = logging.getLogger(__name__)

DEFAULT_PORT = 5222  # RFC 6120 client port
CATCHUP = 60.0  # s, MAM replay after a fresh login: more than the 20 s resume window (specs)
MAX_PAYLOAD = 192 * 1024  # bytes of IGRS body, under the 256 KiB stanza limit after base64
SEEN = 4096  # remembered message ids for de-duplication
RECEIPT_TIMEOUT = 5.0  # s, send(wait=True) waits this long for the target's XEP-0184 receipt
RELATED = {"both", "to", "from"}


def jid_of(party: Principal | str, domain: str) -> str:
    """The bare JID of a party: ``u<hex>@domain`` / ``d<hex>@domain``; a JID passes through."""
    if isinstance(party, str):
        if "@" in party:
            return party
        party = Principal.parse(party)
    return f"{'u' if party.kind is Kind.USER else 'd'}{party.uuid.hex}@{domain}"


def principal_of(jid: str) -> Principal | None:
    local = jid.split("@", 1)[0] if "@" in jid else ""
    if len(local) != 33 or local[0] not in "ud":
        return None
    try:
        u = uuid.UUID(hex=local[1:])
    except ValueError:
        return None
    return Principal(Kind.USER if local[0] == "u" else Kind.DEVICE, u)


def parse_server(addr: str | tuple[str, int]) -> tuple[str, int]:
    if isinstance(addr, tuple):
        return addr
    host, sep, port = addr.rpartition(":")
    return (host.strip("[]"), int(port)) if sep else (addr, DEFAULT_PORT)


class XmppClient:
    """``async with XmppClient(principal, password, domain=..., servers=[...]) as c:``.

    ``servers``: one or several (host, port) of the same XMPP service (cluster nodes); the
    client connects to the first that answers and fails over to the next when it is lost.
    None given: the DNS SRV records of ``domain`` (RFC 6120 §3.2), else ``domain``:5222.
    """

    OPS = frozenset({"relations", "presence", "subscribe_presence", "friend_request", "friend_respond",
                     "unfriend", "bind", "unbind", "query_bind", "set_verify_code"})  # for request()

    def __init__(self, principal: Principal | str, password: str, *, domain: str,
                 servers: Sequence[str | tuple[str, int]] = (), cafile: str | Path | None = None,
                 register: bool = False, catchup: float = CATCHUP, auto_ack: bool = True,
                 reconnect: bool = True, connect_timeout: float = 10.0,
                 request_timeout: float = 15.0) -> None:
        self.principal = Principal.parse(principal) if isinstance(principal, str) else principal
        self.domain = domain
        self.jid = jid_of(self.principal, domain)
        self.password = password
        self.servers = [parse_server(s) for s in servers]  # none: DNS SRV of the domain
        self.cafile = str(cafile) if cafile else None
        self.register = register
        self.catchup = catchup
        self.auto_ack = auto_ack
        self.reconnect = reconnect
        self.connect_timeout = connect_timeout
        self.request_timeout = request_timeout
        self.max_payload = MAX_PAYLOAD
        self.presence: asyncio.Queue[PresenceEvent] = asyncio.Queue()
        self.notifications: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.connections = 0
        self.receipt_timeout = RECEIPT_TIMEOUT
        self._messages: asyncio.Queue[Message] = asyncio.Queue()
        self._routes: dict[str, asyncio.Queue[Message]] = {}
        self._seen: OrderedDict[tuple[str, str], None] = OrderedDict()
        self._receipts: dict[tuple[str, str], asyncio.Future[None]] = {}
        self._unacked: dict[int, float] = {}  # Message.id of a NORMAL message -> arrival (epoch s)
        self._local_ids = itertools.count(1)
        self._ids = itertools.count(1)
        self._prefix = uuid.uuid4().hex[:12]
        self._server_index = 0
        self._closing = False
        self._up = False  # the stream is open and the session started (or resumed)
        self._ready: asyncio.Future[None] | None = None
        self._reconnector: asyncio.Task[None] | None = None
        self._multicast_service: str | bool | None = False  # False: not asked yet
        self._presence_wanted = False  # events flow after subscribe_presence(), as on the relay
        self.xmpp: Any = None

    # ------------------------------------------------------------------ lifecycle
    async def __aenter__(self) -> Self:
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def _make(self) -> Any:
        import slixmpp  # optional extra igrs[xmpp]
        from slixmpp.xmlstream.handler import Callback
        from slixmpp.xmlstream.matcher import MatchXPath

        # one resource per client: two processes of one party (a listener and a sender) coexist
        x = slixmpp.ClientXMPP(f"{self.jid}/igrs-{self._prefix[:8]}", self.password)
        for plugin in ("xep_0030", "xep_0004", "xep_0060", "xep_0199", "xep_0198", "xep_0313", "xep_0077"):
            x.register_plugin(plugin)
        x.enable_direct_tls = False  # STARTTLS on the client port (RFC 6120); TLS is required
        x.enable_starttls = True
        if self.register:
            x.plugin["xep_0077"].force_registration = True
            x.add_event_handler("register", self._on_register)
        if self.cafile:
            x.ca_certs = Path(self.cafile)
        x.auto_authorize = None  # friend requests are the application's decision
        x.auto_subscribe = False
        x.add_event_handler("session_start", self._on_session_start)
        x.add_event_handler("session_resumed", self._on_resumed)
        x.add_event_handler("failed_auth", self._on_failed_auth)
        x.add_event_handler("connection_failed", self._on_connection_failed)
        x.add_event_handler("disconnected", self._on_disconnected)
        x.add_event_handler("presence_available", self._on_available)
        x.add_event_handler("presence_unavailable", self._on_unavailable)
        x.add_event_handler("presence_subscribe", self._on_subscribe)
        x.add_event_handler("presence_subscribed", self._on_subscription_change)
        x.add_event_handler("presence_unsubscribed", self._on_subscription_change)
        # slixmpp's `message` event fires only for <message> with <body>: match our element.
        x.register_handler(Callback("igrs payload", MatchXPath(
            f"{{jabber:client}}message/{{{ns.PAYLOAD}}}payload"), self._on_payload_stanza))
        x.register_handler(Callback("igrs receipt", MatchXPath(
            f"{{jabber:client}}message/{{{ns.RECEIPTS}}}received"), self._on_receipt))
        self.liveness = Liveness(x)  # probes contacts the server may wrongly show online
        return x

    async def connect(self) -> None:
        """Connect to the first server that accepts the session; raise if none does."""
        last: BaseException | None = None
        for _ in range(max(1, len(self.servers))):
            try:
                await self._connect_once()
                return
            except RelayError:
                raise
            except (OSError, TimeoutError, ConnectionError) as e:
                last = e
                self._server_index += 1
        raise ConnectionError(f"no XMPP server of {self.servers} accepted {self.jid}: {last}")

    async def _connect_once(self) -> None:
        if self.xmpp is None:
            self.xmpp = self._make()
        self._ready = asyncio.get_running_loop().create_future()
        if self.servers:
            host, port = self.servers[self._server_index % len(self.servers)]
            self.xmpp.connect(host, port)
        else:  # slixmpp resolves _xmpp-client._tcp.<domain> (aiodns), else <domain>:5222
            self.xmpp.connect()
        try:
            await asyncio.wait_for(asyncio.shield(self._ready), self.connect_timeout)
        except BaseException:
            self.xmpp.abort()
            raise

    @property
    def connected(self) -> bool:
        """Whether the stream is up now (it reconnects by itself)."""
        return self._up

    async def close(self, *, bye: bool = True) -> None:
        self._closing = True
        if self._reconnector is not None:
            self._reconnector.cancel()
        if self.xmpp is None:
            return
        if bye:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.xmpp.disconnect(), 3)
        else:
            self.abort()

    def abort(self) -> None:
        """Drop the connection without a goodbye (tests: an unclean disconnect)."""
        self._closing = True
        if self.xmpp is not None:
            with contextlib.suppress(Exception):
                self.xmpp.plugin["xep_0198"].sm_id = None  # no resumption: a crashed process
            transport = getattr(self.xmpp, "transport", None)
            if transport is not None:
                transport.abort()

    def _settle(self, exc: BaseException | None) -> None:
        if self._ready is not None and not self._ready.done():
            if exc is None:
                self._ready.set_result(None)
            else:
                self._ready.set_exception(exc)

    # ------------------------------------------------------------------ session events
    async def _on_register(self, _form: Any) -> None:
        iq = self.xmpp.Iq()
        iq["type"] = "set"
        iq["register"]["username"] = self.jid.split("@")[0]
        iq["register"]["password"] = self.password
        with contextlib.suppress(Exception):  # conflict: the account exists already
            await iq.send(timeout=self.request_timeout)

    async def _on_session_start(self, _event: Any) -> None:
        try:
            await self.xmpp.get_roster(timeout=self.request_timeout)
            self.xmpp.send_presence()
            # a barrier: the server answers our initial presence with the contacts' presence
            # before it answers this ping, so send() knows who is offline from the start
            await self.xmpp.plugin["xep_0199"].send_ping(self.domain, timeout=self.request_timeout)
            self.connections += 1
            self._up = True
            self._settle(None)
            await self._catch_up()
        except Exception as e:
            self._settle(e)

    def _on_resumed(self, _event: Any) -> None:
        self.connections += 1
        self._up = True
        self._settle(None)

    def _on_failed_auth(self, _event: Any) -> None:
        self._settle(RelayError(RelayCode.NOT_AUTHENTICATED, f"{self.jid}: authentication failed"))

    def _on_connection_failed(self, event: Any) -> None:
        self._settle(ConnectionError(str(event)))

    def _on_disconnected(self, _event: Any) -> None:
        self._up = False
        if self._closing or (self._ready is not None and not self._ready.done()):
            self._settle(ConnectionError("disconnected"))
            return
        if self.reconnect and (self._reconnector is None or self._reconnector.done()):
            self._reconnector = asyncio.ensure_future(self._reconnect())

    async def _reconnect(self) -> None:
        delay = 0.05
        while not self._closing:
            self._server_index += 1  # fail over to the next address
            try:
                await self._connect_once()
                return
            except RelayError as e:  # the account is refused: retrying will not help
                log.warning("xmpp reconnect of %s stopped: %s", self.jid, e)
                return
            except (OSError, TimeoutError, ConnectionError) as e:
                log.info("xmpp reconnect of %s failed: %s", self.jid, e)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    # ------------------------------------------------------------------ relationships
    def related(self, jid: str) -> bool:
        bare = jid.split("/", 1)[0]
        roster = self.xmpp.client_roster
        return bare in roster and roster[bare]["subscription"] in RELATED

    def _on_available(self, pres: Any) -> None:
        p = principal_of(str(pres["from"].bare))
        if p is not None and self._presence_wanted and self.related(str(pres["from"])):
            self.presence.put_nowait(PresenceEvent(p, True))

    def _on_unavailable(self, pres: Any) -> None:
        p = principal_of(str(pres["from"].bare))
        if p is not None and self._presence_wanted and self.related(str(pres["from"])):
            self.presence.put_nowait(PresenceEvent(p, False))

    def _on_subscribe(self, pres: Any) -> None:
        item = self.xmpp.client_roster[pres["from"].bare]
        if item["subscription"] in ("to", "both") or item["pending_out"]:
            # the other half of a relationship this party asked for: approve it
            self.xmpp.send_presence(pto=pres["from"].bare, ptype="subscribed")
            return
        self.notifications.put_nowait({"event": "friend_request", "from": self._party(pres["from"])})

    def _on_subscription_change(self, pres: Any) -> None:
        event = "friend_accepted" if pres["type"] == "subscribed" else "friend_denied"  # relay's names
        self.notifications.put_nowait({"event": event, "from": self._party(pres["from"])})

    def _party(self, jid: Any) -> str:
        p = principal_of(str(jid.bare))
        return str(p) if p is not None else str(jid.bare)

    async def add_friend(self, party: Principal | str) -> None:
        """Ask ``party`` for a relationship (RFC 6121 subscription request)."""
        self.xmpp.send_presence(pto=jid_of(party, self.domain), ptype="subscribe")

    async def respond(self, party: Principal | str, accept: bool) -> None:
        """Accept (mutual subscription) or deny a relationship request."""
        j = jid_of(party, self.domain)
        self.xmpp.send_presence(pto=j, ptype="subscribed" if accept else "unsubscribed")
        if accept and self.xmpp.client_roster[j]["subscription"] in ("none", "from"):
            self.xmpp.send_presence(pto=j, ptype="subscribe")

    async def unfriend(self, party: Principal | str) -> None:
        j = jid_of(party, self.domain)
        self.xmpp.send_presence(pto=j, ptype="unsubscribe")
        self.xmpp.send_presence(pto=j, ptype="unsubscribed")

    async def subscribe_presence(self) -> dict[str, bool]:
        self._presence_wanted = True
        return self._online()

    def _online(self) -> dict[str, bool]:
        out: dict[str, bool] = {}
        roster = self.xmpp.client_roster
        for bare in roster:
            p = principal_of(str(bare))
            if p is not None and roster[bare]["subscription"] in RELATED:
                out[str(p)] = bool(roster.presence(bare))
        return out

    async def request(self, op: str, **args: Any) -> dict[str, Any]:
        if op == "relations":
            owned_by: list[str] = []
            linked: list[str] = []
            roster = self.xmpp.client_roster
            for bare in roster:
                p = principal_of(str(bare))
                if p is not None and roster[bare]["subscription"] in RELATED:
                    (owned_by if p.is_user else linked).append(str(p))
            return {"relations": {"owned_by": owned_by, "linked": linked}}
        if op == "presence":
            return await self.query_presence(args.get("ids"))
        if op == "subscribe_presence":
            return {"online": await self.subscribe_presence()}
        if op == "friend_request":  # answers as the relay does (specs/relay.md)
            related = self.related(jid_of(args["user"], self.domain))
            await self.add_friend(args["user"])
            return {"state": "friend" if related else "friend_out"}
        if op == "friend_respond":
            await self.respond(args["user"], bool(args.get("accept")))
            return {"state": "friend" if args.get("accept") else "none"}
        if op == "unfriend":
            await self.unfriend(args["user"])
            return {"status": "ok"}
        if op == "bind":
            return await self.bind(args["device"], args["verify_code"])
        if op == "unbind":
            return await self.unbind(args["device"])
        if op == "query_bind":
            return await self.query_bind()
        if op == "set_verify_code":
            return await self.set_verify_code(args["verify_code"])
        raise RelayError(RelayCode.BAD_FRAME, f"operation {op!r} is not offered over XMPP")

    async def query_presence(self, ids: Iterable[Principal | str] | None = None) -> dict[str, Any]:
        online = self._online()
        if ids is not None:
            wanted = {str(Principal.parse(i) if isinstance(i, str) else i) for i in ids}
            online = {k: v for k, v in online.items() if k in wanted}
        return {"online": online}

    # ------------------------------------------------------------------ the binding component
    @property
    def component(self) -> str:
        """The binding component's domain (XEP-0114, igrs.xmpp.component): ``igrs.<domain>``."""
        return f"igrs.{self.domain}"

    def _query(self, uri: str, kind: str, **fields: str) -> Any:
        iq = self.xmpp.Iq()
        iq["type"], iq["to"] = kind, self.component
        q = ET.SubElement(iq.xml, f"{{{uri}}}query")
        for name, text in fields.items():
            ET.SubElement(q, f"{{{uri}}}{name}").text = text
        return iq

    async def set_verify_code(self, verify_code: str) -> dict[str, Any]:
        """A device sets (or resets) its verification code at the component (#verifycode)."""
        await self._iq(self._query(ns.MOBILE_VERIFY_CODE, "set", code=verify_code))
        return {"status": "ok"}

    async def bind(self, device: Principal | str, verify_code: str) -> dict[str, Any]:
        """Bind a device with its verification code (#devicebind); the component writes both
        rosters, so the relation appears here by a roster push."""
        await self._iq(self._query(ns.DEVICE_BIND, "set", device=jid_of(device, self.domain),
                                   code=verify_code))
        return {"status": "bound", "device": str(device)}

    async def unbind(self, device: Principal | str) -> dict[str, Any]:
        await self._iq(self._query(ns.UNBIND, "set", device=jid_of(device, self.domain)))
        return {"status": "unbound"}

    async def query_bind(self) -> dict[str, Any]:
        """A device: its users; a user: its devices (#querybind)."""
        res = await self._iq(self._query(ns.QUERY_BIND, "get"))
        q = res.xml.find(f"{{{ns.QUERY_BIND}}}query")
        out: dict[str, list[str]] = {"users": [], "devices": []}
        for el in q if q is not None else ():
            p = principal_of(el.text or "")
            out["users" if el.tag.endswith("}user") else "devices"].append(str(p) if p else el.text or "")
        return out

    async def _iq(self, iq: Any) -> Any:
        from slixmpp.exceptions import IqError, IqTimeout

        try:
            return await iq.send(timeout=self.request_timeout)
        except IqError as e:
            cond = e.iq["error"]["condition"]
            code = {"forbidden": RelayCode.FORBIDDEN, "not-authorized": RelayCode.FORBIDDEN,
                    "resource-constraint": RelayCode.RATE_LIMITED, "conflict": RelayCode.CONFLICT,
                    "bad-request": RelayCode.BAD_FRAME}.get(cond, RelayCode.NOT_FOUND)
            text = e.iq["error"]["text"]
            raise RelayError(code, f"{iq['to']}: {cond}" + (f": {text}" if text else "")) from None
        except IqTimeout:
            raise RelayError(RelayCode.TIMEOUT, f"{iq['to']}: no answer") from None

    # ------------------------------------------------------------------ messages
    def _stanza(self, to: str, namespace: str, data: bytes, durable: bool, receipt: bool = False) -> Any:
        if len(data) > self.max_payload:
            raise RelayError(RelayCode.TOO_LARGE, f"payload {len(data)} bytes over {self.max_payload}")
        m = self.xmpp.make_message(mto=to, mtype="normal" if durable else "headline")
        m["id"] = f"{self._prefix}-{next(self._ids)}"
        el = ET.SubElement(m.xml, f"{{{ns.PAYLOAD}}}payload",
                           {"ns": namespace, "class": "normal" if durable else "realtime"})
        el.text = base64.b64encode(data).decode()
        ET.SubElement(m.xml, f"{{{ns.HINTS}}}{'store' if durable else 'no-store'}")
        if receipt:
            ET.SubElement(m.xml, f"{{{ns.RECEIPTS}}}request")
        return m

    def known_offline(self, jid: str) -> bool:
        """True when this party sees ``jid``'s presence (subscription to/both) and it has none."""
        item = self.xmpp.client_roster[jid]
        return item["subscription"] in ("to", "both") and not self.xmpp.client_roster.presence(jid)

    async def send(self, target: Principal | str, body: bytes | str, *, namespace: str = DEFAULT_NAMESPACE,
                   durable: bool = False, wait: bool = True) -> dict[str, Any] | None:
        """As the relay's: ``{"status": "delivered"}`` when the target's client sent its XEP-0184
        receipt; NORMAL to a party known offline (or silent for ``receipt_timeout``) is
        ``"stored"`` (offline storage / archive); REALTIME then fails with 410 / 408; an
        unrelated target is refused (403) as on the relay. ``wait=False``: no receipt asked."""
        data = body.encode() if isinstance(body, str) else body
        to = jid_of(target, self.domain)
        if not wait:
            self._stanza(to, namespace, data, durable).send()
            return None
        if not self.related(to):
            raise RelayError(RelayCode.FORBIDDEN, f"not related to {target}")
        offline = self.known_offline(to)
        if offline and not durable:
            raise RelayError(RelayCode.TARGET_OFFLINE, f"{target} is offline (send durable to store)")
        m = self._stanza(to, namespace, data, durable, receipt=not offline)
        if offline:
            m.send()
            return {"status": "stored"}
        key = (to, str(m["id"]))
        fut = self._receipts[key] = asyncio.get_running_loop().create_future()
        try:
            m.send()
            await asyncio.wait_for(fut, self.receipt_timeout)
        except TimeoutError:
            if durable:
                return {"status": "stored"}
            raise RelayError(RelayCode.TIMEOUT, f"no receipt from {target}") from None
        finally:
            self._receipts.pop(key, None)
        return {"status": "delivered"}

    def _on_receipt(self, stanza: Any) -> None:
        el = stanza.xml.find(f"{{{ns.RECEIPTS}}}received")
        fut = self._receipts.get((str(stanza["from"].bare), el.get("id", "") if el is not None else ""))
        if fut is not None and not fut.done():
            fut.set_result(None)

    def _send_receipt(self, to: str, msg_id: str) -> None:
        """The XEP-0184 receipt: a headline with <no-store/> (never stored, never archived)."""
        r = self.xmpp.make_message(mto=to, mtype="headline")
        ET.SubElement(r.xml, f"{{{ns.RECEIPTS}}}received", {"id": msg_id})
        ET.SubElement(r.xml, f"{{{ns.HINTS}}}no-store")
        r.send()

    async def multicast(self, body: bytes | str, *, targets: Iterable[Principal | str] = (),
                        user: Principal | str | None = None, namespace: str = DEFAULT_NAMESPACE,
                        durable: bool = False) -> dict[str, list[str]]:
        """XEP-0033 through the server's multicast service when it has one; else one stanza
        each. ``user``: every device bound to this party's own user (a party sees only its
        own roster). The answer sorts the targets as the relay's: ``delivered`` (receipt
        within ``receipt_timeout``), ``stored`` (NORMAL, offline or silent), ``offline``
        (REALTIME, offline or silent), ``refused`` (not related); ``via``: the service used."""
        data = body.encode() if isinstance(body, str) else body
        jids = [jid_of(t, self.domain) for t in targets]
        if user is not None:
            if jid_of(user, self.domain) != self.jid:
                raise RelayError(RelayCode.FORBIDDEN, "over XMPP only a user's own devices are known to it")
            roster = self.xmpp.client_roster
            jids += [str(b) for b in roster if (p := principal_of(str(b))) is not None
                     and not p.is_user and roster[b]["subscription"] in RELATED]
        out: dict[str, list[str]] = {"delivered": [], "stored": [], "offline": [], "refused": []}
        send: list[str] = []
        for j in dict.fromkeys(jids):
            if not self.related(j):
                out["refused"].append(j)
            elif self.known_offline(j):
                out["stored" if durable else "offline"].append(j)
                if durable:
                    send.append(j)
            else:
                send.append(j)
        service = await self._multicast() if send else None
        stanzas = []
        if service:
            m = self._stanza(service, namespace, data, durable, receipt=True)
            addrs = ET.SubElement(m.xml, f"{{{ns.ADDRESS}}}addresses")
            for j in send:
                ET.SubElement(addrs, f"{{{ns.ADDRESS}}}address", {"type": "bcc", "jid": j})
            stanzas = [(j, m) for j in send]
        else:
            stanzas = [(j, self._stanza(j, namespace, data, durable, receipt=True)) for j in send]
        waiting = {j: self._receipts.setdefault((j, str(m["id"])), asyncio.get_running_loop().create_future())
                   for j, m in stanzas if j not in out["stored"]}
        for m in {id(m): m for _, m in stanzas}.values():
            m.send()
        if waiting:
            await asyncio.wait(waiting.values(), timeout=self.receipt_timeout)
        for (j, m) in stanzas:
            self._receipts.pop((j, str(m["id"])), None)
        for j, fut in waiting.items():
            out["delivered" if fut.done() else "stored" if durable else "offline"].append(j)
        names = {k: [self._name(j) for j in v] for k, v in out.items()}
        return {**names, "via": [service or "fan-out"]}

    def _name(self, jid: str) -> str:
        p = principal_of(jid)
        return str(p) if p is not None else jid

    async def _multicast(self) -> str | None:
        if self._multicast_service is False:
            service: str | None = None
            disco = self.xmpp.plugin["xep_0030"]
            with contextlib.suppress(Exception):
                items = await disco.get_items(jid=self.domain, timeout=self.request_timeout)
                for jid, _node, _name in items["disco_items"]["items"]:
                    info = await disco.get_info(jid=jid, timeout=self.request_timeout)
                    if ns.ADDRESS in info["disco_info"]["features"]:
                        service = str(jid)
                        break
            self._multicast_service = service
        return self._multicast_service if isinstance(self._multicast_service, str) else None

    def _on_payload_stanza(self, stanza: Any) -> None:
        self._deliver(stanza.xml, str(stanza["from"]))

    def _deliver(self, xml: ET.Element, sender: str) -> None:
        el = xml.find(f"{{{ns.PAYLOAD}}}payload")
        if el is None or sender.split("/", 1)[0] == self.jid:
            return
        source = principal_of(sender.split("/", 1)[0])
        if source is None or not self.related(sender):
            log.debug("dropped a message from unrelated %s", sender)  # strangers rule
            return
        key = (sender.split("/", 1)[0], xml.get("id", ""))
        if key[1]:
            if key in self._seen:
                return
            self._seen[key] = None
            while len(self._seen) > SEEN:
                self._seen.popitem(last=False)
        try:
            data = base64.b64decode(el.text or "", validate=True)
        except ValueError:
            return
        if key[1] and xml.find(f"{{{ns.RECEIPTS}}}request") is not None:
            self._send_receipt(sender, key[1])
        stored = el.get("class") == "normal"
        local_id = next(self._local_ids) if stored else 0
        if stored:
            self._unacked[local_id] = time.time()
        msg = Message(source, el.get("ns", DEFAULT_NAMESPACE), data, local_id, stored)
        self._routes.get(msg.namespace, self._messages).put_nowait(msg)

    async def _catch_up(self) -> None:
        """After a fresh login: replay the archive since the oldest NORMAL message not yet
        acknowledged, and at least the last ``catchup`` seconds (de-duplicated)."""
        since = min([time.time() - self.catchup, *(t - 1.0 for t in self._unacked.values())])
        start = datetime.datetime.fromtimestamp(since, datetime.UTC)
        with contextlib.suppress(Exception):
            async for result in self.xmpp.plugin["xep_0313"].iterate(start=start, rsm={"max": 100}):
                fwd = result.xml.find(".//{urn:xmpp:forward:0}forwarded/{jabber:client}message")
                if fwd is not None:
                    self._deliver(fwd, fwd.get("from", ""))

    async def receive(self, timeout: float | None = None) -> Message:
        msg = await asyncio.wait_for(self._messages.get(), timeout)
        if msg.stored and self.auto_ack:
            self.ack(msg)
        return msg

    async def messages(self) -> AsyncIterator[Message]:
        while True:
            yield await self.receive()

    def route(self, namespace: str) -> asyncio.Queue[Message]:
        return route_queue(self._routes, self._messages, namespace)

    def ack(self, msg: Message) -> None:
        """A NORMAL message is handled: a later fresh login of this client need not replay it
        (until acknowledged, catch-up starts at its arrival, however long ago)."""
        self._unacked.pop(msg.id, None)

    # ------------------------------------------------------------------ online storage (PEP)
    async def item_put(self, key: str, value: bytes, readers: Iterable[Principal | str] = ()) -> dict[str, Any]:
        """Publish to the PEP node of ``key``: readable by related parties (access_model presence)."""
        form = self.xmpp.plugin["xep_0004"].make_form("submit")
        form.add_field(var="FORM_TYPE", ftype="hidden", value="http://jabber.org/protocol/pubsub#publish-options")
        form.add_field(var="pubsub#access_model", value="presence")
        item = ET.Element(f"{{{ns.PAYLOAD}}}item")
        item.text = base64.b64encode(value).decode()
        try:
            await self.xmpp.plugin["xep_0060"].publish(self.jid, ns.ITEM_NODE_PREFIX + key, id="current",
                                                payload=item, options=form, timeout=self.request_timeout)
        except Exception as e:  # IqError
            raise RelayError(RelayCode.FORBIDDEN, f"item_put {key}: {e}") from None
        return {"status": "ok"}

    async def item_get(self, key: str, owner: Principal | str | None = None) -> bytes:
        from slixmpp.exceptions import IqError

        j = jid_of(owner, self.domain) if owner is not None else self.jid
        try:
            res = await self.xmpp.plugin["xep_0060"].get_items(j, ns.ITEM_NODE_PREFIX + key, max_items=1,
                                                        timeout=self.request_timeout)
        except IqError as e:
            cond = e.iq["error"]["condition"]
            raise RelayError(RelayCode.FORBIDDEN if cond != "item-not-found" else RelayCode.NOT_FOUND,
                             f"item_get {key}: {cond}") from None
        el = res.xml.find(f".//{{{ns.PAYLOAD}}}item")
        if el is None:
            raise RelayError(RelayCode.NOT_FOUND, f"item_get {key}: no item")
        return base64.b64decode(el.text or "")


def _xmpp_client_is_a_transport(c: XmppClient) -> Transport:  # checked by mypy
    return c
