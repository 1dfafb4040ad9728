"""One check per catalogue case (specs/conformance/cases.toml). A check returns for pass,
raises ``CaseFailed`` (the DUT broke the rule), ``CaseSkipped`` (a precondition is
missing); anything else is an ``error`` verdict."""

from __future__ import annotations

import asyncio
import os
import random
import time
from functools import lru_cache
from typing import Any
from urllib.parse import urlsplit

from lxml import etree

from igrs.conformance.rawnet import HttpResult, http_exchange
from igrs.conformance.runner import CaseFailed, CaseSkipped, Context, ProjectRuleFailed, check, search_once
from igrs.constants import DESCRIPTION_PATH, IGRS_PATH, IGRS_VERSION, MAX_DATAGRAM, MAX_HTTP_BODY
from igrs.wire import description as ddesc
from igrs.wire import isdp, messages
from igrs.wire.httpu import Headers
from igrs.wire.ids import DeviceId
from igrs.wire.messages import Frame

GRACE = 1.0  # s beyond MX before a search response counts as late (loopback/LAN scheduling)
SEARCH_MX = 1
OTHER_TYPE = "urn:IGRS:DeviceType:ConformanceNoSuchType:1"
SCHEMA_DIRS = (
    os.path.join(os.path.dirname(__file__), "..", "schemas"),
    os.path.join(os.path.dirname(__file__), "..", "..", "specs", "schemas"),
)


@lru_cache(maxsize=1)
def description_schema() -> etree.XMLSchema:
    for d in SCHEMA_DIRS:
        path = os.path.join(d, "device-description.xsd")
        if os.path.isfile(path):
            return etree.XMLSchema(etree.parse(path))
    raise FileNotFoundError("device-description.xsd not found")


def schema_errors(doc: etree._Element) -> str:
    schema = description_schema()
    if schema.validate(doc):
        return ""
    return "; ".join(f"line {e.line}: {e.message}" for e in list(schema.error_log)[:5])


def new_seq() -> int:
    return random.randint(1000, 0xFFFFFFF0)


# --- helpers: M-POST ---------------------------------------------------------------------------
def request_bytes(ctx: Context, message: messages.SoapMessage, *, seq: int | None = None,
                  target: DeviceId | bool | None = True,
                  replace: dict[str, str | None] | None = None, body: bytes | None = None) -> bytes:
    """An M-POST /IGRS request, encoded by the codec, then edited header by header."""
    tgt = ctx.device_id if target is True else (None if target is False else target)
    headers, enc_body = messages.encode(message, source=ctx.searcher_id, target=tgt,
                                        sequence_id=seq if seq is not None else new_seq())
    for name, value in (replace or {}).items():
        headers = [(k, v) for k, v in headers if k.lower() != name.lower()]
        if value is not None:
            headers.append((name, value))
    return messages.build_request(f"{ctx.host}:{ctx.port}", [*headers, ("Connection", "close")],
                                  enc_body if body is None else body)


async def post(ctx: Context, data: bytes, note: str = "") -> HttpResult:
    return await http_exchange(ctx.host, ctx.port, data, ctx.rec, note=note)


def frame_of(res: HttpResult, answering: DeviceId | None = None) -> Frame:
    """The answer decoded; ``answering``: the DUT, taken as the source of an answer whose device
    ids are empty (ezbox's form, messages.md §3)."""
    try:
        return messages.decode(Headers(res.headers), res.body, answering=answering)
    except Exception as exc:
        raise CaseFailed(f"answer (HTTP {res.status}) does not decode: {exc}") from None


def expect_error(res: HttpResult, code: int, ack: int | None = None, *, strict_status: bool = True) -> None:
    """An ErrorResponse with ReturnCode ``code``; HTTP status = ``code`` unless not strict
    (then any 4xx/5xx: FRM-010 checks that rule on its own). The status is the rule a public
    peer follows too (ezbox answers errors with a bare HTTP status); the IGRS ErrorResponse body
    is a project choice (messages.md §6): its faults are ``ProjectRuleFailed``."""
    if res.status == 200:
        raise CaseFailed(f"expected HTTP {code} ErrorResponse, got HTTP 200")
    if strict_status and res.status != code:
        raise CaseFailed(f"expected HTTP {code}, got HTTP {res.status}")
    if res.status < 400:
        raise CaseFailed(f"expected an error status, got HTTP {res.status}")
    try:
        frame = frame_of(res)
    except CaseFailed as exc:
        raise ProjectRuleFailed(f"HTTP {res.status} as required, but no IGRS ErrorResponse ({exc})") from None
    if not isinstance(frame.message, messages.ErrorResponse):
        raise ProjectRuleFailed(f"HTTP {code} carries {frame.routing.message_type}, not ErrorResponse")
    if frame.message.status.return_code != code:
        raise ProjectRuleFailed(f"ErrorResponse ReturnCode {frame.message.status.return_code}, expected {code}")
    if ack is not None and frame.message.status.acknowledge_id != ack:
        got = frame.message.status.acknowledge_id
        raise ProjectRuleFailed(f"ErrorResponse AcknowledgeId {got} != SequenceId {ack}")


async def _search_answers(ctx: Context, st: str) -> tuple[float, list[tuple[float, isdp.SearchDeviceResponse]]]:
    """Search; return (sent, [(delay, response)]) from the DUT, failing on undecodable ones."""
    sent, got = await search_once(ctx, st, SEARCH_MX, SEARCH_MX + GRACE + 0.5)
    out = []
    for dg, msg in got:
        if isinstance(msg, Exception):
            if ctx.host and dg.source[0] != ctx.host:
                continue  # another device's problem
            raise CaseFailed(f"answer from {dg.source[0]}:{dg.source[1]} does not decode: {msg}")
        if isinstance(msg, isdp.SearchDeviceResponse) and msg.device_id == ctx.device_id:
            out.append((dg.at - sent, msg, dg))
    return sent, out  # type: ignore[return-value]


async def _heard_within(ctx: Context, t0: float, window: float, kind: type,
                        event: str) -> tuple[Any, Any] | None:
    """Wait until ``t0 + window``; the first ``kind`` datagram of the DUT heard on the group since
    ``t0`` (recorded as evidence), or None."""
    assert ctx.listener is not None
    await asyncio.sleep(max(0.0, t0 + window - time.monotonic()))
    for dg in ctx.listener.heard:
        if dg.at < t0:
            continue
        try:
            msg = isdp.decode(dg.data)
        except Exception:
            continue
        if isinstance(msg, kind) and getattr(msg, "device_id", None) == ctx.device_id:
            ctx.rec.add("<", f"{dg.source[0]}:{dg.source[1]}", dg.data, f"{dg.at - t0:.2f} s after {event}")
            return dg, msg
    return None


# --- discovery ---------------------------------------------------------------------------------
@check("DISC-001")
async def disc_001(ctx: Context) -> None:
    assert ctx.listener is not None
    t0 = ctx.facts.get("started_at", 0.0)
    found = await _heard_within(ctx, t0, 3.0, isdp.DeviceOnlineAdvertisement, "start")
    if found is None:
        raise CaseFailed("no isdp:alive from the device within 3 s of its start")
    dg, msg = found
    if urlsplit(msg.location).hostname != dg.source[0]:
        raise CaseFailed(f"LOCATION host {urlsplit(msg.location).hostname} != source {dg.source[0]}")


@check("DISC-002")
async def disc_002(ctx: Context) -> None:
    _, answers = await _search_answers(ctx, "isdp:all")
    ctx.facts["search_answers"] = answers
    if not answers:
        raise CaseFailed(f"no SearchDeviceResponse within {SEARCH_MX + GRACE + 0.5:.1f} s")
    first = min(a[0] for a in answers)
    if first > SEARCH_MX + GRACE:
        raise CaseFailed(f"first response after {first:.2f} s > MX {SEARCH_MX} s + grace {GRACE} s")


@check("DISC-003")
async def disc_003(ctx: Context) -> None:
    answers = ctx.facts.get("search_answers")
    if answers is None:
        await disc_002(ctx)
        answers = ctx.facts["search_answers"]
    if not answers:
        raise CaseSkipped("no search answer (DISC-002)")
    for _, msg, dg in answers:
        ctx.rec.add("<", f"{dg.source[0]}:{dg.source[1]}", dg.data, "checked answer")
        if not dg.data.startswith(b"HTTP/1.1 200 "):
            line = dg.data.split(b"\r\n", 1)[0][:40]
            raise CaseFailed(f"status line {line!r} is not HTTP/1.1 200 OK")
        if str(msg.target) != "isdp:all":
            raise CaseFailed(f"ST {msg.target} is not the request's isdp:all")
        if urlsplit(msg.location).hostname != dg.source[0]:
            host = urlsplit(msg.location).hostname
            raise CaseFailed(f"LOCATION host {host} != source address {dg.source[0]}")
        if msg.requester != ctx.searcher_id:
            raise CaseFailed(f"01-TargetDeviceId {msg.requester} is not the searcher {ctx.searcher_id}")
        if b"max-age" not in dg.data.lower():
            raise CaseFailed("no CACHE-CONTROL max-age")
    ctx.facts["device_type"] = answers[0][1].device_type
    ctx.facts["max_age"] = answers[0][1].max_age


@check("DISC-004")
async def disc_004(ctx: Context) -> None:
    dtype = ctx.facts.get("device_type")
    if dtype is None:
        raise CaseSkipped("device type unknown (DISC-003 did not pass)")
    targets = (str(ctx.device_id), str(dtype), OTHER_TYPE)  # three searchers at once
    results = await asyncio.gather(*(_search_answers(ctx, st) for st in targets))
    for st, (_, answers) in zip(targets[:2], results[:2], strict=True):
        if not answers:
            raise CaseFailed(f"no answer to a search for {st}")
        if str(answers[0][1].target).lower() != st.lower():
            raise CaseFailed(f"ST {answers[0][1].target} does not echo {st}")
    if results[2][1]:
        raise CaseFailed(f"answered a search for {OTHER_TYPE}, a type it is not")


@check("DISC-005")
async def disc_005(ctx: Context) -> None:
    from igrs.conformance.rawnet import UnicastSocket

    rnd = random.Random(5)
    search = isdp.encode(isdp.SearchDeviceRequest(isdp.SearchTarget.all(), 1, ctx.searcher_id),
                         host=f"{ctx.group}:{ctx.isdp_port}")
    garbage = [
        ("random bytes", bytes(rnd.randrange(256) for _ in range(300))),
        ("truncated M-SEARCH", search[: len(search) // 2]),
        ("folded header", search.replace(b"MX: 1\r\n", b"MX: 1\r\n continued\r\n")),
        ("oversize M-SEARCH", search[:-2] + b"X-Pad: " + b"a" * (MAX_DATAGRAM + 100) + b"\r\n\r\n"),
        ("NOTIFY with bad USN", b"NOTIFY * HTTP/1.1\r\nHOST: x\r\nNT: urn:IGRS:DeviceType:TV:1\r\n"
                                b"NTS: isdp:alive\r\nUSN: not-an-id\r\nLOCATION: http://127.0.0.1:1/\r\n"
                                b"CACHE-CONTROL: max-age=10\r\n\r\n"),
        ("empty datagram", b""),
    ]
    sock = UnicastSocket(ctx.iface, ctx.rec)
    try:
        for note, data in garbage:
            try:
                await sock.send(data, ctx.group_addr, note)
            except OSError as exc:  # e.g. EMSGSIZE: say so, go on
                ctx.rec.add("!", "", b"", f"{note}: not sent ({exc})")
    finally:
        sock.close()
    await asyncio.sleep(0.3)
    _, answers = await _search_answers(ctx, "isdp:all")
    if not answers:
        raise CaseFailed("the device no longer answers searches after the malformed datagrams")
    if min(a[0] for a in answers) > SEARCH_MX + GRACE:
        raise CaseFailed("the answer after the malformed datagrams was late")


@check("DISC-008")
async def disc_008(ctx: Context) -> None:
    src = ctx.off_subnet_source
    import ipaddress

    if ipaddress.ip_address(src) in ctx.iface.network:
        raise CaseSkipped(f"{src} is on the test interface's subnet {ctx.iface.network}")
    try:
        sent, got = await search_once(ctx, "isdp:all", SEARCH_MX, SEARCH_MX + GRACE + 0.5, source=src)
    except OSError as exc:
        raise CaseSkipped(f"cannot search from {src}: {exc}") from None
    for dg, msg in got:
        if isinstance(msg, isdp.SearchDeviceResponse) and msg.device_id == ctx.device_id:
            raise CaseFailed(f"answered a search from off-subnet {src} ({dg.at - sent:.2f} s later)")


@check("DISC-006")
async def disc_006(ctx: Context) -> None:
    assert ctx.lifecycle is not None and ctx.listener is not None
    t0 = time.monotonic()
    await ctx.lifecycle.stop()
    if await _heard_within(ctx, t0, 3.0, isdp.DeviceOfflineAdvertisement, "stop") is not None:
        return
    raise CaseFailed("no isdp:byebye from the device within 3 s of its stop")


@check("DISC-007")
async def disc_007(ctx: Context) -> None:
    max_age = ctx.facts.get("max_age")
    if max_age is None:
        raise CaseSkipped("max-age unknown (DISC-003 did not pass)")
    if max_age > 10:
        raise CaseSkipped(f"max-age {max_age} s: watching a full period takes too long (limit 10 s)")
    assert ctx.listener is not None
    t0 = time.monotonic()
    while time.monotonic() - t0 < max_age:
        for dg in ctx.listener.heard:
            if dg.at >= t0 and b"isdp:alive" in dg.data and str(ctx.device_id).encode() in dg.data:
                ctx.rec.add("<", f"{dg.source[0]}:{dg.source[1]}", dg.data,
                            f"{dg.at - t0:.2f} s into the watch")
                return
        await asyncio.sleep(0.2)
    raise CaseFailed(f"no isdp:alive within max-age {max_age} s")


# --- description ----------------------------------------------------------------------------------
@check("DISC-009")
async def disc_009(ctx: Context) -> None:
    answers = ctx.facts.get("search_answers") or []
    location = ctx.facts.get("advertised_location") or (answers[0][1].location if answers else "")
    if not location:  # a target given by address: only an advertised LOCATION says anything
        raise CaseSkipped("no LOCATION advertised (no search answer, target given by address)")
    path = urlsplit(location).path
    if path != IGRS_PATH:
        raise CaseFailed(f"LOCATION {location} does not name the {IGRS_PATH} endpoint")


@check("DESC-001")
async def desc_001(ctx: Context) -> None:
    path = DESCRIPTION_PATH
    req = f"GET {path} HTTP/1.1\r\nHost: {ctx.host}:{ctx.port}\r\nConnection: close\r\n\r\n".encode()
    res = await http_exchange(ctx.host, ctx.port, req, ctx.rec)
    if res.status != 200:
        raise CaseFailed(f"GET {path} answered HTTP {res.status}")
    try:
        doc = etree.fromstring(res.body, etree.XMLParser(resolve_entities=False, no_network=True))
    except etree.XMLSyntaxError as exc:
        raise CaseFailed(f"description is not well-formed XML: {exc}") from None
    if errors := schema_errors(doc):
        raise CaseFailed(f"description is not valid against device-description.xsd: {errors}")
    ctx.facts["description"] = ddesc.from_element(doc)


@check("DESC-002")
async def desc_002(ctx: Context) -> None:
    seq = new_seq()
    res = await post(ctx, request_bytes(ctx, messages.GetDeviceDescriptionRequest(), seq=seq))
    if res.status != 200:
        raise CaseFailed(f"HTTP {res.status}")
    frame = frame_of(res, ctx.device_id)
    msg = frame.message
    if not isinstance(msg, messages.GetDeviceDescriptionResponse):
        raise CaseFailed(f"answered {frame.routing.message_type}")
    if msg.status.return_code != 200:
        raise CaseFailed(f"ReturnCode {msg.status.return_code}")
    if frame.routing.source != ctx.device_id:
        raise CaseFailed(f"01-SourceDeviceId {frame.routing.source} is not the device {ctx.device_id}")
    from igrs.wire.soap import parse_envelope

    root = parse_envelope(res.body).find(f"{{{ddesc.NS}}}root")
    if root is None:
        raise CaseFailed("no description root in the response")
    if errors := schema_errors(etree.fromstring(etree.tostring(root))):
        raise CaseFailed(f"embedded description not schema-valid: {errors}")


@check("DESC-003")
async def desc_003(ctx: Context) -> None:
    desc = ctx.facts.get("description")
    if desc is None:
        raise CaseSkipped("no valid description (DESC-001)")
    if "device_type" not in ctx.facts:
        raise CaseSkipped("nothing advertised to compare with (no search answer: DISC-003)")
    if desc.device_id != ctx.device_id:
        raise CaseFailed(f"UDN {desc.device_id} != advertised id {ctx.device_id}")
    dtype = ctx.facts.get("device_type")
    if dtype is not None and desc.device_type != dtype:
        raise CaseFailed(f"deviceType {desc.device_type} != advertised 01-DeviceType {dtype}")


@check("DESC-004")
async def desc_004(ctx: Context) -> None:
    for st, expected in (("isdp:all", True), (OTHER_TYPE, False)):
        seq = new_seq()
        msg = messages.SearchDeviceRequestOnDevice(isdp.SearchTarget.parse(st))
        res = await post(ctx, request_bytes(ctx, msg, seq=seq))
        if res.status != 200:
            raise CaseFailed(f"{st}: HTTP {res.status}")
        reply = frame_of(res).message
        if not isinstance(reply, messages.SearchDeviceResponseOnDevice):
            raise CaseFailed(f"{st}: answered {type(reply).__name__}")
        if reply.status.return_code != 200 or reply.matched is not expected:
            raise CaseFailed(f"{st}: ReturnCode {reply.status.return_code}, Matched {reply.matched} "
                             f"(expected 200, {expected})")


# --- framing and return codes ------------------------------------------------------------------------
@check("FRM-001")
async def frm_001(ctx: Context) -> None:
    for seq in (new_seq(), new_seq()):
        res = await post(ctx, request_bytes(ctx, messages.GetDeviceDescriptionRequest(), seq=seq),
                         f"SequenceId {seq}")
        frame = frame_of(res, ctx.device_id)
        status = getattr(frame.message, "status", None)
        if status is None:
            raise CaseFailed(f"{frame.routing.message_type} carries no status")
        if status.acknowledge_id != seq:
            raise CaseFailed(f"AcknowledgeId {status.acknowledge_id} != SequenceId {seq}")


@check("FRM-002")
async def frm_002(ctx: Context) -> None:
    seq = new_seq()
    body = b"<?xml version='1.0'?><soap:Envelope xmlns:soap='http://www.w3.org/2003/05/soap-envelope'><soap:Body>"
    res = await post(ctx, request_bytes(ctx, messages.GetDeviceDescriptionRequest(), seq=seq, body=body))
    expect_error(res, 400)  # AcknowledgeId echo of a readable SequenceId: FRM-010


@check("FRM-003")
async def frm_003(ctx: Context) -> None:
    seq = new_seq()
    body = (b"<?xml version='1.0' encoding='utf-8'?><soap:Envelope xmlns:soap='http://www.w3.org/2003/05/"
            b"soap-envelope'><soap:Body><ConformanceNoSuchRequest xmlns='http://www.igrs.org/spec1.0'/>"
            b"</soap:Body></soap:Envelope>")
    data = request_bytes(ctx, messages.GetDeviceDescriptionRequest(), seq=seq, body=body,
                         replace={"01-IGRSMessageType": "ConformanceNoSuchRequest",
                                  "02-SoapAction": '"IGRS-ConformanceNoSuch-Request"'})
    expect_error(await post(ctx, data), 400)


@check("FRM-004")
async def frm_004(ctx: Context) -> None:
    seq = new_seq()
    data = request_bytes(ctx, messages.GetDeviceDescriptionRequest(), seq=seq,
                         replace={"01-IGRSVersion": "IGRS/2.0"})
    assert IGRS_VERSION == "IGRS/1.0"
    expect_error(await post(ctx, data), 505)


@check("FRM-005")
async def frm_005(ctx: Context) -> None:
    seq = new_seq()
    data = request_bytes(ctx, messages.GetDeviceDescriptionRequest(), seq=seq, target=DeviceId.new())
    expect_error(await post(ctx, data), 404, seq)


@check("FRM-006")
async def frm_006(ctx: Context) -> None:
    headers, _ = messages.encode(messages.GetDeviceDescriptionRequest(), source=ctx.searcher_id,
                                 target=ctx.device_id, sequence_id=new_seq())
    lines = ["M-POST /IGRS HTTP/1.1", f"HOST: {ctx.host}:{ctx.port}", *(f"{k}: {v}" for k, v in headers),
             f"Content-Length: {MAX_HTTP_BODY + 1}", "Connection: close"]
    res = await post(ctx, ("\r\n".join(lines) + "\r\n\r\n").encode(), "headers only, body never sent")
    if res.status != 413:
        raise CaseFailed(f"expected HTTP 413 before the body is read, got HTTP {res.status}")
    if res.body:
        expect_error(res, 413)


@check("FRM-007")
async def frm_007(ctx: Context) -> None:
    seq = new_seq()
    reply = messages.GetDeviceDescriptionResponse(messages.Status(1), None)
    headers, body = messages.encode(reply, source=ctx.searcher_id, target=ctx.device_id, sequence_id=seq)
    data = messages.build_request(f"{ctx.host}:{ctx.port}", [*headers, ("Connection", "close")], body)
    expect_error(await post(ctx, data), 400)


@check("FRM-008")
async def frm_008(ctx: Context) -> None:
    data = request_bytes(ctx, messages.GetDeviceDescriptionRequest(), replace={"01-SequenceId": None})
    expect_error(await post(ctx, data), 400)


@check("FRM-009")
async def frm_009(ctx: Context) -> None:
    req = f"GET /IGRS HTTP/1.1\r\nHost: {ctx.host}:{ctx.port}\r\nConnection: close\r\n\r\n".encode()
    res = await http_exchange(ctx.host, ctx.port, req, ctx.rec)
    if res.status != 405:
        raise CaseFailed(f"GET /IGRS answered HTTP {res.status}, not 405")
    if "M-POST" not in (res.header("Allow") or ""):
        raise CaseFailed(f"Allow header {res.header('Allow')!r} does not name M-POST")


# --- pipes and security -------------------------------------------------------------------------------
@check("SEC-001")
async def sec_001(ctx: Context) -> None:
    from igrs.wire.bodies.sessions import InvokeServiceRequest

    seq = new_seq()
    msg = InvokeServiceRequest(client_id=1, service_id=1, sequence_id=seq, action="findServiceAttribute")
    res = await post(ctx, request_bytes(ctx, msg, seq=seq), "unsealed, outside any pipe")
    if res.status == 501:
        raise CaseSkipped("InvokeServiceRequest is not served (501)")
    if res.status == 200:
        raise CaseFailed("an unsealed InvokeServiceRequest was answered in kind (HTTP 200)")
    expect_error(res, 401, seq, strict_status=False)  # HTTP status = 401: FRM-010


@check("SEC-002")
async def sec_002(ctx: Context) -> None:
    from igrs.core.security.identity import LocalIdentity
    from igrs.errors import IGRSError, RemoteError
    from igrs.net.http import IgrsHttpClient
    from igrs.node.pipe import open_pipe

    me = LocalIdentity.generate(ctx.searcher_id)
    # We pretend to know a key for the DUT so that our side goes ahead; the DUT does not know us.
    pretend = LocalIdentity.generate(ctx.device_id).public_key
    client = IgrsHttpClient(ctx.searcher_id, timeout=5.0)
    url = f"http://{ctx.host}:{ctx.port}/IGRS"
    try:
        pipe = await open_pipe(client, url, me, ctx.device_id, lambda _d: pretend,  # type: ignore[arg-type]
                               secure=True, keepalive_interval=3600)
    except RemoteError as exc:
        ctx.rec.add("<", url, b"", f"handshake refused: ReturnCode {exc.return_code}: {exc.reason}")
        if int(exc.return_code) != 403:
            raise CaseFailed(f"refused with ReturnCode {int(exc.return_code)}, not 403") from None
        return
    except IGRSError as exc:
        ctx.rec.add("!", url, b"", f"handshake ended on our side: {exc}")
        raise CaseSkipped(f"inconclusive: the handshake failed on the test device's side ({exc})") from None
    finally:
        await client.close()
    await pipe.close("conformance")
    raise CaseFailed("a secure pipe was established with an unpaired device")


@check("FRM-010")
async def frm_010(ctx: Context) -> None:
    from igrs.wire.bodies.sessions import InvokeServiceRequest

    problems = []
    seq = new_seq()
    body = b"<?xml version='1.0'?><soap:Envelope xmlns:soap='http://www.w3.org/2003/05/soap-envelope'><soap:Body>"
    res = await post(ctx, request_bytes(ctx, messages.GetDeviceDescriptionRequest(), seq=seq, body=body),
                     "malformed XML, readable SequenceId")
    frame = frame_of(res)
    if isinstance(frame.message, messages.ErrorResponse) and frame.message.status.acknowledge_id != seq:
        problems.append(f"malformed body: AcknowledgeId {frame.message.status.acknowledge_id} "
                        f"!= readable SequenceId {seq}")
    seq = new_seq()
    msg = InvokeServiceRequest(client_id=1, service_id=1, sequence_id=seq, action="findServiceAttribute")
    res = await post(ctx, request_bytes(ctx, msg, seq=seq), "unsealed: expect 401")
    frame = frame_of(res)
    if isinstance(frame.message, messages.ErrorResponse) and res.status != frame.message.status.return_code:
        problems.append(f"HTTP status {res.status} != ReturnCode {frame.message.status.return_code}")
    if problems:
        raise CaseFailed("; ".join(problems))


# --- pairing-based cases (--pin) ----------------------------------------------------------------------
@check("SEC-003")
async def sec_003(ctx: Context) -> None:
    from igrs.conformance.peer import TestPeer
    from igrs.wire.bodies import pipes as pb

    peer = await TestPeer.of(ctx)
    pipe = await peer.pipe()
    try:
        seq = new_seq()
        sealed = pipe._sealer()(pb.DeviceOnlineDetectionRequest(pipe.pipe_id), seq)  # type: ignore[misc]
        data = request_bytes(ctx, sealed, seq=seq)
        first = await post(ctx, data, f"sealed DeviceOnlineDetectionRequest in pipe {pipe.pipe_id}")
        if first.status != 200:
            raise CaseSkipped(f"the original sealed request was answered HTTP {first.status}")
        replay = await post(ctx, data, "the same bytes again (replay)")
        if replay.status == 200:
            raise CaseFailed("the replayed sealed request was accepted (HTTP 200)")
        frame = frame_of(replay)
        if not isinstance(frame.message, messages.ErrorResponse):
            raise CaseFailed(f"replay answered {frame.routing.message_type}, not ErrorResponse")
        if frame.message.status.return_code not in (400, 401):
            raise CaseFailed(f"replay refused with ReturnCode {frame.message.status.return_code}, "
                             f"expected 401 or 400")
    finally:
        await pipe.close("conformance")


# --- pairing ---------------------------------------------------------------------------------------
GUESSED_PINS = ("000000", "123456")


@check("SEC-006")
async def sec_006(ctx: Context) -> None:
    from igrs.core.security.identity import LocalIdentity
    from igrs.errors import IGRSError
    from igrs.net.http import IgrsHttpClient
    from igrs.node.pipe import pair

    url = f"http://{ctx.host}:{ctx.port}/IGRS"
    for guess in GUESSED_PINS:
        me = LocalIdentity.generate(DeviceId.new())  # not the run's paired identity
        client = IgrsHttpClient(me.device_id, timeout=10.0)

        async def typed(_digits: int, guess: str = guess) -> str:
            return guess[:_digits].rjust(_digits, "0")

        ctx.rec.add(">", url, b"", f"pairing as {me.device_id} with the guessed PIN {guess}")
        try:
            paired = await pair(client, url, me, ctx.device_id, typed, name="igrs conformance", now=time.time)  # type: ignore[arg-type]
        except IGRSError as exc:
            ctx.rec.add("<", url, b"", f"not paired: {type(exc).__name__}: {exc}")
            continue
        finally:
            await client.close()
        ctx.rec.add("<", url, b"", f"PAIRED with the guessed PIN {guess}, fingerprint {paired.fingerprint}")
        raise CaseFailed(f"the guessed PIN {guess} paired: the PIN is fixed or predictable")


# --- robustness of sealed traffic (--pin) -------------------------------------------------------------
async def _send_sealed(ctx: Context, pipe: Any, sealed: messages.SoapMessage, seq: int,
                       note: str, **edits: Any) -> HttpResult:
    return await post(ctx, request_bytes(ctx, sealed, seq=seq, **edits), note)


def _expect_refused(res: HttpResult, what: str) -> None:
    if res.status == 200:
        raise CaseFailed(f"{what} was accepted (HTTP 200)")
    frame = frame_of(res)
    if not isinstance(frame.message, messages.ErrorResponse):
        raise CaseFailed(f"{what}: answered {frame.routing.message_type}, not ErrorResponse")
    if frame.message.status.return_code not in (400, 401):
        raise CaseFailed(f"{what}: refused with ReturnCode {frame.message.status.return_code}, "
                         "expected 401 or 400")


def _expect_ok(res: HttpResult, what: str) -> None:
    if res.status != 200:
        raise CaseFailed(f"{what}: HTTP {res.status}, expected 200")


@check("SEC-004")
async def sec_004(ctx: Context) -> None:
    from igrs.conformance.peer import TestPeer
    from igrs.wire.bodies import pipes as pb

    pipe = await (await TestPeer.of(ctx)).pipe()
    seal = pipe._sealer()
    assert seal is not None
    probe = pb.DeviceOnlineDetectionRequest(pipe.pipe_id)
    (qa, a), (qb, b) = [(q, seal(probe, q)) for q in (new_seq(), new_seq())]
    _expect_ok(await _send_sealed(ctx, pipe, b, qb, "record n+1 sent first"), "record n+1")
    _expect_ok(await _send_sealed(ctx, pipe, a, qa, "record n sent after n+1"), "record n after n+1")
    qs = new_seq()
    stale = seal(probe, qs)
    for _ in range(1100):
        seal(probe, 1)  # advance our record counter without sending
    qt = new_seq()
    _expect_ok(await _send_sealed(ctx, pipe, seal(probe, qt), qt, "record 1,100 counters ahead"),
               "the newest record")
    _expect_refused(await _send_sealed(ctx, pipe, stale, qs, "stale record, 1,100 counters behind"),
                    "a record older than the replay window")
    qf = new_seq()
    _expect_ok(await _send_sealed(ctx, pipe, seal(probe, qf), qf, "fresh record after the refusal"),
               "a fresh record after the stale one")


@check("SEC-005")
async def sec_005(ctx: Context) -> None:
    import dataclasses

    from igrs.conformance.peer import TestPeer
    from igrs.wire.bodies import pipes as pb

    pipe = await (await TestPeer.of(ctx)).pipe()
    seal = pipe._sealer()
    assert seal is not None
    seq = new_seq()
    good = seal(pb.DeviceOnlineDetectionRequest(pipe.pipe_id), seq)
    assert isinstance(good, pb.SecureMessage)
    record = good.record
    flipped = record[:-20] + bytes([record[-20] ^ 0x01]) + record[-19:]
    variants: list[tuple[str, pb.SecureMessage, dict[str, Any]]] = [
        ("one ciphertext bit flipped", dataclasses.replace(good, record=flipped), {}),
        ("last 8 bytes cut off", dataclasses.replace(good, record=record[:-8]), {}),
        ("record cut to 5 bytes", dataclasses.replace(good, record=record[:5]), {}),
        ("another PipeId", dataclasses.replace(good, pipe_id=(pipe.pipe_id % 0xFFFFFFFE) + 1), {}),
        ("01-SequenceId header changed", good, {"replace": {"01-SequenceId": str(seq ^ 0x5A5A)}}),
    ]
    for note, variant, edits in variants:
        _expect_refused(await _send_sealed(ctx, pipe, variant, seq, note, **edits), f"a record with {note}")
    _expect_ok(await _send_sealed(ctx, pipe, good, seq, "the unaltered record, last"),
               "the unaltered record after the altered copies")
