"""``ServiceHost``: the server side of clauses 9.7 and 10.1-10.6, independent of the transport.

The network glue (igrs.node.device) hands it decoded request frames and gets the reply message:

    host = ServiceHost(send=notify)            # async notify(location_or_peer, message)
    sid = host.add(Light())
    reply = await host.handle(frame, PeerInfo(frame.routing.source, "192.168.1.30"))

``reply`` is the typed response for a request, ``None`` for an accepted notify; a notify that
cannot be accepted raises IGRSError with its return code. A request from a peer that is not
``secure`` gets what igrs.core.access allows (the same table the Device applies): 401 for all
of these messages, but for those addressed to a service shared openly
(``host.add(svc, access=Access.OPEN)``: a session, invocation and the WSDL in the clear, for
pipe-less legacy peers; specs/pipes.md §1). Notifications (SendNotification,
NotifyDeviceEvent, NotifyServiceEvent) go out through ``send(location_url, message)``;
DestroySessionNotify to a peer through ``send(peer_device_id, message)``.
Rules: specs/services.md, specs/sessions.md, specs/events.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import inspect
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from igrs.constants import MAX_SERVICES, NOTIFY_TIMEOUT, ReturnCode
from igrs.core.access import SERVICE_ADDRESSED, Access, check_access
from igrs.core.events import ATTRIBUTE, DEVICE, SERVICE, Batch, Subscription, SubscriptionTable
from igrs.core.sessions import Session, SessionTable
from igrs.errors import IGRSError, NotImplementedMessage, ProtocolError
from igrs.net.aio import wait_event
from igrs.node.service import Service, resolve_call
from igrs.wire.ids import DeviceId, ServiceType
from igrs.wire.lazy_import import lazy_import
from igrs.wire.messages import BuiltMessage, Frame, SoapMessage, Status

if TYPE_CHECKING:  # the cipher modules load only when session keys are used
    from igrs.core.security.session_keys import SessionKeySchedule
    from igrs.wire.bodies import events as ev
    from igrs.wire.bodies import services as sv
    from igrs.wire.bodies import sessions as ss
    from igrs.wire.bodies.sessions import NamedValues, Value
else:  # the event bodies load with the first subscription, the service and session bodies
    # with the first service hosted or message read
    ev = lazy_import("igrs.wire.bodies.events")
    sv = lazy_import("igrs.wire.bodies.services")
    ss = lazy_import("igrs.wire.bodies.sessions")

log = logging.getLogger(__name__)

# (callback URL or peer device id, message, subscriber device id or None)
Send = Callable[[str | DeviceId, SoapMessage, str | None], Awaitable[object]]
Authorize = Callable[["PeerInfo", Service, "ss.UserInfo"], bool | Awaitable[bool]]
# One message type's handler: (decoded frame, who sent it) -> the reply (None: a notify taken).
ServiceHandler = Callable[[Frame, "PeerInfo"], Awaitable[SoapMessage | None]]
RemoteServiceHook = Callable[["PeerInfo", SoapMessage], object]

# Standard operations handled by the host itself (EZ-SDT), invoked with InvokeServiceRequest.
FIND, SUBSCRIBE, RENEW, UNSUBSCRIBE = "findServiceAttribute", "subscribe", "renewSubscription", "unsubscribe"
STANDARD = frozenset({FIND, SUBSCRIBE, RENEW, UNSUBSCRIBE})


@dataclass(frozen=True, slots=True)
class PeerInfo:
    """Who sent a request: its device id, the source IP address of the connection, whether it
    came over a secure pipe, and that pipe's session-key schedule (for 10.5 session keys)."""

    device_id: DeviceId
    address: str
    secure: bool = True
    key_schedule: SessionKeySchedule | None = None


# frozen: __setattr__ refuses; set once here through the slots (as igrs.wire.ids.DeviceId.parse)
_SET_DEVICE_ID, _SET_ADDRESS, _SET_SECURE, _SET_KEY_SCHEDULE = (
    vars(PeerInfo)[name].__set__ for name in ("device_id", "address", "secure", "key_schedule"))


def peer_info(device_id: DeviceId, address: str, secure: bool,
              key_schedule: SessionKeySchedule | None) -> PeerInfo:
    """``PeerInfo(device_id, address, secure, key_schedule)``, made for every request: without
    the frozen dataclass's ``object.__setattr__`` per field (≈ 3 k instructions less)."""
    peer = object.__new__(PeerInfo)
    _SET_DEVICE_ID(peer, device_id)
    _SET_ADDRESS(peer, address)
    _SET_SECURE(peer, secure)
    _SET_KEY_SCHEDULE(peer, key_schedule)
    return peer


# The peer whose request an action is running for (read it in an @action: who is calling).
current_peer: contextvars.ContextVar[PeerInfo | None] = contextvars.ContextVar("igrs_current_peer",
                                                                               default=None)


def _fail(code: ReturnCode, reason: str) -> IGRSError:
    return IGRSError(reason, return_code=code)


def _arg(args: dict[str, Value], name: str, kind: type, *, required: bool = True) -> Any:
    if name not in args:
        if required:
            raise _fail(ReturnCode.BAD_MESSAGE, f"missing argument {name!r}")
        return None
    value = args[name]
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise _fail(ReturnCode.BAD_MESSAGE, f"argument {name!r} has the wrong type")
    return value


class ServiceHost:
    """Services of one device, their sessions and subscriptions."""

    HANDLED: ClassVar[frozenset[str]] = frozenset(
        {
            "SubscribeDeviceEventRequest",
            "RenewSubscriptionDeviceEventRequest",
            "UnSubscribeDeviceEventNotify",
            "SubscribeServiceEventRequest",
            "RenewSubscriptionServiceEventRequest",
            "UnSubscribeServiceEventNotify",
            "RegisterServiceNotify",
            "UnRegisterServiceNotify",
            "SearchServiceRequestOnDevice",
            "GetServiceDescriptionRequest",
            "CreateSessionRequest",
            "DestroySessionNotify",
            "ApplySessionKeyRequest",
            "TransferSessionKeyRequest",
            "InvokeServiceRequest",
        }
    )

    def __init__(
        self,
        send: Send | None = None,
        *,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
        require_secure: bool = True,  # False: the transport vouches for every peer (tests)
        authorize: Authorize | None = None,
        on_remote_service: RemoteServiceHook | None = None,
        sessions: SessionTable | None = None,
        subscriptions: SubscriptionTable | None = None,
        notify_timeout: float = NOTIFY_TIMEOUT,
    ) -> None:
        self._send = send
        self.clock = clock
        self._rng = rng or random.SystemRandom()
        self.require_secure = require_secure
        self.authorize = authorize
        self.on_remote_service = on_remote_service
        self.sessions = sessions if sessions is not None else SessionTable(rng=self._rng)
        self.subscriptions = subscriptions if subscriptions is not None else SubscriptionTable(rng=self._rng)
        self.notify_timeout = notify_timeout
        self._services: dict[int, Service] = {}
        self._open: set[int] = set()  # ids of the services shared openly (Access.OPEN)
        self._sub_session: dict[int, int] = {}  # attribute subscription -> session id
        self._device_state: dict[str, bool] = {}
        self._pumps: dict[int, tuple[asyncio.Task[None], asyncio.Event]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._handlers: dict[str, ServiceHandler] = {
            "SubscribeDeviceEventRequest": self._on_subscribe_events,
            "SubscribeServiceEventRequest": self._on_subscribe_events,
            "RenewSubscriptionDeviceEventRequest": self._on_renew_events,
            "RenewSubscriptionServiceEventRequest": self._on_renew_events,
            "UnSubscribeDeviceEventNotify": self._on_unsubscribe_events,
            "UnSubscribeServiceEventNotify": self._on_unsubscribe_events,
            "RegisterServiceNotify": self._on_remote_service,
            "UnRegisterServiceNotify": self._on_remote_service,
            "SearchServiceRequestOnDevice": self._on_search,
            "GetServiceDescriptionRequest": self._on_get_description,
            "CreateSessionRequest": self._on_create_session,
            "DestroySessionNotify": self._on_destroy_session,
            "ApplySessionKeyRequest": self._on_apply_key,
            "TransferSessionKeyRequest": self._on_transfer_key,
            "InvokeServiceRequest": self._on_invoke,
        }

    # --- services -------------------------------------------------------------------------
    def add(self, service: Service, service_id: int | None = None, *,
            access: Access | str = Access.PAIRED) -> int:
        """Host ``service``; returns its service id (random unless given). ``access`` "open"
        shares it openly: a peer without a secure pipe may open a session and invoke it in the
        clear (no authentication, no confidentiality: specs/security.md §12)."""
        access = Access(access)
        if not type(service).service_type:
            raise TypeError(f"{type(service).__name__} has no service_type")
        if len(self._services) >= MAX_SERVICES:
            raise IGRSError(f"more than {MAX_SERVICES} services", return_code=ReturnCode.BUSY)
        if service_id is None:
            service_id = self._rng.randint(1, 0xFFFF)
            while service_id in self._services:
                service_id = self._rng.randint(1, 0xFFFF)
        elif service_id in self._services or not 0 < service_id <= 0xFFFF_FFFF:
            raise ValueError(f"service id {service_id} is taken or out of range")
        self._services[service_id] = service
        self.set_access(service_id, access)
        service._igrs_listener = lambda name, value: self._on_attribute(service_id, name, value)
        self._publish(SERVICE, str(service_id), (True, type(service).service_type, self._name(service)))
        return service_id

    async def remove(self, service_id: int, reason: str = "service removed") -> None:
        """Stop hosting a service: its sessions end (DestroySessionNotify to each peer), its
        attribute subscriptions end with a notice, service-event subscribers hear it."""
        service = self._services.pop(service_id, None)
        if service is None:
            return
        self._open.discard(service_id)
        service._igrs_listener = None
        for sid in list(self._sub_session):
            sub = self.subscriptions.get(sid)
            if sub is not None and sub.service_id == service_id:
                self.subscriptions.end(sid, reason)
                self._sub_session.pop(sid, None)
                self._wake(sid)
        for session in self.sessions.drop_service(service_id):
            msg = ss.DestroySessionNotify(session.client_id, service_id, session.session_id, True, reason)
            with contextlib.suppress(Exception):
                await self._deliver(DeviceId.parse(session.peer), msg)
        self._publish(SERVICE, str(service_id), (False, type(service).service_type, self._name(service)))

    @staticmethod
    def _name(service: Service) -> str:
        return type(service).name or type(service).__name__

    def service(self, service_id: int) -> Service:
        return self._services[service_id]

    def set_access(self, service_id: int, access: Access | str) -> None:
        """Share a hosted service openly (``"open"``) or with paired devices only (``"paired"``,
        the default). Sessions already open stay; new requests follow the new access."""
        if service_id not in self._services:
            raise KeyError(service_id)
        if Access(access) is Access.OPEN:
            self._open.add(service_id)
        else:
            self._open.discard(service_id)

    def access(self, service_id: int) -> Access:
        return Access.OPEN if service_id in self._open else Access.PAIRED

    @property
    def open_services(self) -> list[sv.ServiceInfo]:
        """The services shared openly (what a pipe-less peer may use)."""
        return [info for info in self.services if info.service_id in self._open]

    def service_access(self, frame: Frame) -> Access:
        """The access of the service a request is addressed to (``SERVICE_ADDRESSED`` types, by
        the service id in the body); ``PAIRED`` for every other message."""
        if frame.routing.message_type not in SERVICE_ADDRESSED:
            return Access.PAIRED
        return self.access(getattr(frame.message, "service_id", 0))

    @property
    def services(self) -> list[sv.ServiceInfo]:
        return [
            sv.ServiceInfo(sid, type(s).service_type, self._name(s), tuple(type(s).security_ids))
            for sid, s in self._services.items()
        ]

    def description(self, service_id: int) -> sv.ServiceDescription:
        return type(self._services[service_id]).describe(service_id)

    # --- dispatch -------------------------------------------------------------------------
    def handler(self, message_type: str) -> ServiceHandler:
        """The handler of one message type of clauses 9.7 / 10.1-10.6 (NotImplementedMessage,
        501, for another). It does not check the access rule: its caller has (the Device for
        every message it is sent, ``handle`` here)."""
        handler = self._handlers.get(message_type)
        if handler is None:
            raise NotImplementedMessage(f"{message_type} is not handled here")
        return handler

    async def handle(self, frame: Frame, peer: PeerInfo) -> SoapMessage | None:
        """Answer one decoded request or notify of clauses 9.7 / 10.1-10.6 (501 for another
        type, then 401 for what igrs.core.access does not admit from a peer not ``secure``)."""
        message_type = frame.routing.message_type
        handler = self.handler(message_type)
        if self.require_secure:
            check_access(message_type, sealed=peer.secure, service=self.service_access(frame))
        return await handler(frame, peer)

    # --- 10.2 / 10.4 / 10.1 ---------------------------------------------------------------
    async def _on_search(self, frame: Frame, peer: PeerInfo) -> SoapMessage:
        msg = frame.message
        assert isinstance(msg, sv.SearchServiceRequestOnDevice)
        target = msg.target
        found = []
        for info in self.services:
            if target.kind == "all":
                found.append(info)
            elif target.kind == "service_type" and target.service_type is not None:
                have = ServiceType.parse(info.service_type)
                if have.name == target.service_type.name and have.version >= target.service_type.version:
                    found.append(info)
        return sv.SearchServiceResponseOnDevice(Status(frame.routing.sequence_id), tuple(found))

    async def _on_get_description(self, frame: Frame, peer: PeerInfo) -> SoapMessage:
        msg = frame.message
        assert isinstance(msg, sv.GetServiceDescriptionRequest)
        if msg.service_id not in self._services:
            return sv.GetServiceDescriptionResponse(
                Status(frame.routing.sequence_id, ReturnCode.NOT_FOUND, "no such service")
            )
        return sv.GetServiceDescriptionResponse(
            Status(frame.routing.sequence_id), msg.service_id, self.description(msg.service_id)
        )

    async def _on_remote_service(self, frame: Frame, peer: PeerInfo) -> None:
        if self.on_remote_service is not None:
            result = self.on_remote_service(peer, frame.message)
            if inspect.isawaitable(result):
                await result
        return None

    # --- 9.7 / 10.3 -----------------------------------------------------------------------
    @staticmethod
    def _kind(message_type: str) -> str:
        return DEVICE if "Device" in message_type else SERVICE

    async def _on_subscribe_events(self, frame: Frame, peer: PeerInfo) -> SoapMessage:
        msg = frame.message
        assert isinstance(msg, ev.SubscribeDeviceEventRequest | ev.SubscribeServiceEventRequest)
        kind = self._kind(frame.routing.message_type)
        answer = ev.SubscribeDeviceEventResponse if kind == DEVICE else ev.SubscribeServiceEventResponse
        now = self.clock()
        try:
            sub = self.subscriptions.subscribe(
                kind,
                str(peer.device_id),
                peer.address,
                msg.location,
                msg.targets,
                msg.expiration_time.timestamp(),
                now,
            )
        except IGRSError as exc:
            return answer(Status(frame.routing.sequence_id, exc.return_code, exc.reason))
        initial: list[tuple[str, object]]
        if kind == DEVICE:
            initial = [(d, online) for d, online in self._device_state.items()]
        else:
            initial = [
                (str(sid), (True, type(s).service_type, self._name(s))) for sid, s in self._services.items()
            ]
        self.subscriptions.push(
            sub, [(n, v) for n, v in initial if sub.wants(n) or self._wants_type(sub, v)], now
        )
        self._start_pump(sub)
        return answer(Status(frame.routing.sequence_id), sub.subscription_id, ev.from_timestamp(sub.expires_at))

    @staticmethod
    def _wants_type(sub: Subscription, value: object) -> bool:
        """Service-event targets may name service types as well as service ids."""
        return sub.kind == SERVICE and isinstance(value, tuple) and value[1] in sub.topics

    async def _on_renew_events(self, frame: Frame, peer: PeerInfo) -> SoapMessage:
        msg = frame.message
        assert isinstance(msg, ev.RenewSubscriptionDeviceEventRequest | ev.RenewSubscriptionServiceEventRequest)
        kind = self._kind(frame.routing.message_type)
        answer = ev.SubscribeDeviceEventResponse if kind == DEVICE else ev.SubscribeServiceEventResponse
        try:
            sub = self.subscriptions.renew(
                msg.subscription_id,
                str(peer.device_id),
                peer.address,
                msg.location,
                msg.expiration_time.timestamp(),
                self.clock(),
                kind=kind,
            )
        except IGRSError as exc:
            return answer(Status(frame.routing.sequence_id, exc.return_code, exc.reason))
        return answer(Status(frame.routing.sequence_id), sub.subscription_id, ev.from_timestamp(sub.expires_at))

    async def _on_unsubscribe_events(self, frame: Frame, peer: PeerInfo) -> None:
        msg = frame.message
        assert isinstance(msg, ev.UnSubscribeDeviceEventNotify | ev.UnSubscribeServiceEventNotify)
        self.subscriptions.unsubscribe(
            msg.subscription_id, str(peer.device_id), kind=self._kind(frame.routing.message_type)
        )
        self._wake(msg.subscription_id)
        return None

    def publish_device_event(self, device_id: DeviceId, online: bool) -> None:
        """A device went online or offline (as this device sees it): tell 9.7 subscribers."""
        key = str(device_id)
        if self._device_state.get(key) == online:
            return
        self._device_state[key] = online
        if not online and len(self._device_state) > 4096:
            self._device_state.pop(key, None)
        self._publish(DEVICE, key, online)

    # --- 10.5 sessions --------------------------------------------------------------------
    async def _on_create_session(self, frame: Frame, peer: PeerInfo) -> SoapMessage:
        msg = frame.message
        assert isinstance(msg, ss.CreateSessionRequest)

        def answer(
            code: int = ReturnCode.SUCCESS, reason: str = "", session_id: int | None = None
        ) -> SoapMessage:
            return ss.CreateSessionResponse(
                Status(msg.sequence_id, code, reason), msg.service_id, msg.client_id, session_id
            )

        service = self._services.get(msg.service_id)
        if service is None:
            return answer(ReturnCode.NOT_FOUND, "no such service")
        allowed = type(service).security_ids
        if allowed and msg.user.service_security_id not in allowed:
            return answer(ReturnCode.FORBIDDEN, "ServiceSecurityId not accepted by this service")
        if self.authorize is not None:
            ok = self.authorize(peer, service, msg.user)
            if inspect.isawaitable(ok):
                ok = await ok
            if not ok:
                return answer(ReturnCode.FORBIDDEN, "not authorised for this service")
        try:
            session = self.sessions.create(
                str(peer.device_id), msg.client_id, msg.service_id, self.clock(), msg.user.source_user_id,
                open_from="" if peer.secure else peer.address or "?",
            )
        except IGRSError as exc:
            return answer(exc.return_code, exc.reason)
        return answer(session_id=session.session_id)

    async def _on_destroy_session(self, frame: Frame, peer: PeerInfo) -> None:
        msg = frame.message
        assert isinstance(msg, ss.DestroySessionNotify)
        if msg.from_service:
            raise _fail(ReturnCode.BAD_MESSAGE, "DestroySessionNotify from a service sent to the service side")
        if msg.session_id is None:  # a session known by its id pair (sessions.md §1)
            session = self._session(peer, msg.client_id, msg.service_id)
        else:
            found = self.sessions.get(msg.session_id)
            if found is None or found.client_id != msg.client_id or found.service_id != msg.service_id:
                raise _fail(ReturnCode.NOT_FOUND, "no such session")
            session = self._session(peer, msg.client_id, msg.service_id, msg.session_id)
        self.sessions.destroy(str(peer.device_id), session.session_id)
        self._end_session_subscriptions(session.session_id)
        return None

    def _session(self, peer: PeerInfo, client_id: int, service_id: int,
                 session_id: int | None = None) -> Session:
        """The session a request names; one made in a secure pipe is not reachable from outside
        any (a claimed device id and a guessed client id must not reach a paired peer's session)."""
        session = self.sessions.lookup(str(peer.device_id), client_id, service_id, session_id)
        if not peer.secure and not session.address:
            raise _fail(ReturnCode.NOT_FOUND, "no such session")
        return session

    def _end_session_subscriptions(self, session_id: int) -> None:
        gone = [sid for sid, sess in self._sub_session.items() if sess == session_id]
        for sid in gone:
            self._sub_session.pop(sid, None)
        for sub in self.subscriptions.drop(gone):
            self._wake(sub.subscription_id)

    async def _on_apply_key(self, frame: Frame, peer: PeerInfo) -> SoapMessage:
        msg = frame.message
        assert isinstance(msg, ss.ApplySessionKeyRequest)

        def answer(code: int = ReturnCode.SUCCESS, reason: str = "", kcv: bytes = b"") -> SoapMessage:
            return ss.ApplySessionKeyResponse(
                Status(msg.sequence_id, code, reason), msg.service_id, msg.client_id, msg.session_id, kcv
            )

        try:
            session = self.sessions.lookup(str(peer.device_id), msg.client_id, msg.service_id, msg.session_id)
            session.accept_sequence(msg.sequence_id)
        except IGRSError as exc:
            return answer(exc.return_code, exc.reason)
        if peer.key_schedule is None:
            return answer(ReturnCode.PRECONDITION_FAILED, "no secure pipe key material for session keys")
        try:
            key = peer.key_schedule.derive(
                client_id=msg.client_id, service_id=msg.service_id, nonce=msg.nonce, length=msg.key_length
            )
        except IGRSError as exc:
            return answer(exc.return_code, exc.reason)
        except ValueError as exc:
            return answer(ReturnCode.BAD_MESSAGE, str(exc)[:200])
        session.key = key
        from igrs.core.security.session_keys import key_check_value

        return answer(kcv=key_check_value(key))

    async def _on_transfer_key(self, frame: Frame, peer: PeerInfo) -> SoapMessage:
        msg = frame.message
        assert isinstance(msg, ss.TransferSessionKeyRequest)

        def answer(code: int = ReturnCode.SUCCESS, reason: str = "") -> SoapMessage:
            return ss.TransferSessionKeyResponse(Status(msg.sequence_id, code, reason), msg.session_id)

        if msg.from_service:
            return answer(ReturnCode.BAD_MESSAGE, "TransferSessionKeyRequest from a service sent to a service")
        try:
            session = self.sessions.lookup(str(peer.device_id), msg.client_id, msg.service_id, msg.session_id)
            session.accept_sequence(msg.sequence_id)
        except IGRSError as exc:
            return answer(exc.return_code, exc.reason)
        if peer.key_schedule is None:
            return answer(ReturnCode.PRECONDITION_FAILED, "no secure pipe key material for session keys")
        try:
            session.key = peer.key_schedule.unwrap(
                msg.wrapped_key, client_id=msg.client_id, service_id=msg.service_id, context=msg.context
            )
        except IGRSError as exc:
            return answer(exc.return_code, exc.reason)
        except ValueError as exc:
            return answer(ReturnCode.BAD_MESSAGE, str(exc)[:200])
        return answer()

    # --- 10.6 invocation ------------------------------------------------------------------
    async def _on_invoke(self, frame: Frame, peer: PeerInfo) -> SoapMessage:
        msg = frame.message
        assert isinstance(msg, ss.InvokeServiceRequest)

        def answer(code: int = ReturnCode.SUCCESS, reason: str = "", results: NamedValues = ()) -> SoapMessage:
            return ss.InvokeServiceResponse(
                Status(msg.sequence_id, code, reason), msg.service_id, msg.client_id, results
            )

        service = self._services.get(msg.service_id)
        if service is None:
            return answer(ReturnCode.NOT_FOUND, "no such service")
        try:
            session = self._session(peer, msg.client_id, msg.service_id, msg.session_id)
            session.accept_sequence(msg.sequence_id)
            session.last_used = self.clock()
            action, arguments = msg.action, msg.arguments
            if msg.call is not None:  # RPC style: no ActionName (specs/services.md §3.1)
                action, arguments = resolve_call(type(service).igrs_actions, msg.call, STANDARD)
            if action == FIND:
                results = self._find(service, arguments)
            elif action in (SUBSCRIBE, RENEW, UNSUBSCRIBE):
                results = self._attribute_subscription(
                    action, service, msg.service_id, session.session_id, peer, arguments
                )
            else:
                token = current_peer.set(peer)
                try:
                    value = await service.invoke(action, arguments)
                finally:
                    current_peer.reset(token)
                results = () if value is None else (("result", value),)
        except IGRSError as exc:
            return answer(exc.return_code, exc.reason)
        except Exception:
            log.exception("action %s of service %s failed", msg.action or "(RPC style)", msg.service_id)
            return answer(ReturnCode.INTERNAL_ERROR, "the action failed")
        try:  # build the body now, once: a result that cannot be carried is a 500, not a crash later
            return BuiltMessage.of(answer(results=results))
        except (TypeError, ValueError) as exc:
            log.warning("action %s returned an unencodable result: %s", msg.action, exc)
            return answer(ReturnCode.INTERNAL_ERROR, "the action returned a value that cannot be carried")

    def _find(self, service: Service, arguments: NamedValues) -> NamedValues:
        args = dict(arguments)
        extra = set(args) - {"names"}
        if extra:
            raise _fail(
                ReturnCode.BAD_MESSAGE, f"findServiceAttribute: unexpected argument {sorted(extra)[0]!r}"
            )
        names = _arg(args, "names", list, required=False) or list(service.igrs_attributes)
        out: list[tuple[str, Value]] = []
        for name in names:
            if not isinstance(name, str):
                raise _fail(ReturnCode.BAD_MESSAGE, "attribute names must be strings")
            if name in service.igrs_attributes:
                out.append((name, service.attribute_value(name)))
            elif name in sv.STANDARD_ATTRIBUTES:
                out.append((name, self._standard_attribute(service, name)))
            else:
                raise _fail(ReturnCode.NOT_FOUND, f"no attribute {name[:64]!r}")
        return tuple(out)

    def _standard_attribute(self, service: Service, name: str) -> Value:
        sid = next(k for k, v in self._services.items() if v is service)
        values: dict[str, Value] = {
            "ServiceId": sid,
            "ServiceName": self._name(service),
            "ServiceType": type(service).service_type,
            "ServiceSecurityId": list(type(service).security_ids),
        }
        return values[name]

    def _attribute_subscription(
        self,
        op: str,
        service: Service,
        service_id: int,
        session_id: int,
        peer: PeerInfo,
        arguments: NamedValues,
    ) -> NamedValues:
        if not peer.secure:  # an open session: notifications go out sealed only (pipes.md §1)
            raise _fail(ReturnCode.PRECONDITION_FAILED,
                        f"{op}: attribute events need a secure pipe (pair first)")
        args = dict(arguments)
        allowed = {
            SUBSCRIBE: {"names", "location", "expirationTime"},
            RENEW: {"subscriptionId", "location", "expirationTime"},
            UNSUBSCRIBE: {"subscriptionId"},
        }[op]
        extra = set(args) - allowed
        if extra:
            raise _fail(ReturnCode.BAD_MESSAGE, f"{op}: unexpected argument {sorted(extra)[0]!r}")
        subscriber = str(peer.device_id)
        now = self.clock()
        if op == UNSUBSCRIBE:
            sid = _arg(args, "subscriptionId", int)
            self._check_session_owns(sid, session_id)
            self.subscriptions.unsubscribe(sid, subscriber, kind=ATTRIBUTE)
            self._sub_session.pop(sid, None)
            self._wake(sid)
            return ()
        location = _arg(args, "location", str)
        expiry_text = _arg(args, "expirationTime", str, required=False)
        try:
            expiry = ev.parse_time(expiry_text).timestamp() if expiry_text else None
        except ProtocolError as exc:
            raise _fail(ReturnCode.BAD_MESSAGE, exc.reason) from None
        if op == RENEW:
            sid = _arg(args, "subscriptionId", int)
            self._check_session_owns(sid, session_id)
            sub = self.subscriptions.renew(sid, subscriber, peer.address, location, expiry, now, kind=ATTRIBUTE)
        else:
            names = _arg(args, "names", list, required=False) or []
            notifiable = [n for n, a in service.igrs_attributes.items() if a.notifiable]
            for name in names:
                if not isinstance(name, str):
                    raise _fail(ReturnCode.BAD_MESSAGE, "attribute names must be strings")
                if name not in service.igrs_attributes:
                    raise _fail(ReturnCode.NOT_FOUND, f"no attribute {name[:64]!r}")
                if name not in notifiable:
                    raise _fail(ReturnCode.BAD_MESSAGE, f"attribute {name[:64]!r} is not notifiable")
            topics = names or notifiable
            sub = self.subscriptions.subscribe(
                ATTRIBUTE, subscriber, peer.address, location, topics, expiry, now, service_id=service_id
            )
            self._sub_session[sub.subscription_id] = session_id
            self.subscriptions.push(sub, [(n, service.attribute_value(n)) for n in topics], now)
            self._start_pump(sub)
        return (
            ("subscriptionId", sub.subscription_id),
            ("terminationTime", ev.format_time(ev.from_timestamp(sub.expires_at))),
        )

    def _check_session_owns(self, sid: int, session_id: int) -> None:
        if self._sub_session.get(sid, session_id) != session_id:
            raise _fail(ReturnCode.NOT_FOUND, "no such subscription in this session")

    # --- eventing -------------------------------------------------------------------------
    def _on_attribute(self, service_id: int, name: str, value: object) -> None:
        self._publish(ATTRIBUTE, name, value, service_id=service_id)

    def _publish(self, kind: str, name: str, value: object, *, service_id: int = 0) -> None:
        now = self.clock()
        woken = self.subscriptions.publish(kind, name, value, now, service_id=service_id)
        if kind == SERVICE:  # service-type targets
            for sub in self.subscriptions:
                if (
                    sub.kind == SERVICE
                    and not sub.wants(name)
                    and self._wants_type(sub, value)
                    and self.subscriptions.push(sub, ((name, value),), now)
                ):
                    woken.append(sub.subscription_id)
        for sid in woken:
            self._wake(sid)

    def expire(self, now: float | None = None) -> list[Subscription]:
        """Drop expired subscriptions (and end those too slow for too long); call now and then."""
        now = self.clock() if now is None else now
        for session in self.sessions.expire_open(now):  # open sessions end when idle
            self._end_session_subscriptions(session.session_id)
        gone = self.subscriptions.expire(now)
        for sub in gone:
            self._sub_session.pop(sub.subscription_id, None)
        for sid in list(self._pumps):
            self._wake(sid)
        return gone

    def drop_peer(self, device_id: DeviceId) -> None:
        """The pipe to a peer is gone: its sessions and subscriptions end (no notices)."""
        for session in self.sessions.drop_peer(str(device_id)):
            self._end_session_subscriptions(session.session_id)
        for sub in self.subscriptions.drop_subscriber(str(device_id)):
            self._sub_session.pop(sub.subscription_id, None)
            self._wake(sub.subscription_id)

    def _wake(self, sid: int) -> None:
        pump = self._pumps.get(sid)
        if pump is not None:
            pump[1].set()

    def _start_pump(self, sub: Subscription) -> None:
        if self._send is None:
            log.warning(
                "no send callable: notifications of subscription %s are not delivered", sub.subscription_id
            )
            return
        wake = asyncio.Event()
        wake.set()
        task = asyncio.get_running_loop().create_task(self._pump(sub.subscription_id, wake))
        self._pumps[sub.subscription_id] = (task, wake)
        sid = sub.subscription_id

        def forget(_task: asyncio.Task[None]) -> None:
            self._pumps.pop(sid, None)

        task.add_done_callback(forget)

    def _notification(self, sub: Subscription, batch: Batch) -> SoapMessage:
        if sub.kind == ATTRIBUTE:
            return ss.SendNotification(
                sub.service_id,
                sub.subscription_id,
                batch.sequence,
                tuple((n, v) for n, v in batch.changes),  # type: ignore[misc]
                batch.coalesced,
                batch.ended,
            )
        if sub.kind == DEVICE:
            return ev.NotifyDeviceEvent(
                sub.subscription_id,
                batch.sequence,
                tuple(ev.DeviceEvent(DeviceId.parse(n), bool(v)) for n, v in batch.changes),
                batch.coalesced,
                batch.ended,
            )
        events = []
        for n, v in batch.changes:
            assert isinstance(v, tuple)
            online, stype, name = v
            events.append(ev.ServiceEvent(int(n), str(stype), bool(online), str(name)))
        return ev.NotifyServiceEvent(
            sub.subscription_id, batch.sequence, tuple(events), batch.coalesced, batch.ended
        )

    async def _deliver(self, target: str | DeviceId, message: SoapMessage,
                       subscriber: str | None = None) -> None:
        assert self._send is not None
        async with asyncio.timeout(self.notify_timeout):
            await self._send(target, message, subscriber)

    async def _pump(self, sid: int, wake: asyncio.Event) -> None:
        """Deliver one subscription's batches in order, one in flight at a time."""
        table = self.subscriptions
        while True:
            sub = table.get(sid)
            if sub is None:
                return
            now = self.clock()
            batch = table.take(sid, now)
            if batch is None:
                wake.clear()
                timeout = max(0.0, sub.retry_at - now) if sub.inflight is not None and sub.failures else None
                await wait_event(wake, timeout)
                continue
            try:
                await self._deliver(sub.location, self._notification(sub, batch), sub.subscriber)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.info(
                    "notification %s/%s to %s failed: %s",
                    sid,
                    batch.sequence,
                    sub.location,
                    exc or type(exc).__name__,
                )
                if table.failed(sid, self.clock()):
                    self._sub_session.pop(sid, None)
                    return
            else:
                table.delivered(sid)

    async def aclose(self) -> None:
        """Stop every notification pump (sessions and subscriptions are simply forgotten)."""
        tasks = [t for t, _ in self._pumps.values()]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._pumps.clear()


__all__ = ["PeerInfo", "Send", "ServiceHandler", "ServiceHost", "current_peer"]
