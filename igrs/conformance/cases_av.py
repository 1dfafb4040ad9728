"""Checks of the AV profile cases (``specs/conformance/cases-av.toml``; rules: specs/av-profile.md),
and the helpers the File profile checks share (``cases_file.py``): the recorded service agent,
sessions with a service found by a search in the pipe, action calls whose refusals become
verdicts, raw HTTP fetches with their bytes kept as evidence.

The cases discover what the device offers: the MediaServer by a service search over the
secure pipe, items by browsing from object ``0``. A device without the service skips every
AV case except AV-001, which fails (the lab asked to certify the AV profile).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import re
import secrets
import ssl
from collections.abc import AsyncIterator, Collection, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from lxml import etree

from igrs.conformance.peer import TestPeer
from igrs.conformance.rawnet import HttpResult, http_exchange
from igrs.conformance.runner import CaseFailed, CaseSkipped, Context, NotApplicable, check
from igrs.errors import IGRSError

if TYPE_CHECKING:
    from igrs.node.service_agent import ServiceAgent, ServiceProxy
    from igrs.wire.bodies.services import ServiceInfo

MEDIA_SERVER = "urn:IGRS:ServiceType:MediaServer:1"
MEDIA_RENDERER = "urn:IGRS:ServiceType:MediaRenderer:1"
NS_DIDL = "urn:schemas-upnp-org:metadata-1-0/DIDL-Lite/"
NS_DC = "http://purl.org/dc/elements/1.1/"
NS_UPNP = "urn:schemas-upnp-org:metadata-1-0/upnp/"
WALK_CONTAINERS = 40  # containers a content walk visits at most
MAX_FETCH = 64 << 20  # bytes of a file the suite fetches whole at most
EVENT_WAIT = 3.0  # s for an evented state to arrive
PAGES = 20  # RequestedCount-1 pages read at most (AV-003)
_RECORDED = "_igrs_conformance_recorded"


# --- the service agent over the pipe, recorded ----------------------------------------------------
async def service_agent(ctx: Context) -> ServiceAgent:
    """The run's service agent (the TestPeer's, which also receives our notifications), with
    every request and answer recorded as plaintext evidence. Its requests go through
    ``TestPeer.pipe()``, which addresses the DUT by its record: the control point never heard
    the DUT by discovery (``ControlPoint.agent`` would look it up there and fail)."""
    peer = await TestPeer.of(ctx)
    agent = await peer.agent()
    if not getattr(agent, _RECORDED, False):
        agent.request = _recorded_request(peer)
        setattr(agent, _RECORDED, True)
    return agent


def _recorded_request(peer: TestPeer) -> Any:
    async def request(message: Any) -> Any:
        pipe = await peer.pipe()
        peer.record_message(">", message, f"sealed in pipe {pipe.pipe_id}")
        try:
            _, frame = await pipe.exchange(message)
        except (IGRSError, OSError) as exc:
            peer.ctx.rec.add("!", peer.record.location, b"", f"{type(exc).__name__}: {exc}")
            raise
        if frame is None:
            peer.ctx.rec.add("<", peer.record.location, b"", "empty 200")
        else:
            peer.record_message("<", frame.message, "answer, opened")
        return frame

    return request


def same_type(offered: str, wanted: str) -> bool:
    """Same service type name; any version from the wanted one up (a later version serves the
    earlier one's actions)."""
    base_o, _, ver_o = offered.rpartition(":")
    base_w, _, ver_w = wanted.rpartition(":")
    return (base_o.lower() == base_w.lower() and ver_o.isdigit() and ver_w.isdigit()
            and int(ver_o) >= int(ver_w))


async def find_service(ctx: Context, service_type: str) -> ServiceInfo | None:
    """The DUT's service of ``service_type`` (SearchServiceRequestOnDevice isdp:all in the pipe)."""
    agent = await service_agent(ctx)
    try:
        offered = await agent.services()
    except IGRSError as exc:
        raise CaseFailed(f"SearchServiceRequestOnDevice in the secure pipe was refused: {exc}") from None
    return next((s for s in offered if same_type(s.service_type, service_type)), None)


async def action_names(ctx: Context, info: ServiceInfo) -> set[str]:
    agent = await service_agent(ctx)
    try:
        desc = await agent.describe(info.service_id)
    except IGRSError as exc:
        raise CaseFailed(f"GetServiceDescriptionRequest of service {info.service_id} refused: {exc}") from None
    return {a.name for a in desc.actions}


async def expect_service(ctx: Context, service_type: str, what: str, actions: Collection[str]) -> None:
    """The profile-present case: the service exists (else FAIL) and names ``actions``."""
    info = await find_service(ctx, service_type)
    if info is None and ctx.profile == "all":  # "all": every case that applies to this device
        raise NotApplicable(f"the device has no {what} service ({service_type}); ask --profile for it "
                            "to require it")
    if info is None:
        raise CaseFailed(f"the device has no {what} service ({service_type}); the profile was asked for")
    missing = sorted(set(actions) - await action_names(ctx, info))
    if missing:
        raise CaseFailed(f"the {what} description lacks the actions {', '.join(missing)}")


@contextlib.asynccontextmanager
async def service_session(ctx: Context, service_type: str, what: str) -> AsyncIterator[ServiceProxy]:
    """A session with the DUT's ``what`` service; NotApplicable when it has none."""
    info = await find_service(ctx, service_type)
    if info is None:
        raise NotApplicable(f"the device has no {what} service ({service_type})")
    agent = await service_agent(ctx)
    try:
        proxy = await agent.open(info.service_id)
    except IGRSError as exc:
        raise CaseFailed(f"CreateSessionRequest with the {what} service was refused: {exc}") from None
    try:
        yield proxy
    finally:
        with contextlib.suppress(Exception):
            await proxy.close()


# --- action calls -----------------------------------------------------------------------------------
def return_code(exc: IGRSError) -> int:
    """The DUT's code, including profile codes outside ``ReturnCode`` (416, 422, 460, 507)."""
    from igrs.profiles.file.client import error_code

    code = error_code(exc)
    return int(code if code is not None else exc.return_code)


def _shown(args: dict[str, Any]) -> str:
    return ", ".join(f"{k}={str(v)[:60]!r}" for k, v in args.items())


async def invoke(proxy: ServiceProxy, action: str, **args: Any) -> Any:
    """Call ``action``; a refusal fails the case (the check expected it to work)."""
    try:
        return await proxy.call(action, **args)
    except IGRSError as exc:
        raise CaseFailed(f"{action}({_shown(args)}) was refused: ReturnCode {return_code(exc)} "
                         f"({exc.reason[:120]})") from None


async def refusal(proxy: ServiceProxy, action: str, **args: Any) -> tuple[int | None, Any]:
    """(ReturnCode, None) when ``action`` is refused, (None, result) when it is answered."""
    try:
        return None, await proxy.call(action, **args)
    except IGRSError as exc:
        return return_code(exc), None


async def expect_refused(proxy: ServiceProxy, codes: Collection[int], action: str, **args: Any) -> str:
    """'' when ``action`` is refused with one of ``codes``, else the problem in words."""
    code, result = await refusal(proxy, action, **args)
    wanted = " or ".join(map(str, sorted(codes)))
    if code is None:
        return f"{action}({_shown(args)}) was answered (result {str(result)[:80]!r}), expected {wanted}"
    if code not in codes:
        return f"{action}({_shown(args)}) → ReturnCode {code}, expected {wanted}"
    return ""


async def attributes(proxy: ServiceProxy, *names: str) -> dict[str, Any]:
    """findServiceAttribute of ``names`` (at least two)."""
    try:
        return dict(await proxy.get(*names))
    except IGRSError as exc:
        raise CaseFailed(f"findServiceAttribute {', '.join(names)} was refused: {exc}") from None


def fail_if(problems: Sequence[str], limit: int = 6) -> None:
    if problems:
        more = f" (+{len(problems) - limit} more)" if len(problems) > limit else ""
        raise CaseFailed("; ".join(problems[:limit]) + more)


# --- raw HTTP ---------------------------------------------------------------------------------------
def http_request(method: str, target: str, host: str, port: int, headers: Sequence[tuple[str, str]] = (),
                 body: bytes = b"") -> bytes:
    """A raw HTTP/1.1 request; ``target`` is sent exactly as given (traversal forms included)."""
    lines = [f"{method} {target} HTTP/1.1", f"Host: {host}:{port}", *(f"{k}: {v}" for k, v in headers)]
    if body or method in ("PUT", "PATCH", "POST"):
        lines.append(f"Content-Length: {len(body)}")
    lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def dechunk(res: HttpResult) -> HttpResult:
    """The body of a chunked answer decoded (``http_exchange`` keeps the raw bytes)."""
    if (res.header("Transfer-Encoding") or "").lower() != "chunked":
        return res
    data, out = res.body, bytearray()
    while data:
        size_line, _, rest = data.partition(b"\r\n")
        try:
            size = int(size_line.split(b";")[0].strip() or b"0", 16)
        except ValueError:
            break
        if size == 0:
            break
        out += rest[:size]
        data = rest[size + 2:]
    return HttpResult(res.status, res.headers, bytes(out), res.raw)


async def fetch(ctx: Context, url: str, method: str = "GET", headers: Sequence[tuple[str, str]] = (),
                body: bytes = b"", note: str = "", tls: ssl.SSLContext | None = None) -> HttpResult:
    """One raw HTTP exchange with the DUT, recorded. ``url`` is absolute or a path on the DUT's
    HTTP endpoint; the path part is sent unchanged. ``tls``: inside TLS with this client context."""
    host, port, target = split_url(ctx, url)
    try:
        res = await http_exchange(host, port, http_request(method, target, host, port, headers, body),
                                  ctx.rec, note=note or f"{method} {target[:80]}", timeout=10.0, tls=tls)
    except (OSError, TimeoutError, ValueError) as exc:
        raise CaseFailed(f"{method} {target[:80]}: no HTTP answer ({type(exc).__name__}: {exc})") from None
    return dechunk(res)


def split_url(ctx: Context, url: str) -> tuple[str, int, str]:
    if url.startswith("/"):
        return ctx.host, ctx.port, url
    m = re.match(r"^https?://(\[[^\]]+\]|[^/:]+)(?::(\d+))?(/.*)?$", url, re.I)
    if m is None:
        raise CaseFailed(f"not an http URL: {url[:100]!r}")
    return m.group(1).strip("[]"), int(m.group(2) or 80), m.group(3) or "/"


def tester_address(ctx: Context) -> str:
    return ctx.iface.address


def is_loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


# --- DIDL-Lite --------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class DidlObject:
    id: str
    parent_id: str
    container: bool
    cls: str
    title: str
    url: str = ""
    mime: str = ""
    size: int | None = None


@dataclass(frozen=True, slots=True)
class BrowsePage:
    objects: list[DidlObject]
    total: int
    update_id: int


_MIME = re.compile(r"^[A-Za-z0-9!#$&^_.+-]+/[A-Za-z0-9!#$&^_.+-]+$")
_DURATION = re.compile(r"^\d+:\d{2}:\d{2}(\.\d+)?$")


def _object(el: etree._Element, parent: str | None) -> tuple[DidlObject, list[str]]:
    """One container/item element and what is wrong with it (av-profile.md §4)."""
    problems: list[str] = []
    container = el.tag == f"{{{NS_DIDL}}}container"
    oid, pid = el.get("id") or "", el.get("parentID")
    where = f"{'container' if container else 'item'} {oid!r}"
    if not oid:
        problems.append(f"{where}: no id")
    if pid is None:
        problems.append(f"{where}: no parentID")
    elif parent is not None and pid != parent:
        problems.append(f"{where}: parentID {pid!r}, expected {parent!r}")
    if el.get("restricted") not in ("1", "0", "true", "false"):
        problems.append(f"{where}: restricted missing or not a boolean")
    title = el.findtext(f"{{{NS_DC}}}title")
    cls = el.findtext(f"{{{NS_UPNP}}}class") or ""
    if not title:
        problems.append(f"{where}: no dc:title")
    wanted = "object.container" if container else "object.item"
    if not cls.startswith(wanted):
        problems.append(f"{where}: upnp:class {cls!r} does not start with {wanted}")
    if container and el.get("childCount") is not None and not el.get("childCount", "").isdigit():
        problems.append(f"{where}: childCount {el.get('childCount')!r} is not a count")
    url = mime = ""
    size = None
    for res in el.findall(f"{{{NS_DIDL}}}res"):
        info = (res.get("protocolInfo") or "").split(":")
        text = (res.text or "").strip()
        if len(info) != 4 or not _MIME.match(info[2]):
            problems.append(f"{where}: res protocolInfo {res.get('protocolInfo')!r} is not "
                            "protocol:network:MIME:extra")
        if not re.match(r"^[a-z][a-z0-9+.-]*://[^/]", text, re.I):
            problems.append(f"{where}: res {text[:60]!r} is not an absolute URL")
        if res.get("size") is not None and not (res.get("size") or "").isdigit():
            problems.append(f"{where}: res size {res.get('size')!r} is not a byte count")
        if res.get("duration") is not None and not _DURATION.match(res.get("duration") or ""):
            problems.append(f"{where}: res duration {res.get('duration')!r} is not H:MM:SS[.mmm]")
        if not url and text.lower().startswith("http://") and len(info) == 4:
            url, mime = text, info[2]
            size = int(res.get("size") or "") if (res.get("size") or "").isdigit() else None
    return DidlObject(oid, pid or "", container, cls, title or "", url, mime, size), problems


def parse_result(result: Any, what: str, parent: str | None = None) -> BrowsePage:
    """A Browse/Search result checked against av-profile.md §4; CaseFailed says what is wrong."""
    if not isinstance(result, dict):
        raise CaseFailed(f"{what}: the result is {type(result).__name__}, not a dict of strings")
    missing = [k for k in ("Result", "NumberReturned", "TotalMatches", "UpdateID") if k not in result]
    if missing:
        raise CaseFailed(f"{what}: the result lacks {', '.join(missing)}")
    counts = {k: str(result[k]) for k in ("NumberReturned", "TotalMatches", "UpdateID")}
    bad = [k for k, v in counts.items() if not v.isdigit()]
    if bad:
        raise CaseFailed(f"{what}: {', '.join(f'{k}={counts[k]!r}' for k in bad)} not a non-negative integer")
    parser = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=False)
    try:
        root = etree.fromstring(str(result["Result"]).encode("utf-8"), parser)
    except etree.XMLSyntaxError as exc:
        raise CaseFailed(f"{what}: Result is not well-formed XML: {exc}") from None
    if root.tag != f"{{{NS_DIDL}}}DIDL-Lite":
        raise CaseFailed(f"{what}: Result's root is {root.tag!s}, not DIDL-Lite in {NS_DIDL}")
    objects, problems = [], []
    for el in root:
        if el.tag in (f"{{{NS_DIDL}}}container", f"{{{NS_DIDL}}}item"):
            obj, wrong = _object(el, parent)
            objects.append(obj)
            problems += wrong
    returned, total = int(counts["NumberReturned"]), int(counts["TotalMatches"])
    if returned != len(objects):
        problems.append(f"NumberReturned {returned} but Result holds {len(objects)} objects")
    if total < returned:
        problems.append(f"TotalMatches {total} < NumberReturned {returned}")
    ids = [o.id for o in objects]
    if len(set(ids)) != len(ids):
        problems.append("an object id appears twice in one Result")
    if problems:
        fail_if([f"{what}: {p}" for p in problems])
    return BrowsePage(objects, total, int(counts["UpdateID"]))


async def browse(proxy: ServiceProxy, object_id: str, start: int = 0, count: int = 0,
                 metadata: bool = False) -> BrowsePage:
    flag = "BrowseMetadata" if metadata else "BrowseDirectChildren"
    result = await invoke(proxy, "Browse", ObjectID=object_id, BrowseFlag=flag, StartingIndex=start,
                          RequestedCount=count, SortCriteria="")
    return parse_result(result, f"Browse {object_id!r} {flag} from {start} count {count}",
                        None if metadata else object_id)


async def browse_all(proxy: ServiceProxy, object_id: str) -> tuple[list[DidlObject], int]:
    """Every child of a container (pages until TotalMatches or an empty page)."""
    objects: list[DidlObject] = []
    total = 0
    for _ in range(1000):
        page = await browse(proxy, object_id, start=len(objects))
        total = page.total
        objects += page.objects
        if not page.objects or len(objects) >= total:
            break
    return objects, total


@dataclass
class Walk:
    items: list[DidlObject]
    containers: dict[str, int]  # id -> TotalMatches of its children
    complete: bool  # every container was visited


async def walk(ctx: Context, proxy: ServiceProxy) -> Walk:
    """Breadth-first from 0, at most WALK_CONTAINERS containers (kept for the run's later cases)."""
    cached: Walk | None = ctx.facts.get("av_walk")
    if cached is not None:
        ctx.rec.add("!", ctx.location, b"", f"content walk of an earlier case: {len(cached.items)} items")
        return cached
    queue, seen = ["0"], set()
    items: list[DidlObject] = []
    containers: dict[str, int] = {}
    while queue and len(containers) < WALK_CONTAINERS:
        cid = queue.pop(0)
        if cid in seen:
            continue
        seen.add(cid)
        children, total = await browse_all(proxy, cid)
        containers[cid] = total
        queue += [o.id for o in children if o.container]
        items += [o for o in children if not o.container]
    result = Walk(items, containers, not queue)
    ctx.facts["av_walk"] = result
    return result


async def stream_item(ctx: Context, proxy: ServiceProxy) -> DidlObject:
    """The smallest item with an http resource of at least 16 bytes (unknown sizes last)."""
    found = [i for i in (await walk(ctx, proxy)).items if i.url and (i.size is None or i.size >= 16)]
    if not found:
        raise CaseSkipped("the content directory holds no item with an http resource of 16 bytes or more")
    item = min(found, key=lambda i: (i.size is None, i.size or 0))
    if item.size is not None and item.size > MAX_FETCH:
        raise CaseSkipped(f"the smallest item has {item.size} bytes; the suite fetches at most {MAX_FETCH}")
    ctx.rec.add("!", item.url, b"", f"item {item.id!r} ({item.mime}, {item.size} bytes) chosen")
    return item


async def whole(ctx: Context, url: str, what: str) -> HttpResult:
    res = await fetch(ctx, url, note=f"whole {what}")
    if res.status != 200:
        raise CaseFailed(f"GET {what} (no Range): HTTP {res.status}, expected 200")
    if len(res.body) > MAX_FETCH:
        raise CaseSkipped(f"{what} is larger than {MAX_FETCH} bytes")
    return res


async def check_ranges(ctx: Context, url: str, full: bytes, what: str) -> list[str]:
    """GET a middle slice, an open range and a suffix range; the problems found."""
    size = len(full)
    a = size // 3
    b = min(size - 1, a + max(1, size // 4))
    n = min(100, size - 1)
    problems = []
    for spec, first, last in ((f"bytes={a}-{b}", a, b), (f"bytes={a}-", a, size - 1),
                              (f"bytes=-{n}", size - n, size - 1)):
        res = await fetch(ctx, url, headers=[("Range", spec)], note=f"{what}, Range {spec}")
        if res.status != 206:
            whole_file = " (the whole file)" if res.status == 200 and len(res.body) == size else ""
            problems.append(f"Range {spec}: HTTP {res.status}{whole_file}, expected 206")
            continue
        wanted = f"bytes {first}-{last}/{size}"
        if (res.header("Content-Range") or "").strip() != wanted:
            problems.append(f"Range {spec}: Content-Range {res.header('Content-Range')!r}, expected {wanted!r}")
        if res.body != full[first:last + 1]:
            problems.append(f"Range {spec}: {len(res.body)} bytes that are not bytes {first}-{last} of the "
                            "whole GET")
    return problems


async def check_unsatisfiable(ctx: Context, url: str, size: int, full: bytes, what: str) -> list[str]:
    problems = []
    for spec in (f"bytes={size}-", f"bytes={size + 100}-{size + 200}"):
        res = await fetch(ctx, url, headers=[("Range", spec)], note=f"{what}, Range {spec} (beyond the end)")
        if res.status != 416:
            problems.append(f"Range {spec} of a {size}-byte file: HTTP {res.status}, expected 416")
            continue
        if (res.header("Content-Range") or "").strip() != f"bytes */{size}":
            problems.append(f"Range {spec}: 416 with Content-Range {res.header('Content-Range')!r}, "
                            f"expected 'bytes */{size}'")
        if full and res.body == full:
            problems.append(f"Range {spec}: the 416 answer carries the file")
    return problems


# --- AV-001 ... AV-011 ---------------------------------------------------------------------------------
@check("AV-001")
async def av_001(ctx: Context) -> None:
    await expect_service(ctx, MEDIA_SERVER, "MediaServer", ("Browse", "Search", "GetSystemUpdateID"))


@check("AV-002")
async def av_002(ctx: Context) -> None:
    async with service_session(ctx, MEDIA_SERVER, "MediaServer") as ms:
        root = await browse(ms, "0", metadata=True)
        if len(root.objects) != 1 or root.objects[0].id != "0" or not root.objects[0].container:
            shown = [(o.id, o.container) for o in root.objects]
            raise CaseFailed(f"BrowseMetadata of 0 gave {shown}, expected one container with id 0")
        await browse(ms, "0")


@check("AV-003")
async def av_003(ctx: Context) -> None:
    async with service_session(ctx, MEDIA_SERVER, "MediaServer") as ms:
        tree = await walk(ctx, ms)
        cid = next((c for c, total in tree.containers.items() if total >= 2), None)
        if cid is None:
            raise CaseSkipped("no container with 2 or more children (share a folder with two media files)")
        everything, total = await browse_all(ms, cid)
        ids, problems = [], []
        for start in range(min(total, PAGES)):
            page = await browse(ms, cid, start=start, count=1)
            if len(page.objects) > 1:
                problems.append(f"StartingIndex {start} RequestedCount 1 returned {len(page.objects)} objects")
            if page.total != total:
                problems.append(f"StartingIndex {start}: TotalMatches {page.total}, the whole Browse "
                                f"said {total}")
            ids += [o.id for o in page.objects]
        expected = [o.id for o in everything][:len(ids)]
        if ids != expected:
            problems.append(f"pages of 1 gave ids {ids[:6]}…, the whole Browse {expected[:6]}…")
        end = await browse(ms, cid, start=total, count=0)
        if end.objects:
            problems.append(f"StartingIndex {total} (= TotalMatches) returned {len(end.objects)} objects")
        fail_if(problems)


@check("AV-004")
async def av_004(ctx: Context) -> None:
    async with service_session(ctx, MEDIA_SERVER, "MediaServer") as ms:
        item = await stream_item(ctx, ms)
    full = await whole(ctx, item.url, f"item {item.id}")
    problems = []
    if (full.header("Accept-Ranges") or "").lower() != "bytes":
        problems.append(f"the whole GET has Accept-Ranges {full.header('Accept-Ranges')!r}, expected 'bytes'")
    if item.size is not None and item.size != len(full.body):
        problems.append(f"res size {item.size} but the GET gave {len(full.body)} bytes")
    problems += await check_ranges(ctx, item.url, full.body, f"item {item.id}")
    fail_if(problems)


HEAD_SAME = ("Content-Type", "Content-Length", "Accept-Ranges", "ETag", "Last-Modified")


@check("AV-005")
async def av_005(ctx: Context) -> None:
    async with service_session(ctx, MEDIA_SERVER, "MediaServer") as ms:
        item = await stream_item(ctx, ms)
    full = await whole(ctx, item.url, f"item {item.id}")
    head = await fetch(ctx, item.url, method="HEAD", note=f"HEAD item {item.id}")
    problems = []
    if head.status != 200:
        problems.append(f"HEAD: HTTP {head.status}, GET: 200")
    for name in HEAD_SAME:
        if full.header(name) is not None and head.header(name) != full.header(name):
            problems.append(f"{name}: GET {full.header(name)!r}, HEAD {head.header(name)!r}")
    if head.body:
        problems.append(f"the HEAD answer carries {len(head.body)} body bytes")
    fail_if(problems)


@check("AV-006")
async def av_006(ctx: Context) -> None:
    async with service_session(ctx, MEDIA_SERVER, "MediaServer") as ms:
        item = await stream_item(ctx, ms)
    full = await whole(ctx, item.url, f"item {item.id}")
    fail_if(await check_unsatisfiable(ctx, item.url, len(full.body), full.body, f"item {item.id}"))


def traversal_targets(url_path: str) -> list[tuple[str, str]]:
    """Traversal forms beside an item's URL path (its directory, its prefix), av-profile.md §6."""
    folder = url_path.rsplit("/", 1)[0]
    prefix = "/" + url_path.lstrip("/").split("/", 1)[0] + "/"
    up = 12
    return [
        ("raw ..", f"{folder}/{'../' * up}etc/passwd"),
        ("encoded slash ..%2f", f"{folder}/{'..%2f' * up}etc%2fpasswd"),
        ("encoded dots %2e%2e", f"{folder}/{'%2e%2e/' * up}etc/passwd"),
        ("all encoded", f"{folder}/{'%2e%2e%2f' * up}etc%2fpasswd"),
        ("backslash", f"{folder}/{'..%5c' * up}etc%5cpasswd"),
        ("NUL", f"{url_path}%00{'/..' * up}/etc/passwd"),
        ("absolute //", f"{folder}//etc/passwd"),
        ("absolute %2f", f"{folder}/%2fetc%2fpasswd"),
        ("absolute after the prefix", f"{prefix}/etc/passwd"),
        ("leave and re-enter the prefix", f"{prefix}../{prefix.strip('/')}/{url_path[len(prefix):]}"),
    ]


PASSWD = re.compile(rb"(^|\n)root:[^:\n]*:0:0:")


@check("AV-007")
async def av_007(ctx: Context) -> None:
    async with service_session(ctx, MEDIA_SERVER, "MediaServer") as ms:
        item = await stream_item(ctx, ms)
    host, port, path = split_url(ctx, item.url)
    problems = []
    for label, target in traversal_targets(path):
        res = await fetch(ctx, f"http://{host}:{port}{target}", note=f"traversal: {label}")
        if PASSWD.search(res.body):
            problems.append(f"{label} ({target[:60]}): HTTP {res.status} served /etc/passwd")
        elif not 400 <= res.status < 500:
            problems.append(f"{label} ({target[:60]}): HTTP {res.status} ({len(res.body)} bytes), expected 4xx")
    fail_if(problems)


_ID_SEGMENT = re.compile(r"^(?P<pre>.*/)(?P<id>[A-Za-z0-9_-]{4,})/(?P<name>[^/]+)$")


@check("AV-008")
async def av_008(ctx: Context) -> None:
    missing = f"conformance-no-such-object-{secrets.token_hex(4)}"
    problems = []
    async with service_session(ctx, MEDIA_SERVER, "MediaServer") as ms:
        for flag in ("BrowseDirectChildren", "BrowseMetadata"):
            problems.append(await expect_refused(ms, {404}, "Browse", ObjectID=missing, BrowseFlag=flag,
                                                 StartingIndex=0, RequestedCount=0, SortCriteria=""))
        problems.append(await expect_refused(ms, {404}, "Search", ContainerID=missing, SearchCriteria="*",
                                             StartingIndex=0, RequestedCount=0, SortCriteria=""))
        items = [i for i in (await walk(ctx, ms)).items if i.url]
    if items:
        host, port, path = split_url(ctx, items[0].url)
        m = _ID_SEGMENT.match(path)
        if m is not None:
            fake = secrets.token_hex(len(m["id"]) // 2 + 1)[:len(m["id"])]
            res = await fetch(ctx, f"http://{host}:{port}{m['pre']}{fake}/{m['name']}",
                              note="the item's URL with an unknown id")
            if res.status != 404:
                problems.append(f"stream URL with unknown id {fake}: HTTP {res.status}, expected 404")
    fail_if([p for p in problems if p])


BAD_URIS = ("file:///etc/passwd", "javascript:alert(1)", "http://", "http://h.example/" + "a" * 2100)


@check("AV-009")
async def av_009(ctx: Context) -> None:
    async with service_session(ctx, MEDIA_RENDERER, "MediaRenderer") as tv:
        before = await attributes(tv, "CurrentURI", "TransportState")
        problems = [await expect_refused(tv, {400}, "PlayTo", URI=uri, Metadata="", Title="conformance",
                                         AutoPlay=True) for uri in BAD_URIS]
        after = await attributes(tv, "CurrentURI", "TransportState")
        if before != after:
            problems.append(f"the renderer changed: {before} → {after}")
        fail_if([p for p in problems if p])


async def _played_uri(ctx: Context) -> tuple[str, str]:
    """An item of the device's own media server if it has one, else an http URI on the tester."""
    try:
        async with service_session(ctx, MEDIA_SERVER, "MediaServer") as ms:
            items = [i for i in (await walk(ctx, ms)).items
                     if i.url and i.mime.startswith(("video/", "audio/"))]
    except CaseSkipped:
        items = []
    if items:
        return items[0].url, items[0].mime
    return f"http://{tester_address(ctx)}:9/conformance.mp4", "video/mp4"


def _metadata(uri: str, mime: str) -> str:
    from igrs.profiles.av.didl import Entry, to_didl

    return to_didl([Entry("conformance-item", "0", "Conformance", "object.item.videoItem", url=uri, mime=mime,
                          duration=600.0)])


async def _evented(changes: Any, state: str | None, what: str) -> None:
    """Read notifications until TransportState = ``state`` (None: any first value)."""
    seen = []
    try:
        async with asyncio.timeout(EVENT_WAIT):
            while True:
                change = await changes.__anext__()
                seen.append(change.value)
                if change.name == "TransportState" and state in (None, change.value):
                    return
    except TimeoutError:
        raise CaseFailed(f"after {what}: no TransportState={state or 'initial value'} notification within "
                         f"{EVENT_WAIT:.0f} s (heard {seen})") from None


@check("AV-010")
async def av_010(ctx: Context) -> None:
    uri, mime = await _played_uri(ctx)
    async with service_session(ctx, MEDIA_RENDERER, "MediaRenderer") as tv:
        try:
            async with tv.subscribe("TransportState") as changes:
                it = changes.__aiter__()
                await _evented(it, None, "subscribing")  # the initial value
                steps: list[tuple[str, dict[str, Any], str]] = [
                    ("PlayTo", {"URI": uri, "Metadata": _metadata(uri, mime), "Title": "Conformance",
                                "AutoPlay": True}, "PLAYING"),
                    ("Pause", {}, "PAUSED_PLAYBACK"), ("Play", {}, "PLAYING"), ("Stop", {}, "STOPPED")]
                for action, args, state in steps:
                    got = await invoke(tv, action, **args)
                    if got != state:
                        raise CaseFailed(f"{action} returned {got!r}, expected {state}")
                    await _evented(it, state, action)
        except IGRSError as exc:
            raise CaseFailed(f"subscribing to TransportState failed: {exc}") from None
        finally:
            with contextlib.suppress(Exception):
                await tv.call("Stop")


@check("AV-011")
async def av_011(ctx: Context) -> None:
    async with service_session(ctx, MEDIA_SERVER, "MediaServer") as ms:
        tree = await walk(ctx, ms)
        if not tree.items:
            raise CaseSkipped("the content directory holds no item")
        result = await invoke(ms, "Search", ContainerID="0",
                              SearchCriteria='upnp:class derivedfrom "object.item"',
                              StartingIndex=0, RequestedCount=0, SortCriteria="")
    page = parse_result(result, "Search items under 0")
    problems = [f"Search for items returned container {o.id!r}" for o in page.objects if o.container]
    if tree.complete and page.total < len(tree.items):
        problems.append(f"TotalMatches {page.total} < the {len(tree.items)} items found by browsing")
    fail_if(problems)
