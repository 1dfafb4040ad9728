"""Checks of ``specs/conformance/cases-groups.toml``: device groups (9.5, 9.8), specs/groups.md.

Group searches and spoofed or malformed group datagrams are raw ISDP (``rawnet``, every
byte recorded); joins and quits are sealed in the run's secure pipe (``TestPeer``, the
plaintext recorded). The groups the device advertises are learnt from its answers to a
group search and from the group advertisements the run's ``GroupListener`` heard.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import re
from dataclasses import dataclass

from igrs.conformance.cases import GRACE, SEARCH_MX
from igrs.conformance.peer import TestPeer, status_of
from igrs.conformance.rawnet import Datagram, UnicastSocket, http_exchange
from igrs.conformance.runner import CaseFailed, CaseSkipped, Context, check
from igrs.constants import DESCRIPTION_PATH, GROUP_ST_ALL, MAX_DATAGRAM
from igrs.errors import IGRSError, ProtocolError
from igrs.wire import description as ddesc
from igrs.wire import group_datagrams as wg
from igrs.wire.bodies.groups import (
    JoinCentralisedDeviceGroupRequest,
    JoinCentralisedDeviceGroupResponse,
    QuitCentralisedDeviceGroupNotify,
)
from igrs.wire.group_datagrams import GroupId, GroupKind
from igrs.wire.ids import DeviceId
from igrs.wire.messages import ErrorResponse, Frame, SoapMessage

WAIT = SEARCH_MX + GRACE + 0.5  # s a search collects answers
SENT_FACT = "group_datagrams_sent"  # what the suite multicast itself (heard back on loopback)
ANSWERS_FACT = "group_answers"  # GRP-001's answers, reused by later cases
WITNESS_FACT = "group_witness"
WITNESS_ERROR = "group_witness_error"
JOINER_NAME = "igrs conformance"
_GROUP_NT = re.compile(rb"(?im)^NT[ \t]*:[ \t]*urn:IGRS:DeviceGroup:")


@dataclass(frozen=True, slots=True)
class Answer:
    """One SearchDeviceGroupResponse from the device under test."""

    delay: float  # s after the search was sent
    msg: wg.SearchDeviceGroupResponse
    dg: Datagram


# --- raw group datagrams -------------------------------------------------------------------------
def search_bytes(ctx: Context, st: str) -> bytes:
    """A SearchDeviceGroupRequest (MX 1, type and source headers) for ``st``, which may be any
    text (``isdp:all``): the codec builds it for every group, then the ST line is replaced."""
    req = wg.SearchDeviceGroupRequest(None, SEARCH_MX, ctx.searcher_id)
    data = wg.encode(req, host=f"{ctx.group}:{ctx.isdp_port}")
    return data.replace(f"ST: {GROUP_ST_ALL}\r\n".encode(), f"ST: {st}\r\n".encode(), 1)


def _remember_sent(ctx: Context, data: bytes) -> None:
    ctx.facts.setdefault(SENT_FACT, set()).add(data)


async def multicast(ctx: Context, items: list[tuple[str, bytes]], spacing: float = 0.0) -> None:
    """Send each (note, datagram) to the ISDP group from a fresh unicast socket of the test device."""
    sock = UnicastSocket(ctx.iface, ctx.rec)
    try:
        for note, data in items:
            _remember_sent(ctx, data)
            try:
                await sock.send(data, ctx.group_addr, note)
            except OSError as exc:  # e.g. EMSGSIZE: say so, go on
                ctx.rec.add("!", "", b"", f"{note}: not sent ({exc})")
            if spacing:
                await asyncio.sleep(spacing)
    finally:
        sock.close()


async def group_search(ctx: Context, st: str, until: GroupId | None = None) -> list[Answer]:
    """Search ``st`` (MX 1); the device's answers (collection stops early at one for ``until``).
    An answer from the device's address that does not decode fails the case."""
    data = search_bytes(ctx, st)
    _remember_sent(ctx, data)
    sock = UnicastSocket(ctx.iface, ctx.rec)
    try:
        sent = await sock.send(data, ctx.group_addr, f"group search ST {st} MX {SEARCH_MX} "
                                                     f"from {sock.address[0]}:{sock.address[1]}")
        got = await sock.collect(WAIT, until=None if until is None else lambda d: str(until).encode() in d)
    finally:
        sock.close()
    answers = []
    for dg in got:
        try:
            msg = wg.decode(dg.data)
        except wg.NotGroupDatagram:
            continue  # another layer's datagram (recorded): not a group answer
        except ProtocolError as exc:
            if dg.source[0] != ctx.host:
                continue  # another device's problem
            raise CaseFailed(f"group search answer from {dg.source[0]}:{dg.source[1]} does not decode: {exc}") \
                from None
        if isinstance(msg, wg.SearchDeviceGroupResponse) and msg.device_id == ctx.device_id:
            answers.append(Answer(dg.at - sent, msg, dg))
    return answers


def _late(answers: list[Answer]) -> str:
    late = [a for a in answers if a.delay > SEARCH_MX + GRACE]
    if not late:
        return ""
    return f"answer for {late[0].msg.group_id} after {late[0].delay:.2f} s > MX {SEARCH_MX} s + grace {GRACE} s"


# --- what the device advertises ------------------------------------------------------------------------
def _heard_group_notifies(ctx: Context) -> list[Datagram]:
    """Group NOTIFYs heard on the ISDP group that name the device and that the suite did not send."""
    assert ctx.listener is not None and ctx.device_id is not None
    me = str(ctx.device_id).lower().encode()
    sent = ctx.facts.get(SENT_FACT, set())
    return [dg for dg in ctx.listener.heard
            if dg.data.startswith(b"NOTIFY") and _GROUP_NT.search(dg.data) and me in dg.data.lower()
            and dg.data not in sent]


Advertisement = wg.PeerDeviceGroupAdvertisement | wg.CentralisedDeviceGroupAdvertisement


def advertised(ctx: Context) -> dict[GroupId, Advertisement]:
    """The device's groups by its advertisements heard so far: the latest alive per group,
    dropped when a quit from the device followed it."""
    out: dict[GroupId, Advertisement] = {}
    for dg in _heard_group_notifies(ctx):
        try:
            msg = wg.decode(dg.data)
        except ProtocolError:
            continue  # GRP-003 judges these
        if isinstance(msg, wg.PeerDeviceGroupAdvertisement | wg.CentralisedDeviceGroupAdvertisement):
            if _sender(msg) == ctx.device_id:
                out[msg.group_id] = msg
        elif isinstance(msg, wg.QuitPeerDeviceGroupNotify | wg.QuitCentralisedDeviceGroupAdvertisement):
            out.pop(msg.group_id, None)
    return out


def _sender(msg: wg.GroupDatagram) -> DeviceId | None:
    return getattr(msg, "device_id", None) or getattr(msg, "master_id", None)


async def all_answers(ctx: Context) -> list[Answer]:
    """GRP-001's answers to the all-groups search, or a new search."""
    if ANSWERS_FACT not in ctx.facts:
        ctx.facts[ANSWERS_FACT] = await group_search(ctx, GROUP_ST_ALL)
    answers: list[Answer] = ctx.facts[ANSWERS_FACT]
    return answers


async def mastered(ctx: Context) -> dict[GroupId, str]:
    """Centralised groups the device masters, with their names: by its advertisements and
    GRP-001's answers; searched for only when neither names one."""
    out = {gid: adv.name for gid, adv in advertised(ctx).items()
           if isinstance(adv, wg.CentralisedDeviceGroupAdvertisement)}
    if not out or ANSWERS_FACT in ctx.facts:
        out.update({a.msg.group_id: a.msg.name for a in await all_answers(ctx)
                    if a.msg.kind is GroupKind.CENTRALISED and a.msg.master_id == ctx.device_id})
    return out


async def a_mastered_group(ctx: Context) -> tuple[GroupId, str]:
    """(id, name) of a centralised group the device masters; skip the case if there is none."""
    groups = await mastered(ctx)
    if not groups:
        raise CaseSkipped("the device masters no centralised group (no group search answer or "
                          "advertisement says so)")
    return min(groups.items())


# --- messages in the secure pipe ---------------------------------------------------------------------
async def exchange(peer: TestPeer, message: SoapMessage, note: str) -> tuple[int, Frame | None]:
    """Send ``message`` sealed in ``peer``'s pipe; (SequenceId, opened answer or None for an
    empty 200), both recorded."""
    pipe = await peer.pipe()
    peer.record_message(">", message, f"sealed in pipe {pipe.pipe_id}; {note}")
    try:
        seq, frame = await pipe.exchange(message)
    except (IGRSError, OSError) as exc:
        peer.ctx.rec.add("!", peer.record.location, b"", f"{type(exc).__name__}: {exc}")
        raise CaseFailed(f"{note}: no usable answer ({exc})") from None
    if frame is None:
        peer.ctx.rec.add("<", peer.record.location, b"", f"empty 200 to SequenceId {seq}")
    else:
        peer.record_message("<", frame.message, f"answer to SequenceId {seq}, opened")
    return seq, frame


def _code(frame: Frame | None, seq: int, what: str) -> int:
    """The answer's ReturnCode, its AcknowledgeId checked (an empty 200 fails: a response was due)."""
    if frame is None:
        raise CaseFailed(f"{what}: answered with an empty 200, not a response")
    code, ack, _ = status_of(frame)
    if ack != seq:
        raise CaseFailed(f"{what}: AcknowledgeId {ack} != SequenceId {seq}")
    return code


def _refusal(frame: Frame | None, seq: int, what: str) -> int:
    """The ReturnCode of an answer that must refuse; 501 (groups not served) skips the case."""
    code = _code(frame, seq, what)
    if code == 501:
        raise CaseSkipped(f"the device does not serve JoinCentralisedDeviceGroupRequest (501): {what}")
    return code


async def join(peer: TestPeer, gid: GroupId, what: str, name: str = "") -> JoinCentralisedDeviceGroupResponse:
    """Join ``gid`` through ``peer``: a 200 JoinCentralisedDeviceGroupResponse with a lease and
    a member list that names neither the requester nor the master."""
    seq, frame = await exchange(peer, JoinCentralisedDeviceGroupRequest(gid, JOINER_NAME), what)
    code = _code(frame, seq, what)
    assert frame is not None
    msg = frame.message
    if not isinstance(msg, JoinCentralisedDeviceGroupResponse):
        reason = getattr(getattr(msg, "status", None), "reason", "")
        raise CaseFailed(f"{what}: {frame.routing.message_type} ReturnCode {code} {reason}".rstrip())
    if code != 200:
        raise CaseFailed(f"{what}: ReturnCode {code} {msg.status.reason}, expected 200".rstrip())
    if msg.group_id != gid:
        raise CaseFailed(f"{what}: DeviceGroupId {msg.group_id} is not the requested {gid}")
    if msg.lease <= 0:
        raise CaseFailed(f"{what}: LeaseTime {msg.lease}")
    if peer.cp.device_id in msg.members or peer.record.device_id in msg.members:
        raise CaseFailed(f"{what}: MemberList names the requester or the master (it lists the other slaves)")
    if name and msg.group_name and msg.group_name != name:
        raise CaseFailed(f"{what}: DeviceGroupName {msg.group_name!r} != advertised {name!r}")
    return msg


async def quit_quietly(peer: TestPeer, gid: GroupId) -> None:
    """Clean-up: leave ``gid`` (not judged)."""
    with contextlib.suppress(CaseFailed, CaseSkipped, IGRSError, OSError):
        await exchange(peer, QuitCentralisedDeviceGroupNotify(gid), "clean-up: leave the group")


class Witness(TestPeer):
    """A second test device (its own device id) for what the first cannot see about itself:
    the master's MemberList lists the *other* slaves. Paired with the PIN the device shows next."""

    @classmethod
    async def of(cls, ctx: Context) -> Witness:
        witness: Witness | None = ctx.facts.get(WITNESS_FACT)
        if witness is None:
            from igrs.node.control import ControlPoint

            record = (await TestPeer.of(ctx)).record
            cp = ControlPoint(interfaces=[ctx.iface.address], port=ctx.isdp_port, device_id=DeviceId.new(),
                              name="igrs conformance witness", keepalive_interval=0)
            await cp.start()
            witness = cls(ctx, cp, record)
            ctx.facts[WITNESS_FACT] = witness
            ctx.closers.append(witness.close)
        await witness._pair()
        return witness

    async def _pair(self) -> None:
        if self.paired:
            return
        if WITNESS_ERROR in self.ctx.facts:
            raise CaseSkipped(f"the witness could not pair earlier: {self.ctx.facts[WITNESS_ERROR]}")
        if self.ctx.pin is None:
            raise CaseSkipped("needs --pin")
        try:
            paired = await self.cp.pair(self.record, self.ctx.pin)
        except (IGRSError, OSError, TimeoutError) as exc:
            self.ctx.facts[WITNESS_ERROR] = str(exc) or type(exc).__name__
            self.ctx.rec.add("!", self.record.location, b"", f"witness pairing failed: {exc}")
            raise CaseSkipped(f"a second pairing (the witness) failed: {exc}") from None
        self.paired = True
        self.ctx.rec.add("<", self.record.location, b"", f"witness {self.cp.device_id} paired, "
                                                         f"fingerprint {paired.fingerprint}")


# --- 9.8: group search --------------------------------------------------------------------------------
@check("GRP-001")
async def grp_001(ctx: Context) -> None:
    adverts = advertised(ctx)
    answers = await group_search(ctx, GROUP_ST_ALL)
    ctx.facts[ANSWERS_FACT] = answers
    if not answers and not adverts:
        raise CaseSkipped("the device advertises no group (no group advertisement heard, no search answer)")
    if not answers:
        raise CaseFailed(f"no SearchDeviceGroupResponse within {WAIT:.1f} s, though the device advertised "
                         f"{len(adverts)} group(s): {', '.join(map(str, adverts))}")
    if late := _late(answers):
        raise CaseFailed(late)
    answered = {a.msg.group_id for a in answers}
    for gid in [g for g in adverts if g not in answered]:  # past the byte cap: ask for it alone
        own = [a for a in await group_search(ctx, str(gid), until=gid) if a.msg.group_id == gid]
        if not own:
            raise CaseFailed(f"advertised group {gid} is not answered, not even to a search for its id")
        if late := _late(own):
            raise CaseFailed(late)


@check("GRP-002")
async def grp_002(ctx: Context) -> None:
    answers = await all_answers(ctx)
    if not answers:
        raise CaseSkipped("no group search answer (GRP-001)")
    adverts = advertised(ctx)
    seen: set[GroupId] = set()
    for a in answers:
        msg, dg = a.msg, a.dg
        ctx.rec.add("<", f"{dg.source[0]}:{dg.source[1]}", dg.data, "checked answer")
        if not dg.data.startswith(b"HTTP/1.1 200 "):
            line = dg.data.split(b"\r\n", 1)[0][:40]
            raise CaseFailed(f"status line {line!r} is not HTTP/1.1 200 OK")
        if msg.target is not None:
            raise CaseFailed(f"ST {msg.target} is not the request's {GROUP_ST_ALL}")
        if msg.requester != ctx.searcher_id:
            raise CaseFailed(f"01-TargetDeviceId {msg.requester} is not the searcher {ctx.searcher_id}")
        if dg.source[0] != ctx.host:
            raise CaseFailed(f"answer from {dg.source[0]}, not the device's address {ctx.host} (LOCATION)")
        if msg.group_id in seen:
            raise CaseFailed(f"two answers for group {msg.group_id} to one search")
        seen.add(msg.group_id)
        if msg.kind is GroupKind.CENTRALISED and msg.master_id != ctx.device_id:
            raise CaseFailed(f"answers for centralised group {msg.group_id} whose master is {msg.master_id}")
        _consistent(msg, adverts.get(msg.group_id))


def _consistent(msg: wg.SearchDeviceGroupResponse, adv: Advertisement | None) -> None:
    """A search answer says what the advertisement of the same group said."""
    if adv is None:
        return
    kind = GroupKind.CENTRALISED if isinstance(adv, wg.CentralisedDeviceGroupAdvertisement) else GroupKind.PEER
    if msg.kind is not kind:
        raise CaseFailed(f"group {msg.group_id}: answered as {msg.kind.value}, advertised as {kind.value}")
    if msg.name != adv.name:
        raise CaseFailed(f"group {msg.group_id}: answered name {msg.name!r}, advertised {adv.name!r}")
    if msg.max_age != adv.max_age:
        raise CaseFailed(f"group {msg.group_id}: answered max-age {msg.max_age}, advertised {adv.max_age}")


@check("GRP-011")
async def grp_011(ctx: Context) -> None:
    expected = {a.msg.group_id for a in await all_answers(ctx)}
    if not expected:
        raise CaseSkipped(f"no group answered a search for {GROUP_ST_ALL} (GRP-001)")
    answers = await group_search(ctx, "isdp:all")
    got = {a.msg.group_id for a in answers}
    if missing := expected - got:
        raise CaseFailed(f"ST isdp:all (with the type header): no answer for {', '.join(map(str, missing))}")
    if late := _late(answers):
        raise CaseFailed(late)
    if wrong := [a for a in answers if a.msg.target is not None]:
        raise CaseFailed(f"ST {wrong[0].msg.target} in the answer does not mean every group")


# --- 9.5: advertisements ---------------------------------------------------------------------------
@check("GRP-003")
async def grp_003(ctx: Context) -> None:
    heard = _heard_group_notifies(ctx)
    if not heard:
        raise CaseSkipped("no group advertisement from the device heard since the run began (they go out "
                          "when a group is created, then every 720-900 s)")
    host = f"{ctx.group}:{ctx.isdp_port}"
    for dg in heard:
        ctx.rec.add("<", f"{dg.source[0]}:{dg.source[1]}", dg.data, "heard on the group")
        _check_notify(ctx, dg, host)


def _check_notify(ctx: Context, dg: Datagram, host: str) -> None:
    from igrs.wire.httpu import parse_message

    if len(dg.data) > MAX_DATAGRAM:
        raise CaseFailed(f"group NOTIFY of {len(dg.data)} bytes > MAX_DATAGRAM {MAX_DATAGRAM}")
    try:
        msg = wg.decode(dg.data)
    except ProtocolError as exc:
        raise CaseFailed(f"group NOTIFY from {dg.source[0]} does not decode: {exc}") from None
    if (sender := _sender(msg)) != ctx.device_id:
        raise CaseFailed(f"{msg.message_type}: USN {sender} is not the device {ctx.device_id}")
    headers = parse_message(dg.data, max_size=MAX_DATAGRAM, allow_body=False).headers
    if (headers.get("HOST") or "").strip().lower() != host:
        raise CaseFailed(f"{msg.message_type}: HOST {headers.get('HOST')!r} is not {host}")
    source_id = headers.get(f"{headers.igrs_prefix()}-SourceDeviceId")
    if source_id is not None and DeviceId.parse(source_id) != ctx.device_id:
        raise CaseFailed(f"{msg.message_type}: 01-SourceDeviceId {source_id} is not the device")
    if dg.source[0] != ctx.host:
        raise CaseFailed(f"{msg.message_type} sent from {dg.source[0]}, not the device's address {ctx.host}")


@check("GRP-008")
async def grp_008(ctx: Context) -> None:
    groups = {a.msg.group_id: a.msg.name for a in await all_answers(ctx)}
    groups.update({gid: adv.name for gid, adv in advertised(ctx).items() if gid not in groups})
    if not groups:
        raise CaseSkipped("the device advertises no group")
    req = f"GET {DESCRIPTION_PATH} HTTP/1.1\r\nHost: {ctx.host}:{ctx.port}\r\nConnection: close\r\n\r\n"
    res = await http_exchange(ctx.host, ctx.port, req.encode(), ctx.rec)
    if res.status != 200:
        raise CaseFailed(f"GET {DESCRIPTION_PATH} answered HTTP {res.status}")
    try:
        listed = {GroupId.parse(g.group_id): g.name for g in ddesc.from_bytes(res.body).groups}
    except (IGRSError, ValueError) as exc:
        raise CaseFailed(f"the description's joinedGroupList does not read: {exc}") from None
    for gid, name in groups.items():
        if gid not in listed:
            raise CaseFailed(f"group {gid} ({name!r}) is advertised but not in joinedGroupList")
        if listed[gid] != name:
            raise CaseFailed(f"group {gid}: deviceGroupName {listed[gid]!r}, advertised {name!r}")


# --- 9.5: joining and leaving (secure pipe) -------------------------------------------------------------
@check("GRP-004")
async def grp_004(ctx: Context) -> None:
    peer = await TestPeer.of(ctx)
    gid = GroupId.new()
    what = f"join of unknown group {gid}"
    seq, frame = await exchange(peer, JoinCentralisedDeviceGroupRequest(gid, JOINER_NAME), what)
    code = _refusal(frame, seq, what)
    if code != 404:
        raise CaseFailed(f"{what}: ReturnCode {code}, expected 404")
    assert frame is not None
    msg = frame.message
    if isinstance(msg, JoinCentralisedDeviceGroupResponse) and msg.group_id != gid:
        raise CaseFailed(f"{what}: DeviceGroupId {msg.group_id} is not the requested one")
    if not isinstance(msg, JoinCentralisedDeviceGroupResponse | ErrorResponse):
        raise CaseFailed(f"{what}: answered {frame.routing.message_type}")


@check("GRP-005")
async def grp_005(ctx: Context) -> None:
    gid, name = await a_mastered_group(ctx)
    peer = await TestPeer.of(ctx)
    try:
        await join(peer, gid, f"join of {gid}", name)
        await join(peer, gid, f"second join of {gid} (lease renewal)", name)
    finally:
        await quit_quietly(peer, gid)


@check("GRP-006")
async def grp_006(ctx: Context) -> None:
    gid, _ = await a_mastered_group(ctx)
    peer = await TestPeer.of(ctx)
    me = peer.cp.device_id
    await join(peer, gid, f"join of {gid}")
    witness: Witness | None = None
    quitted, missing = False, ""
    try:
        try:
            witness = await Witness.of(ctx)
        except CaseSkipped as exc:
            missing = str(exc)
        if witness is not None:
            first = await join(witness, gid, f"witness joins {gid}")
            if me not in first.members:
                raise CaseFailed(f"the witness's MemberList does not name the test device {me}, a member")
        _, frame = await exchange(peer, QuitCentralisedDeviceGroupNotify(gid), f"quit {gid}")
        quitted = True
        if frame is not None:
            raise CaseFailed(f"QuitCentralisedDeviceGroupNotify answered with {frame.routing.message_type} "
                             f"(ReturnCode {status_of(frame)[0]}), not an empty 200")
        if witness is None:
            raise CaseSkipped(f"the quit was acknowledged with an empty 200; whether the member was removed "
                              f"needs a second paired test device: {missing}")
        again = await join(witness, gid, f"witness renews {gid} after the test device quit")
        if me in again.members:
            raise CaseFailed(f"after its QuitCentralisedDeviceGroupNotify the test device {me} is still in "
                             f"the MemberList")
    finally:
        if not quitted:
            await quit_quietly(peer, gid)
        if witness is not None:
            await quit_quietly(witness, gid)


@check("GRP-007")
async def grp_007(ctx: Context) -> None:
    peer = await TestPeer.of(ctx)
    for bad in ("urn:IGRS:DeviceGroup:bad id!", "not-a-group-id"):
        what = f"join with DeviceGroupId {bad!r}"
        message = JoinCentralisedDeviceGroupRequest(bad, JOINER_NAME)  # type: ignore[arg-type]
        seq, frame = await exchange(peer, message, what)
        code = _refusal(frame, seq, what)
        if code != 400:
            raise CaseFailed(f"{what}: ReturnCode {code}, expected 400")


# --- robustness ------------------------------------------------------------------------------------
@check("GRP-009")
async def grp_009(ctx: Context) -> None:
    gid, _ = await a_mastered_group(ctx)
    assert ctx.device_id is not None
    spoof = wg.encode(wg.QuitCentralisedDeviceGroupAdvertisement(gid, ctx.device_id),
                      host=f"{ctx.group}:{ctx.isdp_port}")
    note = f"spoofed QuitCentralisedDeviceGroupAdvertisement for {gid} from the test device's socket"
    await multicast(ctx, [(note, spoof), (note + " (copy)", spoof)], spacing=0.1)
    await asyncio.sleep(0.5)
    own = [a for a in await group_search(ctx, str(gid), until=gid) if a.msg.group_id == gid]
    if not own:
        raise CaseFailed(f"after a spoofed quit the device no longer answers a search for its group {gid}")
    if late := _late(own):
        raise CaseFailed(f"after a spoofed quit: {late}")


def garbage(ctx: Context) -> list[tuple[str, bytes]]:
    """Malformed group datagrams (each is dropped by the group decoder, groups.md §3.7)."""
    rnd = random.Random(10)
    search = search_bytes(ctx, GROUP_ST_ALL)
    gid, me, host = GroupId.new(), ctx.searcher_id, f"{ctx.group}:{ctx.isdp_port}"
    adv = wg.encode(wg.CentralisedDeviceGroupAdvertisement(gid, me, 60, "Garbage", 1), host=host)
    answer = wg.encode(wg.SearchDeviceGroupResponse(gid, me, GroupKind.PEER, 60, None, "", None, None), host="")
    return [
        ("truncated group search", search[: len(search) // 2]),
        ("group search with MX x", search.replace(b"MX: 1\r\n", b"MX: x\r\n")),
        ("group search for a malformed group id", search_bytes(ctx, "urn:IGRS:DeviceGroup:bad id!")),
        ("group search claiming IGRS/2.0", search.replace(b"IGRS/1.0\r\n", b"IGRS/2.0\r\n")),
        ("centralised advertisement, NT not a group id",
         adv.replace(f"NT: {gid}".encode(), b"NT: urn:IGRS:DeviceGroup:")),
        ("centralised advertisement, member count 12345",
         adv.replace(b"MemberCount: 1\r\n", b"MemberCount: 12345\r\n")),
        ("centralised advertisement with NTS isdp:byebye", adv.replace(b"isdp:alive", b"isdp:byebye")),
        ("SearchDeviceGroupResponse with status 404", answer.replace(b"200 OK", b"404 Not Found", 1)),
        ("random bytes with a group type header", bytes(rnd.randrange(256) for _ in range(200))
         + b"\r\n01-IGRSMessageType: SearchDeviceGroupRequest\r\n\r\n"),
        ("oversize group search", search[:-2] + b"X-Pad: " + b"a" * (MAX_DATAGRAM + 100) + b"\r\n\r\n"),
    ]


@check("GRP-010")
async def grp_010(ctx: Context) -> None:
    before = {a.msg.group_id for a in await all_answers(ctx)}
    if not before:
        raise CaseSkipped("no group answered a group search (GRP-001)")
    await multicast(ctx, garbage(ctx))
    await asyncio.sleep(0.3)
    answers = await group_search(ctx, GROUP_ST_ALL)
    if not answers:
        raise CaseFailed("the device no longer answers group searches after the malformed group datagrams")
    if missing := before - {a.msg.group_id for a in answers}:
        raise CaseFailed(f"after the malformed datagrams no answer for {', '.join(map(str, missing))}")
    if late := _late(answers):
        raise CaseFailed(f"after the malformed datagrams: {late}")
