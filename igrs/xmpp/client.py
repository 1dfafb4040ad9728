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
import uuid
import xml.etree.ElementTree as ET
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Self

from igrs.relay.client import Message, PresenceEvent
from igrs.relay.errors import RelayCode, RelayError
from igrs.relay.ids import Kind, Principal
from igrs.relay.payloads import DEFAULT_NAMESPACE
from igrs.xmpp import namespaces as ns
from igrs.xmpp.liveness import Liveness

log = logging.getLogger(__name__)

DEFAULT_PORT = 5222  # RFC 6120 client port
CATCHUP = 60.0  # s, MAM replay after a fresh login: more than the 20 s resume window (specs)
MAX_PAYLOAD = 192 * 1024  # bytes of IGRS body, under the 256 KiB stanza limit after base64
SEEN = 4096  # remembered message ids for de-duplication
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
    """

    def __init__(self, principal: Principal | str, password: str, *, domain: str,
                 servers: Sequence[str | tuple[str, int]] = (), cafile: str | Path | None = None,
                 register: bool = False, catchup: float = CATCHUP, auto_ack: bool = True,
                 connect_timeout: float = 10.0, request_timeout: float = 15.0) -> None:
        self.principal = Principal.parse(principal) if isinstance(principal, str) else principal
        self.domain = domain
        self.jid = jid_of(self.principal, domain)
        self.password = password
        self.servers = [parse_server(s) for s in servers] or [(domain, DEFAULT_PORT)]
        self.cafile = str(cafile) if cafile else None
        self.register = register
        self.catchup = catchup
        self.auto_ack = auto_ack
        self.connect_timeout = connect_timeout
        self.request_timeout = request_timeout
        self.max_payload = MAX_PAYLOAD
        self.presence: asyncio.Queue[PresenceEvent] = asyncio.Queue()
        self.notifications: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.connections = 0
        self._messages: asyncio.Queue[Message] = asyncio.Queue()
        self._routes: dict[str, asyncio.Queue[Message]] = {}
        self._seen: OrderedDict[tuple[str, str], None] = OrderedDict()
        self._ids = itertools.count(1)
        self._prefix = uuid.uuid4().hex[:12]
        self._server_index = 0
        self._closing = False
        self._ready: asyncio.Future[None] | None = None
        self._reconnector: asyncio.Task[None] | None = None
        self._multicast_service: str | bool | None = False  # False: not asked yet
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

        x = slixmpp.ClientXMPP(self.jid + "/igrs", self.password)
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
        self.liveness = Liveness(x)  # probes contacts the server may wrongly show online
        return x

    async def connect(self) -> None:
        """Connect to the first server that accepts the session; raise if none does."""
        last: BaseException | None = None
        for _ in range(len(self.servers)):
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
        host, port = self.servers[self._server_index % len(self.servers)]
        self._ready = asyncio.get_running_loop().create_future()
        self.xmpp.connect(host, port)
        try:
            await asyncio.wait_for(asyncio.shield(self._ready), self.connect_timeout)
        except BaseException:
            self.xmpp.abort()
            raise

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
            self.connections += 1
            self._settle(None)
            await self._catch_up()
        except Exception as e:
            self._settle(e)

    def _on_resumed(self, _event: Any) -> None:
        self.connections += 1
        self._settle(None)

    def _on_failed_auth(self, _event: Any) -> None:
        self._settle(RelayError(RelayCode.NOT_AUTHENTICATED, f"{self.jid}: authentication failed"))

    def _on_connection_failed(self, event: Any) -> None:
        self._settle(ConnectionError(str(event)))

    def _on_disconnected(self, _event: Any) -> None:
        if self._closing or (self._ready is not None and not self._ready.done()):
            self._settle(ConnectionError("disconnected"))
            return
        if self._reconnector is None or self._reconnector.done():
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
        if p is not None and self.related(str(pres["from"])):
            self.presence.put_nowait(PresenceEvent(p, True))

    def _on_unavailable(self, pres: Any) -> None:
        p = principal_of(str(pres["from"].bare))
        if p is not None and self.related(str(pres["from"])):
            self.presence.put_nowait(PresenceEvent(p, False))

    def _on_subscribe(self, pres: Any) -> None:
        item = self.xmpp.client_roster[pres["from"].bare]
        if item["subscription"] in ("to", "both") or item["pending_out"]:
            # the other half of a relationship this party asked for: approve it
            self.xmpp.send_presence(pto=pres["from"].bare, ptype="subscribed")
            return
        self.notifications.put_nowait({"event": "friend_request", "from": self._party(pres["from"])})

    def _on_subscription_change(self, pres: Any) -> None:
        self.notifications.put_nowait({"event": str(pres["type"]), "from": self._party(pres["from"])})

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
                if p is not None and roster[bare]["subscription"] == "both":
                    (owned_by if p.is_user else linked).append(str(p))
            return {"relations": {"owned_by": owned_by, "linked": linked}}
        if op == "presence":
            return {"online": await self.subscribe_presence()}
        raise RelayError(RelayCode.BAD_FRAME, f"operation {op!r} is not offered over XMPP")

    async def bind(self, device: Principal | str, verify_code: str) -> dict[str, Any]:
        """Bind a device with its verification code: an IQ to the binding component."""
        iq = self.xmpp.Iq()
        iq["type"], iq["to"] = "set", f"igrs.{self.domain}"
        q = ET.SubElement(iq.xml, f"{{{ns.DEVICE_BIND}}}query")
        ET.SubElement(q, f"{{{ns.DEVICE_BIND}}}device").text = jid_of(device, self.domain)
        ET.SubElement(q, f"{{{ns.DEVICE_BIND}}}verifycode").text = verify_code
        return await self._iq(iq)

    async def _iq(self, iq: Any) -> dict[str, Any]:
        from slixmpp.exceptions import IqError, IqTimeout

        try:
            res = await iq.send(timeout=self.request_timeout)
        except IqError as e:
            cond = e.iq["error"]["condition"]
            code = RelayCode.FORBIDDEN if cond in ("forbidden", "not-authorized") else RelayCode.NOT_FOUND
            raise RelayError(code, f"{cond}: {e.iq['error']['text']}") from None
        except IqTimeout:
            raise RelayError(RelayCode.TIMEOUT, "no answer") from None
        return {"status": "ok", "xml": str(res)}

    # ------------------------------------------------------------------ messages
    def _stanza(self, to: str, namespace: str, data: bytes, durable: bool) -> Any:
        if len(data) > self.max_payload:
            raise RelayError(RelayCode.TOO_LARGE, f"payload {len(data)} bytes over {self.max_payload}")
        m = self.xmpp.make_message(mto=to, mtype="normal" if durable else "headline")
        m["id"] = f"{self._prefix}-{next(self._ids)}"
        el = ET.SubElement(m.xml, f"{{{ns.PAYLOAD}}}payload",
                           {"ns": namespace, "class": "normal" if durable else "realtime"})
        el.text = base64.b64encode(data).decode()
        ET.SubElement(m.xml, f"{{{ns.HINTS}}}{'store' if durable else 'no-store'}")
        return m

    async def send(self, target: Principal | str, body: bytes | str, *, namespace: str = DEFAULT_NAMESPACE,
                   durable: bool = False, wait: bool = True) -> dict[str, Any] | None:
        data = body.encode() if isinstance(body, str) else body
        self._stanza(jid_of(target, self.domain), namespace, data, durable).send()
        return {"status": "sent"} if wait else None

    async def multicast(self, body: bytes | str, *, targets: Iterable[Principal | str] = (),
                        user: Principal | str | None = None, namespace: str = DEFAULT_NAMESPACE,
                        durable: bool = False) -> dict[str, list[str]]:
        """XEP-0033 through the server's multicast service when it has one; else one stanza each."""
        data = body.encode() if isinstance(body, str) else body
        jids = [jid_of(t, self.domain) for t in targets]
        if user is not None:
            jids.append(jid_of(user, self.domain))
        service = await self._multicast()
        if service:
            m = self._stanza(service, namespace, data, durable)
            addrs = ET.SubElement(m.xml, f"{{{ns.ADDRESS}}}addresses")
            for j in jids:
                ET.SubElement(addrs, f"{{{ns.ADDRESS}}}address", {"type": "bcc", "jid": j})
            m.send()
        else:
            for j in jids:
                self._stanza(j, namespace, data, durable).send()
        return {"sent": jids, "via": [service or "fan-out"]}

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
        msg = Message(source, el.get("ns", DEFAULT_NAMESPACE), data, stored=el.get("class") == "normal")
        self._routes.get(msg.namespace, self._messages).put_nowait(msg)

    async def _catch_up(self) -> None:
        """After a fresh login: replay the archive of the last ``catchup`` seconds (de-duplicated)."""
        start = datetime.datetime.now(datetime.UTC) - datetime.timedelta(seconds=self.catchup)
        with contextlib.suppress(Exception):
            async for result in self.xmpp.plugin["xep_0313"].iterate(start=start, rsm={"max": 100}):
                fwd = result.xml.find(".//{urn:xmpp:forward:0}forwarded/{jabber:client}message")
                if fwd is not None:
                    self._deliver(fwd, fwd.get("from", ""))

    async def receive(self, timeout: float | None = None) -> Message:
        return await asyncio.wait_for(self._messages.get(), timeout)

    def route(self, namespace: str) -> asyncio.Queue[Message]:
        q = self._routes.get(namespace)
        if q is None:
            q = self._routes[namespace] = asyncio.Queue()
            keep: list[Message] = []
            while not self._messages.empty():
                m = self._messages.get_nowait()
                if m.namespace == namespace:
                    q.put_nowait(m)
                else:
                    keep.append(m)
            for m in keep:
                self._messages.put_nowait(m)
        return q

    def ack(self, msg: Message) -> None:
        """Stored messages are acknowledged by XEP-0198 as they are read: nothing to send."""

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
