"""Checks of ``specs/conformance/cases-services.toml``: services (10.2, 10.4), sessions and
invocation (10.5, 10.6) and event subscriptions (9.7, 10.3), all sealed in the secure pipe of
the run's ``TestPeer`` -- but SES-007 and SES-008, which speak ezbox's exact framing outside any
pipe (the public record's form) and find the services a device shares openly."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import TypeVar

from igrs.conformance.cases import frame_of, new_seq, post
from igrs.conformance.peer import TestPeer, expect_code, new_id, status_of
from igrs.conformance.runner import CaseFailed, CaseSkipped, Context, NotApplicable, check
from igrs.constants import IGRS_EXT_URI, IGRS_NS, IGRS_PATH, SOAP12_DRAFT_NS, SOAP_ENCODING_STYLE
from igrs.wire import isdp, messages
from igrs.wire.bodies import events as ev
from igrs.wire.bodies import services as sv
from igrs.wire.bodies import sessions as ss
from igrs.wire.messages import ErrorResponse, Frame

NO_SUCH_TYPE = "urn:IGRS:ServiceType:ConformanceNoSuchService:1"
EXPIRY_WATCH_LIMIT = 15.0  # s: EVT-004 skips a device that grants a longer minimum lifetime


T = TypeVar("T")


def _typed(frame: Frame, kind: type[T], what: str) -> T:
    """The answer as ``kind``; an ErrorResponse fails the case with its code."""
    if isinstance(frame.message, kind):
        return frame.message
    code, _, reason = status_of(frame)
    raise CaseFailed(f"{what}: answered {frame.routing.message_type} (ReturnCode {code} {reason})".rstrip())


def _ack(frame: Frame, seq: int, what: str) -> None:
    _, ack, _ = status_of(frame)
    if ack != seq:
        raise CaseFailed(f"{what}: AcknowledgeId {ack} != SequenceId {seq}")


async def _services(ctx: Context, peer: TestPeer) -> list[sv.ServiceInfo]:
    if "services" not in ctx.facts:
        frame = await peer.exchange(sv.SearchServiceRequestOnDevice(isdp.SearchTarget.all()), "isdp:all")
        reply = _typed(frame, sv.SearchServiceResponseOnDevice, "SearchServiceRequestOnDevice")
        expect_code(frame, 200, "SearchServiceRequestOnDevice isdp:all")
        _ack(frame, peer.last_seq, "SearchServiceRequestOnDevice")
        ctx.facts["services"] = list(reply.services)
    return ctx.facts["services"]


async def _a_service(ctx: Context) -> tuple[TestPeer, sv.ServiceInfo]:
    peer = await TestPeer.of(ctx)
    services = await _services(ctx, peer)
    if not services:
        raise NotApplicable("the device hosts no service")
    return peer, services[0]


class _Session:
    """A raw session (body SequenceIds chosen here, so cases can repeat or omit them)."""

    def __init__(self, peer: TestPeer, info: sv.ServiceInfo) -> None:
        self.peer, self.info = peer, info
        self.client_id = new_id()
        self.session_id = 0

    async def create(self) -> Frame:
        seq = new_seq()
        frame = await self.peer.exchange(ss.CreateSessionRequest(self.client_id, self.info.service_id, seq),
                                         f"service {self.info.service_id} {self.info.service_type}")
        reply = _typed(frame, ss.CreateSessionResponse, "CreateSessionRequest")
        expect_code(frame, 200, "CreateSessionRequest")
        _ack(frame, seq, "CreateSessionResponse")
        if reply.service_id != self.info.service_id or reply.client_id != self.client_id:
            raise CaseFailed(f"CreateSessionResponse names service {reply.service_id} / client "
                             f"{reply.client_id}, not {self.info.service_id} / {self.client_id}")
        if not reply.session_id:
            raise CaseFailed("CreateSessionResponse 200 without a SessionId")
        self.session_id = reply.session_id
        return frame

    async def invoke(self, action: str, arguments: ss.NamedValues = (), *, seq: int | None = None,
                     note: str = "") -> Frame:
        seq = new_seq() if seq is None else seq
        msg = ss.InvokeServiceRequest(self.client_id, self.info.service_id, seq, action, arguments,
                                      self.session_id or None)
        frame = await self.peer.exchange(msg, note or action)
        _ack(frame, seq, f"{action} answer")
        return frame

    async def destroy(self) -> None:
        await self.peer.notify(ss.DestroySessionNotify(self.client_id, self.info.service_id,
                                                       self.session_id, reason="conformance"))


async def _open_session(ctx: Context) -> _Session:
    peer, info = await _a_service(ctx)
    session = _Session(peer, info)
    await session.create()
    return session


async def _still_works(session: _Session, after: str) -> None:
    frame = await session.invoke("findServiceAttribute", note=f"the session after {after}")
    expect_code(frame, 200, f"findServiceAttribute after {after}")


# --- services ---------------------------------------------------------------------------------
@check("SVC-001")
async def svc_001(ctx: Context) -> None:
    peer = await TestPeer.of(ctx)
    services = await _services(ctx, peer)
    ids = [s.service_id for s in services]
    if len(set(ids)) != len(ids) or 0 in ids:
        raise CaseFailed(f"service ids not unique and non-zero: {ids}")
    for target, want in ([(services[0].service_type,
                           {s.service_id for s in services if _same_kind(s, services[0].service_type)})]
                         if services else []) + [(NO_SUCH_TYPE, set())]:
        frame = await peer.exchange(sv.SearchServiceRequestOnDevice(isdp.SearchTarget.parse(target)), target)
        reply = _typed(frame, sv.SearchServiceResponseOnDevice, f"search for {target}")
        expect_code(frame, 200, f"search for {target}")
        _ack(frame, peer.last_seq, f"search for {target}")
        got = {s.service_id for s in reply.services}
        if got != want:
            raise CaseFailed(f"a search for {target} listed services {sorted(got)}, expected {sorted(want)}")


def _same_kind(info: sv.ServiceInfo, wanted: str) -> bool:
    from igrs.wire.ids import ServiceType

    have, want = ServiceType.parse(info.service_type), ServiceType.parse(wanted)
    return have.name == want.name and have.version >= want.version


@check("SVC-002")
async def svc_002(ctx: Context) -> None:
    peer = await TestPeer.of(ctx)
    services = await _services(ctx, peer)
    for info in services:
        frame = await peer.exchange(sv.GetServiceDescriptionRequest(info.service_id),
                                    f"service {info.service_id}")
        reply = _typed(frame, sv.GetServiceDescriptionResponse, f"GetServiceDescription {info.service_id}")
        expect_code(frame, 200, f"GetServiceDescription {info.service_id}")
        _ack(frame, peer.last_seq, f"GetServiceDescription {info.service_id}")
        desc = reply.description
        if desc is None:
            raise CaseFailed(f"service {info.service_id}: 200 without a WSDL")
        if desc.service_type != info.service_type:
            raise CaseFailed(f"service {info.service_id}: WSDL targetNamespace {desc.service_type} != "
                             f"listed type {info.service_type}")
        if desc.service_id != info.service_id:
            raise CaseFailed(f"service {info.service_id}: WSDL ServiceId is {desc.service_id}")
        ctx.facts.setdefault("descriptions", {})[info.service_id] = desc
    unknown = max((s.service_id for s in services), default=0) % 0xFFFFFFF0 + 7
    frame = await peer.exchange(sv.GetServiceDescriptionRequest(unknown), f"unlisted service id {unknown}")
    expect_code(frame, 404, f"GetServiceDescription of unlisted service {unknown}")


# --- sessions and invocation ------------------------------------------------------------------
@check("SES-001")
async def ses_001(ctx: Context) -> None:
    session = await _open_session(ctx)
    await _still_works(session, "CreateSession")
    await session.destroy()


@check("SES-002")
async def ses_002(ctx: Context) -> None:
    peer = await TestPeer.of(ctx)
    services = await _services(ctx, peer)
    unknown = max((s.service_id for s in services), default=0) % 0xFFFFFFF0 + 11
    seq = new_seq()
    frame = await peer.exchange(ss.CreateSessionRequest(new_id(), unknown, seq), f"unlisted service {unknown}")
    expect_code(frame, 404, f"CreateSession with unlisted service {unknown}")
    if not isinstance(frame.message, ErrorResponse):
        _ack(frame, seq, "CreateSessionResponse")
        if getattr(frame.message, "session_id", None):
            raise CaseFailed("a refused CreateSessionResponse carries a SessionId")


@check("SES-003")
async def ses_003(ctx: Context) -> None:
    session = await _open_session(ctx)
    try:
        expect_code(await session.invoke("ConformanceNoSuchAction"), 404, "an unknown action")
        await _still_works(session, "an unknown action")
    finally:
        await session.destroy()


@check("SES-004")
async def ses_004(ctx: Context) -> None:
    session = await _open_session(ctx)
    try:
        frame = await session.invoke("findServiceAttribute", (("names", 7),), note="names = 7, not a list")
        expect_code(frame, 400, "findServiceAttribute with names = 7")
        desc = ctx.facts.get("descriptions", {}).get(session.info.service_id)
        action = next((a for a in (desc.actions if desc else ()) if any(p.required for p in a.params)), None)
        if action is not None:
            frame = await session.invoke(action.name, note=f"{action.name} without its required arguments")
            expect_code(frame, 400, f"{action.name} without its required arguments")
        await _still_works(session, "the refused invocations")
    finally:
        await session.destroy()


@check("SES-005")
async def ses_005(ctx: Context) -> None:
    session = await _open_session(ctx)
    await session.destroy()
    frame = await session.invoke("findServiceAttribute", note="in the destroyed session")
    expect_code(frame, 404, "an invocation in a destroyed session")


@check("SES-006")
async def ses_006(ctx: Context) -> None:
    session = await _open_session(ctx)
    try:
        seq = new_seq()
        expect_code(await session.invoke("findServiceAttribute", seq=seq, note=f"SequenceId {seq}"), 200,
                    "the first invocation")
        frame = await session.invoke("findServiceAttribute", seq=seq, note=f"SequenceId {seq} again")
        expect_code(frame, 409, "a repeated SequenceId")
    finally:
        await session.destroy()


# --- the public framing, outside any pipe: services shared openly ---------------------------------
def public_request(ctx: Context, message_type: str, fields: list[tuple[str, str]], seq: int) -> bytes:
    """A request as ezbox writes it (ezbox-dialect.md): ``Name:value`` headers, ``Man`` without
    spaces, the 2002/12 SOAP namespace with ``encodingStyle``, no XML declaration, a ``<Session>``
    body whose fields each end with LF. ``fields`` values are XML (written as given)."""
    inner = "".join(f"<{name}>{value}</{name}>\n" for name, value in fields)
    body = (f'<SOAP-ENV:Envelope xmlns:SOAP-ENV="{SOAP12_DRAFT_NS}" '
            f'SOAP-ENV:encodingStyle="{SOAP_ENCODING_STYLE}"><SOAP-ENV:Body>'
            f'<Session xmlns="{IGRS_NS}">{inner}</Session>\n</SOAP-ENV:Body>\n</SOAP-ENV:Envelope>\n').encode()
    lines = [f"M-POST {IGRS_PATH} HTTP/1.1", f"Host:{ctx.host}:{ctx.port}", f'Man:"{IGRS_EXT_URI}";ns=01',
             "01-IGRSVersion:IGRS/1.0", f"01-IGRSMessageType:{message_type}",
             f"01-TargetDeviceId:{ctx.device_id}", f"01-SourceDeviceId:{ctx.searcher_id}",
             f"01-SequenceId:{seq}",
             "Content-Type:text/xml; charset=UTF-8", f"Content-Length:{len(body)}",
             f'Man:"{SOAP12_DRAFT_NS}";ns=02', f'02-SoapAction:"{messages.soap_action(message_type)}"']
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


async def _listed_services(ctx: Context) -> list[tuple[int, str, str]]:
    """(service id, type, name) of the services the description lists (read without a pipe)."""
    desc = ctx.facts.get("description")
    if desc is None:
        from igrs.conformance.cases import request_bytes

        res = await post(ctx, request_bytes(ctx, messages.GetDeviceDescriptionRequest()), "the description")
        reply = frame_of(res, ctx.device_id).message
        if not isinstance(reply, messages.GetDeviceDescriptionResponse) or reply.description is None:
            raise CaseSkipped("no description to list the services from")
        desc = reply.description
    return [(s.service_id, s.service_type, s.name) for s in desc.services]


async def _public_sessions(ctx: Context) -> list[tuple[int, str, int]]:
    """CreateSessionRequest in the public framing to every listed service; the (service id,
    label, client id) of those that opened one -- shared openly. Runs once per run; the
    sessions end at its close. CaseFailed when the framing is not understood."""
    if "open_sessions" in ctx.facts:
        return ctx.facts["open_sessions"]
    services = await _listed_services(ctx)
    if not services:
        raise NotApplicable("the device hosts no service (its description lists none)")
    opened: list[tuple[int, str, int]] = []
    ctx.facts["open_sessions"] = opened
    ctx.facts["open_services"] = []
    ctx.closers.append(lambda: _end_public_sessions(ctx, opened))
    for sid, stype, name in services:
        seq, client = new_seq(), new_id()
        user = ("UserInfo", "<SourceUserId>igrs-conformance</SourceUserId>\n<ServiceSecurityId>"
                "urn:IGRS:ServiceSecurity:NULL</ServiceSecurityId>\n<Token></Token>\n")
        fields = [("SourceClientId", str(client)), ("TargetServiceId", str(sid)), ("SequenceId", str(seq)),
                  user]
        data = public_request(ctx, "CreateSessionRequest", fields, seq)
        res = await post(ctx, data, f"service {sid} {stype}, in ezbox's framing, no pipe")
        label = f"{name or stype} #{sid}"
        if res.status == 400:
            raise CaseFailed(f"service {sid}: the public framing was refused with HTTP 400 (not understood)")
        if res.status != 200:
            continue  # 401/403 (needs a secure pipe), 404, 501 (no sessions): understood, not open
        frame = frame_of(res, ctx.device_id)
        reply = frame.message
        if not isinstance(reply, ss.CreateSessionResponse):
            raise CaseFailed(f"service {sid}: HTTP 200 carries {frame.routing.message_type}, "
                             "not CreateSessionResponse")
        if reply.status.acknowledge_id != seq:
            raise CaseFailed(f"service {sid}: AcknowledgeId {reply.status.acknowledge_id} != SequenceId {seq}")
        if reply.status.return_code == 400:
            raise CaseFailed(f"service {sid}: ReturnCode 400 (the public framing not understood)")
        if reply.status.ok:
            opened.append((sid, label, client))
            ctx.facts["open_services"].append(label)
    return opened


async def _end_public_sessions(ctx: Context, opened: list[tuple[int, str, int]]) -> None:
    """DestroySessionNotify in the same framing for every session SES-007 opened (best effort:
    an ezbox-era peer answers it with a bare 400)."""
    for sid, _, client in opened:
        seq = new_seq()
        data = public_request(ctx, "DestroySessionNotify", [("SourceClientId", str(client)),
                                                           ("TargetServiceId", str(sid))], seq)
        with contextlib.suppress(Exception):  # cleanup only: the run's verdicts are made
            await post(ctx, data, "end the open session")


@check("SES-007")
async def ses_007(ctx: Context) -> None:
    opened = await _public_sessions(ctx)
    shared = ", ".join(label for _, label, _ in opened) or "none"
    ctx.rec.add("!", "", b"", f"services shared openly: {shared}")


@check("SES-008")
async def ses_008(ctx: Context) -> None:
    try:
        opened = await _public_sessions(ctx)
    except CaseFailed as exc:
        raise CaseSkipped(f"no session in the public framing (SES-007: {exc})") from None
    if not opened:
        raise NotApplicable("no service is shared openly (SES-007)")
    sid, label, client = opened[0]
    seq = new_seq()
    data = public_request(ctx, "InvokeServiceRequest", [
        ("SourceClientId", str(client)), ("TargetServiceId", str(sid)), ("SequenceId", str(seq)),
        ("InvokeArguments", "<findServiceAttribute/>")], seq)
    res = await post(ctx, data, f"{label}: findServiceAttribute in RPC style, no operation name")
    if res.status != 200:
        raise CaseFailed(f"{label}: HTTP {res.status}, expected 200")
    frame = frame_of(res, ctx.device_id)
    reply = frame.message
    if not isinstance(reply, ss.InvokeServiceResponse):
        raise CaseFailed(f"{label}: answered {frame.routing.message_type}, not InvokeServiceResponse")
    if reply.status.return_code != 200:
        raise CaseFailed(f"{label}: ReturnCode {reply.status.return_code} ({reply.status.reason})".rstrip())
    if reply.status.acknowledge_id != seq:
        raise CaseFailed(f"{label}: AcknowledgeId {reply.status.acknowledge_id} != SequenceId {seq}")
    if (reply.service_id, reply.client_id) != (sid, client):
        raise CaseFailed(f"{label}: SourceServiceId / TargetClientId {reply.service_id} / {reply.client_id}, "
                         f"expected {sid} / {client}")


# --- events -----------------------------------------------------------------------------------
async def _subscribe(peer: TestPeer, kind: type, seconds: float, location: str | None = None,
                     note: str = "") -> Frame:
    where = location if location is not None else await peer.callback_location()
    frame = await peer.exchange(kind(where, ev.from_timestamp(time.time() + seconds)), note)
    sid = getattr(frame.message, "subscription_id", None)
    if sid:
        peer.raw_subscriptions.add(sid)
    return frame


def _granted(frame: Frame, what: str) -> tuple[int, float]:
    reply = frame.message
    if not isinstance(reply, ev.SubscribeDeviceEventResponse | ev.SubscribeServiceEventResponse):
        raise CaseFailed(f"{what}: answered {frame.routing.message_type}")
    expect_code(frame, 200, what)
    if not reply.subscription_id or reply.termination_time is None:
        raise CaseFailed(f"{what}: 200 without SubscriptionId and TerminationTime")
    return reply.subscription_id, reply.termination_time.timestamp()


@check("EVT-001")
async def evt_001(ctx: Context) -> None:
    peer = await TestPeer.of(ctx)
    asked = time.time() + 60
    frame = await _subscribe(peer, ev.SubscribeServiceEventRequest, 60, note="expires in 60 s")
    sid, until = _granted(frame, "SubscribeServiceEventRequest")
    try:
        now = time.time()
        if until <= now:
            raise CaseFailed(f"TerminationTime {ev.from_timestamp(until)} is not in the future")
        if until > asked + 2:  # whole seconds and clock skew
            raise CaseFailed(f"TerminationTime {ev.from_timestamp(until)} is later than requested "
                             f"{ev.from_timestamp(asked)}")
        for _ in range(50):
            if any(getattr(f.message, "subscription_id", None) == sid for f in peer.notifications):
                break
            await asyncio.sleep(0.1)
        else:
            ctx.rec.add("!", "", b"", "no initial NotifyServiceEvent within 5 s (optional, project choice)")
    finally:
        await peer.notify(ev.UnSubscribeServiceEventNotify(sid), "end the subscription")


@check("EVT-002")
async def evt_002(ctx: Context) -> None:
    peer = await TestPeer.of(ctx)
    frame = await _subscribe(peer, ev.SubscribeDeviceEventRequest, -3600, note="expired an hour ago")
    expect_code(frame, 400, "a subscription that expired an hour ago")
    if getattr(frame.message, "subscription_id", None):
        raise CaseFailed("the refused subscription carries a SubscriptionId")


async def _renew(peer: TestPeer, sid: int, note: str) -> Frame:
    msg = ev.RenewSubscriptionDeviceEventRequest(sid, await peer.callback_location(),
                                                 ev.from_timestamp(time.time() + 60))
    return await peer.exchange(msg, note)


@check("EVT-003")
async def evt_003(ctx: Context) -> None:
    peer = await TestPeer.of(ctx)
    expect_code(await _renew(peer, new_id(), "a SubscriptionId never granted"), 404,
                "renewing an unknown subscription")


@check("EVT-004")
async def evt_004(ctx: Context) -> None:
    peer = await TestPeer.of(ctx)
    sid, until = _granted(await _subscribe(peer, ev.SubscribeDeviceEventRequest, 5, note="expires in 5 s"),
                          "SubscribeDeviceEventRequest")
    wait = until - time.time() + 2
    if wait > EXPIRY_WATCH_LIMIT:
        await peer.notify(ev.UnSubscribeDeviceEventNotify(sid), "end the subscription")
        raise CaseSkipped(f"the device granted {wait - 2:.0f} s (limit {EXPIRY_WATCH_LIMIT:.0f} s)")
    ctx.rec.add("!", "", b"", f"waiting {wait:.1f} s: 2 s past TerminationTime {ev.from_timestamp(until)}")
    await asyncio.sleep(max(0.0, wait))
    expect_code(await _renew(peer, sid, "2 s after its TerminationTime"), (412, 404),
                "renewing an expired subscription")


@check("EVT-005")
async def evt_005(ctx: Context) -> None:
    peer = await TestPeer.of(ctx)
    sid, _ = _granted(await _subscribe(peer, ev.SubscribeDeviceEventRequest, 60), "SubscribeDeviceEventRequest")
    await peer.notify(ev.UnSubscribeDeviceEventNotify(sid))
    expect_code(await _renew(peer, sid, "after UnSubscribe"), (412, 404), "renewing an ended subscription")


@check("EVT-006")
async def evt_006(ctx: Context) -> None:
    peer = await TestPeer.of(ctx)
    own = await peer.callback_location()
    host = own.split("//", 1)[1].split("/", 1)[0]
    for location, code in (("http://192.0.2.1:80/IGRS", 403), (f"ftp://{host}/x", 400),
                           (f"http://{host}/" + "a" * 300, 400)):
        frame = await _subscribe(peer, ev.SubscribeDeviceEventRequest, 60, location=location,
                                 note=f"Location {location[:60]}")
        try:
            expect_code(frame, code, f"Location {location[:60]}")
        finally:
            sid = getattr(frame.message, "subscription_id", None)
            if sid:
                await peer.notify(ev.UnSubscribeDeviceEventNotify(sid), "end the wrongly granted one")
