"""Deliberately broken reference devices: each is ``igrs.Device`` with ONE rule broken, and
names the catalogue case that must catch it (``CAUGHT_BY``). The conformance tests run
the suite against each and expect that case to fail — the proof that the suite can fail.

Never use these outside tests and demos of the suite.
"""

from __future__ import annotations

import asyncio
from typing import Any, ClassVar

from igrs.constants import SOAP12_DRAFT_NS
from igrs.core.access import Access, access_of
from igrs.core.discovery import Action, SendMulticast, SendUnicast
from igrs.net.http import Reply
from igrs.net.httpserver import HttpAnswer, HttpRequest
from igrs.node.device import Device, RequestContext
from igrs.wire import description as ddesc
from igrs.wire import isdp, messages
from igrs.wire.catalogue import CATALOGUE
from igrs.wire.messages import Frame, Status


class BrokenDevice(Device):
    RULE: ClassVar[str] = ""
    CAUGHT_BY: ClassVar[tuple[str, ...]] = ()


class LateSearchResponseDevice(BrokenDevice):
    """Answers searches MX + 2.5 s late (isdp.md §9 rule 7)."""

    RULE = "search responses are sent within MX"
    CAUGHT_BY = ("DISC-002",)
    EXTRA_DELAY = 2.5

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._late: set[asyncio.Task[None]] = set()

    async def _execute(self, actions: list[Action]) -> None:
        answers = [a for a in actions if isinstance(a, SendUnicast) and a.payload.startswith(b"HTTP/1.1 200")]
        await super()._execute([a for a in actions if a not in answers])
        for a in answers:
            task = asyncio.create_task(self._send_late(a))
            self._late.add(task)
            task.add_done_callback(self._late.discard)

    async def _send_late(self, action: Action) -> None:
        await asyncio.sleep(1 + self.EXTRA_DELAY)  # the suite searches with MX 1
        await super()._execute([action])

    async def stop(self) -> None:
        for task in list(self._late):
            task.cancel()
        await super().stop()


class InvalidDescriptionDevice(BrokenDevice):
    """Serves a description without the required <manufacturer> at /IGRS/description.xml."""

    RULE = "the description is valid against device-description.xsd"
    CAUGHT_BY = ("DESC-001",)

    def description_bytes(self) -> bytes:
        return ddesc.to_bytes(self.description).replace(
            f"<manufacturer>{self.manufacturer}</manufacturer>".encode(), b"")


class WrongAcknowledgeIdDevice(BrokenDevice):
    """Answers GetDeviceDescriptionRequest with AcknowledgeId = SequenceId + 1."""

    RULE = "AcknowledgeId equals the request's SequenceId"
    CAUGHT_BY = ("FRM-001",)

    async def _on_get_description(self, frame: Frame, ctx: RequestContext) -> Reply:
        ack = (frame.routing.sequence_id + 1) & 0xFFFFFFFF or 1
        return messages.GetDeviceDescriptionResponse(Status(ack), self.description)


class UnknownTypeAcceptedDevice(BrokenDevice):
    """Answers any message type it does not know with a bare 200."""

    RULE = "an unknown message type is refused with 400"
    CAUGHT_BY = ("FRM-003",)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        inner = self.http.answer

        async def answer(request: HttpRequest) -> HttpAnswer:
            mtype = next((v for k, v in request.headers if k.lower().endswith("-igrsmessagetype")), "")
            if request.path == "/IGRS" and mtype and mtype not in CATALOGUE:
                return HttpAnswer(200, [])
            return await inner(request)

        self.http.answer = answer  # type: ignore[method-assign]


class UnsealedAcceptedDevice(BrokenDevice):
    """Serves secure-pipe-only messages (sessions, invocation) outside any pipe."""

    RULE = "a message that needs a secure pipe is refused unsealed (401)"
    CAUGHT_BY = ("SEC-001",)

    async def _dispatch(self, frame: Frame, address: str) -> Reply:
        if access_of(frame.routing.message_type) is not Access.OPEN and not hasattr(frame.message, "pipe_id"):
            return await self._handler(frame)(frame, RequestContext(address))
        return await super()._dispatch(frame, address)


class NoByebyeDevice(BrokenDevice):
    """Stops without a DeviceOfflineAdvertisement."""

    RULE = "a device says byebye on a clean stop"
    CAUGHT_BY = ("DISC-006",)

    async def _execute(self, actions: list[Action]) -> None:
        await super()._execute([a for a in actions
                                if not (isinstance(a, SendMulticast) and b"isdp:byebye" in a.payload)])


class VersionAs400Device(BrokenDevice):
    """Answers an unsupported IGRS major version with 400 instead of 505 (ezbox's way)."""

    RULE = "an unsupported IGRS major version is refused with 505"
    CAUGHT_BY = ("FRM-004",)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        inner = self.http._error

        def error(ack: int, code: int, reason: str, target: Any) -> HttpAnswer:
            return inner(ack, 400 if code == 505 else code, reason, target)

        self.http._error = error  # type: ignore[method-assign]


class WedgedByGarbageDevice(BrokenDevice):
    """Stops answering searches after the first datagram it cannot decode."""

    RULE = "malformed datagrams do not stop the device answering searches"
    CAUGHT_BY = ("DISC-005",)
    wedged = False

    def _on_datagram(self, data: bytes, source: tuple[str, int], interface: str) -> None:
        if self.wedged:
            return
        try:
            isdp.decode(data)
        except Exception:
            self.wedged = True
            return
        super()._on_datagram(data, source, interface)


class ReplayAcceptedDevice(BrokenDevice):
    """Forgets the replay window of a secure pipe before each sealed message: a replayed
    record opens again (pipes.md §3)."""

    RULE = "a replayed sealed request is refused"
    CAUGHT_BY = ("SEC-003",)

    async def _dispatch(self, frame: Frame, address: str) -> Reply:
        from igrs.core.security.channel import ReplayWindow
        from igrs.wire.bodies import pipes as pb

        if isinstance(frame.message, pb.SecureMessage):
            record = self.pipes.get(frame.message.pipe_id, frame.routing.source, self._now())
            channel = record.pipe.channel
            if channel is not None:
                channel._window = ReplayWindow(channel._window.size)
        return await super()._dispatch(frame, address)


class OffSubnetAnsweredDevice(BrokenDevice):
    """Answers searches from any source, on-link or not (isdp.md §9 rule 1: anti-reflection)."""

    RULE = "searches from off-subnet sources are ignored"
    CAUGHT_BY = ("DISC-008",)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        import dataclasses
        import ipaddress

        super().__init__(*args, **kwargs)
        responder = self.discovery._responder
        inner = responder.respond
        anywhere = ipaddress.ip_network("0.0.0.0/0")

        def respond(answers: Any, *, iface: Any, **kw: Any) -> None:
            if iface is not None and iface.family == 4:  # every IPv4 source counts as on-link
                iface = dataclasses.replace(iface, network=anywhere)
            inner(answers, iface=iface, **kw)

        responder.respond = respond  # type: ignore[method-assign]


class NoReorderingDevice(BrokenDevice):
    """Keeps a replay window of one record: any reordering of sealed requests is refused
    (security.md §5: a window of 256 tolerates moderate reordering)."""

    RULE = "reordered sealed records within the replay window are accepted"
    CAUGHT_BY = ("SEC-004",)

    async def _dispatch(self, frame: Frame, address: str) -> Reply:
        from igrs.core.security.channel import ReplayWindow
        from igrs.wire.bodies import pipes as pb

        if isinstance(frame.message, pb.SecureMessage):
            channel = self.pipes.get(frame.message.pipe_id, frame.routing.source, self._now()).pipe.channel
            if channel is not None and channel._window.size != 1:
                window = ReplayWindow(1)
                if channel._window.highest >= 0:
                    window.accept(channel._window.highest)
                channel._window = window
        return await super()._dispatch(frame, address)


class TamperDropsPipeDevice(BrokenDevice):
    """Closes the secure pipe when a sealed record fails to open: anyone who can send one
    forged datagram cuts the pipe (pipes.md §3: a record that fails to open changes nothing)."""

    RULE = "a sealed record that fails to open changes nothing"
    CAUGHT_BY = ("SEC-005",)

    async def _dispatch(self, frame: Frame, address: str) -> Reply:
        from igrs.errors import SecurityError
        from igrs.wire.bodies import pipes as pb

        try:
            return await super()._dispatch(frame, address)
        except SecurityError:
            if isinstance(frame.message, pb.SecureMessage):
                self.pipes.detach(frame.message.pipe_id, frame.routing.source)
            raise


class UnknownServiceSessionDevice(BrokenDevice):
    """Opens a session for any TargetServiceId, listed or not (sessions.md §4: 404)."""

    RULE = "a session with an unknown service is refused 404"
    CAUGHT_BY = ("SES-002",)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        host = self.services
        inner = self.handlers["CreateSessionRequest"]

        async def create(frame: Frame, ctx: RequestContext) -> Any:
            from dataclasses import replace

            msg = frame.message
            if msg.service_id in host._services or not host._services:
                return await inner(frame, ctx)
            first = next(iter(host._services))  # quietly bound to the first service instead
            reply = await inner(replace(frame, message=replace(msg, service_id=first)), ctx)
            return replace(reply, service_id=msg.service_id)

        self.handlers["CreateSessionRequest"] = create


class BadArgumentsAs500Device(BrokenDevice):
    """Answers wrongly typed or missing arguments with 500 instead of 400 (services.md §3)."""

    RULE = "wrongly typed or missing arguments are refused 400"
    CAUGHT_BY = ("SES-004",)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        inner = self.handlers["InvokeServiceRequest"]

        async def invoke(frame: Frame, ctx: RequestContext) -> Any:
            from dataclasses import replace

            reply = await inner(frame, ctx)
            status = getattr(reply, "status", None)  # none on a success's already built body
            if status is not None and status.return_code == 400:
                return replace(reply, status=replace(status, return_code=500, reason="the action failed"))
            return reply

        self.handlers["InvokeServiceRequest"] = invoke


class NeverExpiresDevice(BrokenDevice):
    """Never removes expired event subscriptions: one past its TerminationTime can still be
    renewed (events.md §3)."""

    RULE = "a subscription ends at its TerminationTime"
    CAUGHT_BY = ("EVT-004",)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.services.subscriptions.expire = lambda now: []  # type: ignore[method-assign]


class CallbackAnywhereDevice(BrokenDevice):
    """Accepts a callback Location on any host: a subscriber can aim notifications at a third
    party (events.md §4, CallStranger CVE-2020-12695)."""

    RULE = "a callback Location must point back at the subscriber"
    CAUGHT_BY = ("EVT-006",)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        from urllib.parse import urlsplit

        super().__init__(*args, **kwargs)
        table = self.services.subscriptions
        inner = table.subscribe

        def subscribe(kind: str, subscriber: str, address: str, location: str, *rest: Any, **kw: Any) -> Any:
            try:
                host = urlsplit(location).hostname or address
            except ValueError:
                host = address
            return inner(kind, subscriber, host, location, *rest, **kw)

        table.subscribe = subscribe  # type: ignore[method-assign]


class ZeroRandomPinDevice(BrokenDevice):
    """Its PIN generator is fed zero bytes (a broken random source): the PIN is always 000000,
    whatever the display says (security.md §4: a fresh random PIN per pairing)."""

    RULE = "the pairing PIN is random"
    CAUGHT_BY = ("SEC-006",)

    def _pin_host_or_none(self) -> Any:
        from igrs.core.security import PinPairingHost

        if self._pin_host is None and self.on_pin is not None:
            self._pin_host = PinPairingHost(self.identity, name=self.name, urandom=lambda n: bytes(n))
        return self._pin_host


class PrivateDialectDevice(BrokenDevice):
    """Understands only this stack's own dialect: a request in the public framing -- a
    ``<Session>`` body, the 2002/12 SOAP namespace of ezbox -- is refused with 400."""

    RULE = "a request in the public (ezbox) framing is understood"
    CAUGHT_BY = ("SES-007",)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        inner = self.http.answer

        async def answer(request: HttpRequest) -> HttpAnswer:
            public = b"<Session" in request.body or SOAP12_DRAFT_NS.encode() in request.body
            if request.path == "/IGRS" and public:
                return self.http._error(0, 400, "not a body this device reads", None)
            return await inner(request)

        self.http.answer = answer  # type: ignore[method-assign]


BROKEN_DEVICES: tuple[type[BrokenDevice], ...] = (
    LateSearchResponseDevice, InvalidDescriptionDevice, WrongAcknowledgeIdDevice,
    UnknownTypeAcceptedDevice, UnsealedAcceptedDevice, NoByebyeDevice, VersionAs400Device,
    WedgedByGarbageDevice, ReplayAcceptedDevice, NoReorderingDevice, TamperDropsPipeDevice,
    UnknownServiceSessionDevice, BadArgumentsAs500Device, NeverExpiresDevice, CallbackAnywhereDevice,
    ZeroRandomPinDevice, PrivateDialectDevice,
)
NAMESPACE_ONLY: tuple[type[BrokenDevice], ...] = (OffSubnetAnsweredDevice,)  # needs a second subnet
