"""``ServiceAgent``: the client agent of the resource-sharing manager (clauses 9.7, 10.2-10.6).

Transport-agnostic: built on an injected ``async request(message) -> Frame`` that sends one
request to one device (over its pipe) and returns the decoded answer. Notifications for
this agent's subscriptions come back through :meth:`ServiceAgent.deliver`, which the network
glue calls for every SendNotification / NotifyDeviceEvent / NotifyServiceEvent it receives.

    agent = ServiceAgent(request, location="http://192.168.1.30:3880/IGRS")
    async with agent.session("urn:IGRS:ServiceType:Light:1") as light:
        print(await light.SetLevel(level=40))        # typed result
        print(await light.get("level"))              # findServiceAttribute
        async with light.subscribe("level") as changes:
            async for change in changes:             # initial value first, then changes
                print(change.name, change.value)
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Generic, Self, TypeVar

from igrs.constants import AGENT_EVENT_QUEUE, DEFAULT_SUBSCRIPTION, ReturnCode
from igrs.core.sessions import ClientSequencer
from igrs.errors import IGRSError, ProtocolError, RemoteError
from igrs.wire.answers import expect_answer, raise_for_status
from igrs.wire.bodies import events as ev
from igrs.wire.bodies import services as sv
from igrs.wire.bodies import sessions as ss
from igrs.wire.bodies.sessions import Value
from igrs.wire.ids import UINT32_MAX, DeviceId, ServiceType
from igrs.wire.isdp import SearchTarget
from igrs.wire.messages import Frame, SoapMessage

log = logging.getLogger(__name__)

Request = Callable[[SoapMessage], Awaitable[Frame | None]]  # None: a notify was accepted
Location = str | Callable[[], str]
E = TypeVar("E")


class SubscriptionEnded(IGRSError):
    """The service ended a subscription (slow subscriber, service removed, ...)."""

    return_code = ReturnCode.PRECONDITION_FAILED


class DeviceLost(SubscriptionEnded):
    """The device went away — its goodbye (byebye) was heard, or its pipe stopped answering
    the keep-alive — so none of its subscriptions can go on (specs/events.md §8)."""

    return_code = ReturnCode.NOT_FOUND


@dataclass(frozen=True, slots=True)
class Change:
    """One notification item: an attribute change, or a device/service online state."""

    name: str
    value: Any
    sequence: int  # EventSequence of the notification that carried it
    coalesced: bool = False  # intermediate values before this one were dropped


class EventStream(Generic[E]):
    """Async iterator over one subscription's notifications; also an async context manager
    (leaving it unsubscribes). Subscribes on first use, renews at half the lifetime. After the
    changes already queued, it raises ``SubscriptionEnded`` when the service ends the
    subscription and ``DeviceLost`` when the device goes away (specs/events.md §8); it stops
    (StopAsyncIteration) once closed."""

    def __init__(
        self,
        agent: ServiceAgent,
        subscribe: Callable[[], Awaitable[tuple[int, float]]],
        renew: Callable[[int], Awaitable[float]],
        unsubscribe: Callable[[int], Awaitable[None]],
        convert: Callable[[Change], E],
    ) -> None:
        self._agent = agent
        self._subscribe, self._renew, self._unsubscribe = subscribe, renew, unsubscribe
        self._convert = convert
        self.subscription_id: int | None = None
        self.expires_at = 0.0
        self._items: deque[E] = deque()
        self._ready = asyncio.Event()
        self._next_seq = 0
        self._lost = False
        self._ended: SubscriptionEnded | None = None
        self._closed = False
        self._started = False
        self._renewer: asyncio.Task[None] | None = None

    async def start(self) -> Self:
        if not self._started and not self._closed:
            self._started = True
            self._agent._pending_subscribes += 1
            try:
                sid, expires = await self._subscribe()
            finally:
                self._agent._pending_subscribes -= 1
            self.subscription_id, self.expires_at = sid, expires
            self._agent._streams[sid] = self
            for frame in self._agent._early.pop(sid, []):
                self._on_notification(frame)
            self._renewer = asyncio.get_running_loop().create_task(self._renew_loop())
        return self

    async def _renew_loop(self) -> None:
        while self.subscription_id is not None:
            await asyncio.sleep(max(1.0, (self.expires_at - self._agent.clock()) / 2))
            try:
                self.expires_at = await self._renew(self.subscription_id)
            except IGRSError as exc:
                log.info("renewing subscription %s failed: %s", self.subscription_id, exc.reason)
                self._finish(f"renewal failed: {exc.reason}")
                return

    def _on_notification(self, frame: Frame) -> None:
        msg = frame.message
        seq = msg.sequence  # type: ignore[attr-defined]
        if seq < self._next_seq and self._next_seq - seq < 2**31:
            return  # a repeat (retried delivery): already seen
        coalesced = bool(msg.coalesced) or seq != self._next_seq  # type: ignore[attr-defined]
        self._next_seq = (seq + 1) & UINT32_MAX
        if isinstance(msg, ss.SendNotification):
            changes = [Change(n, v, seq) for n, v in msg.attributes]
        elif isinstance(msg, ev.NotifyDeviceEvent):
            changes = [Change(str(e.device_id), e.online, seq) for e in msg.events]
        else:
            assert isinstance(msg, ev.NotifyServiceEvent)
            changes = [Change(str(e.service_id), e, seq) for e in msg.events]
        for i, change in enumerate(changes):
            if (coalesced or self._lost) and i == 0:
                change = Change(change.name, change.value, seq, True)
                self._lost = False
            if len(self._items) >= AGENT_EVENT_QUEUE:
                self._items.popleft()  # the consumer is too slow: drop the oldest, flag the next
                self._lost = True
            self._items.append(self._convert(change))
        if msg.ended:
            self._finish(msg.ended)
        self._ready.set()

    def _finish(self, reason: str, error: type[SubscriptionEnded] = SubscriptionEnded) -> None:
        if self.subscription_id is not None:
            self._agent._streams.pop(self.subscription_id, None)
        self.subscription_id = None
        if self._ended is None:
            self._ended = error(reason)
        if self._renewer is not None and self._renewer is not asyncio.current_task():
            self._renewer.cancel()
        self._ready.set()

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> E:
        await self.start()
        while not self._items:
            if self._ended is not None:
                if self._closed:
                    raise StopAsyncIteration
                raise type(self._ended)(self._ended.reason)
            self._ready.clear()
            await self._ready.wait()
        return self._items.popleft()

    async def aclose(self) -> None:
        """Unsubscribe (best effort) and end the iteration."""
        if self._closed:
            return
        self._closed = True
        sid = self.subscription_id
        self._finish("closed")
        if sid is not None:
            with contextlib.suppress(IGRSError):
                await self._unsubscribe(sid)

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()


class ServiceProxy:
    """An open session with one service: call actions as methods."""

    def __init__(self, agent: ServiceAgent, info: sv.ServiceInfo, client_id: int,
                 session_id: int | None) -> None:
        self._agent = agent
        self.info = info
        self.client_id = client_id
        self.session_id = session_id  # None: the service gave none, the id pair names the session
        self._seq = ClientSequencer(agent._rng)
        self._streams: list[EventStream[Any]] = []
        self.closed = False

    def __getattr__(self, name: str) -> Callable[..., Awaitable[Any]]:
        if name.startswith("_"):
            raise AttributeError(name)

        async def call(**kwargs: Value) -> Any:  # = self.call(name, **kwargs), one coroutine less
            return (await self._invoke(name, tuple(kwargs.items()))).get("result")

        call.__name__ = name
        return call

    async def _invoke(self, action: str, arguments: tuple[tuple[str, Value], ...]) -> dict[str, Value]:
        if self.closed:
            raise IGRSError("session is closed", return_code=ReturnCode.NOT_FOUND)
        seq = self._seq.next()
        request = ss.InvokeServiceRequest(
            self.client_id, self.info.service_id, seq, action, arguments, self.session_id,
            rpc_style=self._agent.rpc_style,
        )
        try:
            reply = expect_answer(await self._agent.request(request), ss.InvokeServiceResponse)
        except BaseException:
            self._seq.abandon(seq)
            raise
        self._seq.complete(seq, reply.status.acknowledge_id)
        if reply.client_id != self.client_id or reply.service_id != self.info.service_id:
            raise ProtocolError("InvokeServiceResponse for another client or service")
        raise_for_status(reply.status, action)
        return dict(reply.results)

    async def call(self, action: str, /, **kwargs: Value) -> Any:
        """Invoke ``action`` with keyword arguments; returns its typed result (or None)."""
        return (await self._invoke(action, tuple(kwargs.items()))).get("result")

    async def get(self, *names: str) -> Any:
        """findServiceAttribute: one name -> its value; several (or none: all) -> a dict."""
        values = await self._invoke("findServiceAttribute", (("names", list(names)),) if names else ())
        return values.get(names[0]) if len(names) == 1 else values

    def subscribe(self, *names: str, duration: float = DEFAULT_SUBSCRIPTION) -> EventStream[Change]:
        """Attribute changes of ``names`` (none: every notifiable attribute), initial values first."""
        agent = self._agent

        def expiry() -> str:
            return ev.format_time(ev.from_timestamp(agent.clock() + duration))

        async def subscribe() -> tuple[int, float]:
            args: list[tuple[str, Value]] = [("location", agent.location()), ("expirationTime", expiry())]
            if names:
                args.insert(0, ("names", list(names)))
            r = await self._invoke("subscribe", tuple(args))
            return int(r["subscriptionId"]), ev.parse_time(str(r["terminationTime"])).timestamp()  # type: ignore[arg-type]

        async def renew(sid: int) -> float:
            r = await self._invoke(
                "renewSubscription",
                (("subscriptionId", sid), ("location", agent.location()), ("expirationTime", expiry())),
            )
            return ev.parse_time(str(r["terminationTime"])).timestamp()

        async def unsubscribe(sid: int) -> None:
            if not self.closed:
                await self._invoke("unsubscribe", (("subscriptionId", sid),))

        stream: EventStream[Change] = EventStream(agent, subscribe, renew, unsubscribe, lambda c: c)
        self._streams.append(stream)
        return stream

    async def close(self) -> None:
        """Unsubscribe everything and send DestroySessionNotify."""
        if self.closed:
            return
        for stream in self._streams:
            await stream.aclose()
        self.closed = True
        with contextlib.suppress(IGRSError):
            await self._agent.request(
                ss.DestroySessionNotify(self.client_id, self.info.service_id, self.session_id)
            )

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()


class ServiceAgent:
    """Client agent for the services of one remote device."""

    def __init__(
        self,
        request: Request,
        *,
        location: Location = "",
        device: DeviceId | None = None,
        user: ss.UserInfo | None = None,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.time,
        rpc_style: bool = False,
        listing: Callable[[], Awaitable[list[sv.ServiceInfo]]] | None = None,
    ) -> None:
        self.request = request
        # Where the services are listed when not by SearchServiceRequestOnDevice (which needs a
        # secure pipe): e.g. the device description, for services shared openly.
        self._listing = listing
        # Invocations without ActionName, the operation as InvokeArguments' child (services.md §3.1).
        self.rpc_style = rpc_style
        self._location = location
        self.device = device
        self.user = user or ss.UserInfo()
        self._rng = rng or random.SystemRandom()
        self.clock = clock
        self._streams: dict[int, EventStream[Any]] = {}
        self._early: dict[int, list[Frame]] = {}
        self._pending_subscribes = 0
        self._seq = ClientSequencer(self._rng)

    def location(self) -> str:
        loc = self._location() if callable(self._location) else self._location
        if not loc:
            raise IGRSError("no callback location configured for notifications")
        return loc

    # --- discovery and description ---------------------------------------------------------
    async def services(self, target: str | ServiceType | None = None) -> list[sv.ServiceInfo]:
        """SearchServiceRequestOnDevice: the services of the device (of one type if given)."""
        st = SearchTarget.all() if target is None else SearchTarget.parse(str(target))
        if self._listing is not None:
            wanted = st.service_type
            return [s for s in await self._listing()
                    if wanted is None or (ServiceType.parse(s.service_type).name == wanted.name
                                          and ServiceType.parse(s.service_type).version >= wanted.version)]
        reply = expect_answer(
            await self.request(sv.SearchServiceRequestOnDevice(st)), sv.SearchServiceResponseOnDevice
        )
        raise_for_status(reply.status, "SearchServiceRequestOnDevice")
        return list(reply.services)

    async def describe(self, service_id: int) -> sv.ServiceDescription:
        """GetServiceDescriptionRequest: the parsed WSDL of one service."""
        reply = expect_answer(
            await self.request(sv.GetServiceDescriptionRequest(service_id)), sv.GetServiceDescriptionResponse
        )
        raise_for_status(reply.status, "GetServiceDescriptionRequest")
        if reply.description is None:
            raise ProtocolError("service description missing")
        return reply.description

    async def find_service(self, service: str | ServiceType | int) -> sv.ServiceInfo:
        """The service ``service`` names (a type URN or a service id); RemoteError 404 if the
        device has none."""
        if isinstance(service, int):
            found = [s for s in await self.services() if s.service_id == service]
        else:
            found = await self.services(service)
        if not found:
            raise RemoteError(f"no service {service} on this device", return_code=ReturnCode.NOT_FOUND)
        return found[0]

    async def describe_service(self, service: str | ServiceType | int) -> sv.ServiceDescription:
        """The description of the service ``service`` names: its actions (arguments and their
        types) and attributes (``igrs services DEVICE SERVICE``, the relay's describe)."""
        return await self.describe((await self.find_service(service)).service_id)

    # --- sessions ---------------------------------------------------------------------------
    async def open(self, service: str | ServiceType | int, *, user: ss.UserInfo | None = None) -> ServiceProxy:
        """CreateSessionRequest with a service (by type URN or service id)."""
        info = await self.find_service(service)
        client_id = self._rng.randint(1, UINT32_MAX)
        seq = self._seq.next()
        request = ss.CreateSessionRequest(client_id, info.service_id, seq, user or self.user)
        try:
            reply = expect_answer(await self.request(request), ss.CreateSessionResponse)
        except BaseException:
            self._seq.abandon(seq)
            raise
        self._seq.complete(seq, reply.status.acknowledge_id)
        raise_for_status(reply.status, "CreateSessionRequest")
        if reply.client_id != client_id or reply.service_id != info.service_id:
            raise ProtocolError("CreateSessionResponse does not match the request")
        return ServiceProxy(self, info, client_id, reply.session_id)

    @contextlib.asynccontextmanager
    async def session(
        self, service: str | ServiceType | int, *, user: ss.UserInfo | None = None
    ) -> AsyncIterator[ServiceProxy]:
        """``async with agent.session("urn:IGRS:ServiceType:...") as svc: await svc.Action(...)``"""
        proxy = await self.open(service, user=user)
        try:
            yield proxy
        finally:
            await proxy.close()

    # --- device / service online events (9.7, 10.3) -----------------------------------------
    def _events(
        self, kind: str, targets: tuple[str, ...], duration: float, convert: Callable[[Change], E]
    ) -> EventStream[E]:
        device = kind == "device"
        sub_t = ev.SubscribeDeviceEventRequest if device else ev.SubscribeServiceEventRequest
        renew_t = ev.RenewSubscriptionDeviceEventRequest if device else ev.RenewSubscriptionServiceEventRequest
        resp_t = ev.SubscribeDeviceEventResponse if device else ev.SubscribeServiceEventResponse
        unsub_t = ev.UnSubscribeDeviceEventNotify if device else ev.UnSubscribeServiceEventNotify

        def expiry() -> Any:
            return ev.from_timestamp(self.clock() + duration)

        async def subscribe() -> tuple[int, float]:
            r = expect_answer(await self.request(sub_t(self.location(), expiry(), targets)), resp_t)
            raise_for_status(r.status, sub_t.message_type)
            assert r.subscription_id is not None and r.termination_time is not None
            return r.subscription_id, r.termination_time.timestamp()

        async def renew(sid: int) -> float:
            r = expect_answer(await self.request(renew_t(sid, self.location(), expiry())), resp_t)
            raise_for_status(r.status, renew_t.message_type)
            assert r.termination_time is not None
            return r.termination_time.timestamp()

        async def unsubscribe(sid: int) -> None:
            await self.request(unsub_t(sid))

        return EventStream(self, subscribe, renew, unsubscribe, convert)

    def device_events(
        self, *device_ids: DeviceId | str, duration: float = DEFAULT_SUBSCRIPTION
    ) -> EventStream[ev.DeviceEvent]:
        """9.7: online/offline of devices as the remote device sees them (all, or these)."""
        return self._events(
            "device",
            tuple(str(d) for d in device_ids),
            duration,
            lambda c: ev.DeviceEvent(DeviceId.parse(c.name), bool(c.value)),
        )

    def service_events(
        self, *targets: str | ServiceType | int, duration: float = DEFAULT_SUBSCRIPTION
    ) -> EventStream[ev.ServiceEvent]:
        """10.3: services of the remote device going online/offline (all, or these ids/types)."""
        return self._events("service", tuple(str(t) for t in targets), duration, lambda c: c.value)

    # --- the device going away --------------------------------------------------------------
    def device_lost(self, reason: str) -> None:
        """The device is gone (the glue heard its byebye, or the pipe's keep-alive failed):
        every subscription stream ends with ``DeviceLost(reason)`` once its queued changes are
        read. Nothing is sent to the device. Later subscriptions start afresh."""
        self._early.clear()
        for stream in list(self._streams.values()):
            stream._finish(reason, DeviceLost)

    # --- incoming notifications ---------------------------------------------------------------
    def deliver(self, frame: Frame) -> None:
        """Hand over a received SendNotification / NotifyDeviceEvent / NotifyServiceEvent.

        Raises IGRSError 404 for a subscription this agent does not hold (the glue answers the
        notify with that code), ProtocolError for another message or another sender."""
        msg = frame.message
        if not isinstance(msg, ss.SendNotification | ev.NotifyDeviceEvent | ev.NotifyServiceEvent):
            raise ProtocolError(f"{frame.routing.message_type} is not a notification")
        if self.device is not None and frame.routing.source != self.device:
            raise IGRSError("notification from another device", return_code=ReturnCode.FORBIDDEN)
        stream = self._streams.get(msg.subscription_id)
        if stream is None:
            if self._pending_subscribes:  # may arrive before the subscribe answer: keep a few
                early = self._early.setdefault(msg.subscription_id, [])
                if len(early) < 16 and len(self._early) < 64:
                    early.append(frame)
                    return
            raise IGRSError("no such subscription", return_code=ReturnCode.NOT_FOUND)
        stream._on_notification(frame)

    async def aclose(self) -> None:
        for stream in list(self._streams.values()):
            await stream.aclose()


__all__ = ["Change", "DeviceLost", "EventStream", "ServiceAgent", "ServiceProxy", "SubscriptionEnded"]
