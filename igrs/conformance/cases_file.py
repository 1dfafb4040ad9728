"""Checks of the File profile cases (``specs/conformance/cases-file.toml``; rules:
specs/file-profile.md). The service actions travel in the secure pipe (recorded as plaintext
by the shared agent of ``cases_av.py``); the bytes under ``/files/`` are raw HTTP exchanges
recorded byte for byte.

The cases discover the shares the DUT offers to the test device (Browse ``/``) and the files
in them. Uploads go to a share whose access for the test device is ``rw``, under
``conformance-<random>.bin`` at its root, and are deleted afterwards; without such a share
the writing cases are skipped.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import random
import secrets
import ssl
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from igrs.conformance.cases_av import (
    MAX_FETCH,
    PASSWD,
    check_ranges,
    check_unsatisfiable,
    dechunk,
    expect_refused,
    expect_service,
    fail_if,
    fetch,
    http_request,
    invoke,
    is_loopback,
    refusal,
    service_session,
)
from igrs.conformance.peer import TestPeer
from igrs.conformance.rawnet import HttpResult, _read_response
from igrs.conformance.runner import CaseFailed, CaseSkipped, Context, NotApplicable, check
from igrs.wire.httpu import parse_head

if TYPE_CHECKING:
    from igrs.node.service_agent import ServiceProxy

FILE_SERVER = "urn:IGRS:ServiceType:FileServer:1"
FILE_ACTIONS = ("Browse", "Stat", "MakeDirectory", "Delete", "Move", "BeginGet", "BeginPut", "CancelPut")
PATH_REFUSED, CHECKSUM_MISMATCH, QUOTA_EXCEEDED = 422, 460, 507
NOT_FOUND, FORBIDDEN, CONFLICT, TOO_LARGE = 404, 403, 409, 413
WALK_DIRS = 40
PAGE = 100
SECOND_LOOPBACK = ("127.0.0.77", "127.0.0.78")
MIN_FILE = 16


# --- small helpers ------------------------------------------------------------------------------------
@contextlib.asynccontextmanager
async def file_session(ctx: Context) -> AsyncIterator[ServiceProxy]:
    async with service_session(ctx, FILE_SERVER, "FileServer") as fs:
        yield fs


def data_of(size: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(size)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def new_name() -> str:
    return f"conformance-{secrets.token_hex(4)}.bin"


async def listing(fs: ServiceProxy, path: str, limit: int = PAGE, pages: int = 50) -> list[dict[str, str]]:
    """Every entry of a directory: pages from offset 0 until an empty page."""
    out: list[dict[str, str]] = []
    for _ in range(pages):
        rows = await invoke(fs, "Browse", path=path, offset=len(out), limit=limit)
        if not isinstance(rows, list):
            raise CaseFailed(f"Browse {path!r} answered {type(rows).__name__}, not a list of entries")
        if not rows:
            return out
        out += [dict(r) for r in rows]
    raise CaseFailed(f"Browse {path!r}: still no empty page after {pages} pages of {limit}")


@dataclass
class Shares:
    entries: list[dict[str, str]]

    @property
    def names(self) -> list[str]:
        return [e.get("name", "") for e in self.entries]

    def writable(self) -> str | None:
        return next((e["name"] for e in self.entries if e.get("access") == "rw"), None)

    def access(self, name: str) -> str:
        return next((e.get("access", "") for e in self.entries if e.get("name") == name), "")


async def shares(fs: ServiceProxy) -> Shares:
    found = Shares(await listing(fs, "/"))
    if not found.entries:
        raise CaseSkipped("the device offers no share to the test device (Browse / is empty)")
    return found


async def writable_share(fs: ServiceProxy) -> str:
    name = (await shares(fs)).writable()
    if name is None:
        raise NotApplicable("every share is read-only (access ro) for the test device: the upload cases do "
                            "not apply (share a folder writable to check them)")
    return name


@dataclass(frozen=True)
class RemoteFile:
    path: str
    size: int
    mtime: str


async def find_file(ctx: Context, fs: ServiceProxy, share_names: list[str]) -> RemoteFile | None:
    """The smallest regular file of MIN_FILE..MAX_FETCH bytes, walking at most WALK_DIRS directories."""
    queue = [f"/{name}" for name in share_names]
    best: RemoteFile | None = None
    visited = 0
    while queue and visited < WALK_DIRS:
        folder = queue.pop(0)
        visited += 1
        for e in await listing(fs, folder):
            path = f"{folder}/{e.get('name', '')}"
            if e.get("type") == "dir":
                queue.append(path)
            elif e.get("type") == "file" and e.get("size", "").isdigit():
                size = int(e["size"])
                if MIN_FILE <= size <= MAX_FETCH and (best is None or size < best.size):
                    best = RemoteFile(path, size, e.get("mtime", ""))
    return best


@contextlib.asynccontextmanager
async def sample_file(ctx: Context, fs: ServiceProxy) -> AsyncIterator[RemoteFile]:
    """A file to read: one the DUT holds, else one the suite uploads to a writable share (and
    deletes afterwards)."""
    offered = await shares(fs)
    found = await find_file(ctx, fs, offered.names)
    if found is not None:
        ctx.rec.add("!", ctx.location, b"", f"reading {found.path} ({found.size} bytes)")
        yield found
        return
    share = offered.writable()
    if share is None:
        raise CaseSkipped(f"no file of {MIN_FILE}..{MAX_FETCH} bytes in the shares and no writable share to "
                          "put one in")
    path = f"/{share}/{new_name()}"
    data = data_of(40_000, 4)
    res, _ = await upload(ctx, fs, path, data)
    if not upload_complete(res):
        raise CaseFailed(f"uploading the suite's sample {path} failed: HTTP {res.status}")
    try:
        st = await invoke(fs, "Stat", path=path, checksum=False)
        yield RemoteFile(path, len(data), str(st.get("mtime", "")))
    finally:
        await remove(fs, path)


async def remove(fs: ServiceProxy, path: str) -> None:
    with contextlib.suppress(Exception):
        await fs.call("Delete", path=path, recursive=False)


async def cancel(fs: ServiceProxy, upload_id: str) -> None:
    with contextlib.suppress(Exception):
        await fs.call("CancelPut", upload=upload_id)


async def absent(fs: ServiceProxy, path: str, when: str) -> list[str]:
    """Problems if ``path`` is visible: Stat must answer 404, Browse of its folder must not list it."""
    problems = []
    code, result = await refusal(fs, "Stat", path=path, checksum=False)
    if code is None:
        problems.append(f"{when}: Stat {path} found it ({result.get('size', '?')} bytes)")
    elif code != NOT_FOUND:
        problems.append(f"{when}: Stat {path} → ReturnCode {code}, expected 404")
    folder, _, name = path.rpartition("/")
    if name in [e.get("name") for e in await listing(fs, folder)]:
        problems.append(f"{when}: Browse {folder} lists {name}")
    return problems


async def begin_put(fs: ServiceProxy, path: str, data: bytes, digest: str | None = None) -> dict[str, str]:
    info = await invoke(fs, "BeginPut", path=path, size=len(data), sha256=digest or sha256(data),
                        overwrite=False)
    if not isinstance(info, dict) or "url" not in info or not str(info.get("offset", "")).isdigit():
        raise CaseFailed(f"BeginPut answered {str(info)[:120]!r}, not a dict with url and offset")
    return dict(info)


async def put(ctx: Context, url: str, data: bytes, offset: int, note: str = "") -> HttpResult:
    return await fetch(ctx, url, method="PUT", body=data,
                       headers=[("Upload-Offset", str(offset)), ("Content-Type", "application/octet-stream")],
                       note=note or f"PUT {len(data)} bytes at offset {offset}")


async def upload(ctx: Context, fs: ServiceProxy, path: str, data: bytes,
                 digest: str | None = None) -> tuple[HttpResult, dict[str, str]]:
    info = await begin_put(fs, path, data, digest)
    offset = int(info["offset"])
    return await put(ctx, info["url"], data[offset:], offset), info


def json_of(res: HttpResult) -> dict[str, Any]:
    try:
        out = json.loads(res.body or b"{}")
    except ValueError:
        return {}
    return out if isinstance(out, dict) else {}


def upload_complete(res: HttpResult) -> bool:
    """201 (or 200 with complete true, as the profile client accepts) once stored."""
    return res.status == 201 or (res.status == 200 and json_of(res).get("complete") is True)


async def raw_exchange(ctx: Context, request: bytes, *, source: str = "", send_only: int | None = None,
                       note: str = "") -> HttpResult | None:
    """A raw exchange with the DUT's HTTP endpoint, optionally from another local ``source``
    address, or cut short: only the first ``send_only`` bytes are sent, then the connection is
    closed without reading (None is returned)."""
    peer = f"{ctx.host}:{ctx.port}"
    sent = request if send_only is None else request[:send_only]
    ctx.rec.add(">", peer, sent, note + (f" (from {source})" if source else ""))
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(
            ctx.host, ctx.port, local_addr=(source, 0) if source else None), 5.0)
    except (OSError, TimeoutError) as exc:
        raise CaseFailed(f"cannot connect to {peer}{' from ' + source if source else ''}: {exc}") from None
    try:
        writer.write(sent)
        await writer.drain()
        if send_only is not None:
            await asyncio.sleep(0.2)  # let the DUT take the bytes in before the connection drops
            return None
        raw = await asyncio.wait_for(_read_response(reader), 10.0)
    except (OSError, TimeoutError) as exc:
        raise CaseFailed(f"{note}: no HTTP answer ({type(exc).__name__}: {exc})") from None
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()
    ctx.rec.add("<", peer, raw)
    head, _, body = raw.partition(b"\r\n\r\n")
    start, headers = parse_head(head)
    parts = start.split(" ", 2)
    if len(parts) < 2 or not parts[1].isdigit():
        raise CaseFailed(f"{note}: malformed status line {start[:60]!r}")
    return dechunk(HttpResult(int(parts[1]), list(headers), body, raw))


async def settled(ctx: Context, url: str, limit: float = 3.0) -> None:
    """Wait until the DUT has taken in an interrupted PUT: HEAD's Upload-Offset is the same
    twice 0.2 s apart (at most ``limit`` seconds)."""
    last = None
    loop = asyncio.get_running_loop()
    end = loop.time() + limit
    while loop.time() < end:
        await asyncio.sleep(0.2)
        now = (await fetch(ctx, url, method="HEAD", note="HEAD: has the DUT taken the bytes in?")).header(
            "Upload-Offset")
        if now is not None and now == last:
            return
        last = now


def second_source(ctx: Context) -> str:
    """A tester address other than the one the pipe comes from (FILE-009)."""
    if ctx.off_subnet_source:
        return ctx.off_subnet_source
    if is_loopback(ctx.iface.address) and is_loopback(ctx.host):
        return next(a for a in SECOND_LOOPBACK if a not in (ctx.iface.address, ctx.host))
    raise CaseSkipped("needs a second source address of the tester (--off-subnet-source ADDR)")


# --- FILE-001 ... FILE-010 ----------------------------------------------------------------------------
@check("FILE-001")
async def file_001(ctx: Context) -> None:
    await expect_service(ctx, FILE_SERVER, "FileServer", FILE_ACTIONS)


def entry_problems(entries: list[dict[str, str]], where: str, types: tuple[str, ...]) -> list[str]:
    problems = []
    for e in entries:
        name = e.get("name", "")
        if not name or e.get("type") not in types:
            problems.append(f"{where}: entry {name!r} has type {e.get('type')!r}, expected one of {types}")
        if not e.get("size", "").isdigit():
            problems.append(f"{where}: entry {name!r} size {e.get('size')!r} is not a byte count")
        try:
            float(e.get("mtime", ""))
        except ValueError:
            problems.append(f"{where}: entry {name!r} mtime {e.get('mtime')!r} is not a number")
        if name == ".igrs-partial":
            problems.append(f"{where}: the reserved .igrs-partial is listed")
    names = [e.get("name", "") for e in entries]
    if len(set(names)) != len(names):
        problems.append(f"{where}: a name is listed twice")
    if names != sorted(names):
        problems.append(f"{where}: entries are not sorted by name")
    return problems


@check("FILE-002")
async def file_002(ctx: Context) -> None:
    async with file_session(ctx) as fs:
        offered = await shares(fs)
        problems = entry_problems(offered.entries, "Browse /", ("share",))
        problems += [f"share {e.get('name')!r} has access {e.get('access')!r}, expected ro or rw"
                     for e in offered.entries if e.get("access") not in ("ro", "rw")]
        share = offered.names[0]
        for name in offered.names:  # the first share that holds something
            entries = await listing(fs, f"/{name}")
            if entries:
                share = name
                break
        entries = await listing(fs, f"/{share}")
        problems += entry_problems(entries, f"Browse /{share}", ("file", "dir", "other"))
        paged = []
        for offset in range(min(len(entries), 20)):
            page = await invoke(fs, "Browse", path=f"/{share}", offset=offset, limit=1)
            if len(page) != 1:
                problems.append(f"Browse /{share} offset {offset} limit 1 gave {len(page)} entries")
            paged += [dict(r).get("name") for r in page]
        if paged != [e["name"] for e in entries][:len(paged)]:
            whole = [e["name"] for e in entries][:5]
            problems.append(f"pages of limit 1 list {paged[:5]}…, the whole listing {whole}…")
        if await invoke(fs, "Browse", path=f"/{share}", offset=len(entries), limit=PAGE):
            problems.append(f"Browse /{share} past the end is not empty")
        problems.append(await expect_refused(fs, {NOT_FOUND}, "Browse", path=f"/{share}/{new_name()}",
                                             offset=0, limit=PAGE))
        a_file = next((e["name"] for e in entries if e.get("type") == "file"), None)
        if a_file is not None:
            problems.append(await expect_refused(fs, {CONFLICT}, "Browse", path=f"/{share}/{a_file}",
                                                 offset=0, limit=PAGE))
        fail_if([p for p in problems if p])


@check("FILE-003")
async def file_003(ctx: Context) -> None:
    async with file_session(ctx) as fs, sample_file(ctx, fs) as f:
        share = f.path.split("/")[1]
        problems = []
        root = await invoke(fs, "Stat", path=f"/{share}", checksum=False)
        count = len(await listing(fs, f"/{share}"))
        if root.get("type") != "share":
            problems.append(f"Stat /{share}: type {root.get('type')!r}, expected share")
        if root.get("entries") != str(count):
            problems.append(f"Stat /{share}: entries {root.get('entries')!r}, Browse lists {count}")
        st = await invoke(fs, "Stat", path=f.path, checksum=False)
        if st.get("type") != "file" or st.get("size") != str(f.size):
            problems.append(f"Stat {f.path}: type {st.get('type')!r} size {st.get('size')!r}, Browse said file "
                            f"of {f.size} bytes")
        with contextlib.suppress(ValueError):
            if abs(float(st.get("mtime", "nan")) - float(f.mtime)) > 1e-3:
                problems.append(f"Stat {f.path}: mtime {st.get('mtime')}, Browse said {f.mtime}")
        digest = (await invoke(fs, "Stat", path=f.path, checksum=True)).get("sha256", "")
        if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
            problems.append(f"Stat {f.path} checksum=true: sha256 {digest!r} is not 64 lowercase hex digits")
        problems.append(await expect_refused(fs, {NOT_FOUND}, "Stat", path=f"/{share}/{new_name()}",
                                             checksum=False))
        fail_if([p for p in problems if p])


@check("FILE-004")
async def file_004(ctx: Context) -> None:
    async with file_session(ctx) as fs, sample_file(ctx, fs) as f:
        stat_sha = (await invoke(fs, "Stat", path=f.path, checksum=True)).get("sha256", "")
        info = await invoke(fs, "BeginGet", path=f.path, checksum=True)
        problems = []
        if str(info.get("size")) != str(f.size):
            problems.append(f"BeginGet size {info.get('size')!r}, Stat {f.size}")
        full = await fetch(ctx, info["url"], note=f"GET {f.path} whole")
        if full.status != 200 or len(full.body) != f.size:
            raise CaseFailed(f"GET {f.path}: HTTP {full.status} with {len(full.body)} bytes, expected 200 with "
                             f"{f.size}")
        got = sha256(full.body)
        for who, digest in (("Stat", stat_sha), ("BeginGet", info.get("sha256", ""))):
            if digest and digest != got:
                problems.append(f"the bytes' SHA-256 {got[:16]}… differs from {who}'s {digest[:16]}…")
        head = await fetch(ctx, info["url"], method="HEAD", note=f"HEAD {f.path}")
        if head.status != 200 or head.header("Content-Length") != str(f.size) or head.body:
            problems.append(f"HEAD: HTTP {head.status}, Content-Length {head.header('Content-Length')!r}, "
                            f"{len(head.body)} body bytes")
        problems += await check_ranges(ctx, info["url"], full.body, f.path)
        half = f.size // 2
        first = await fetch(ctx, info["url"], headers=[("Range", f"bytes=0-{half - 1}")], note="the first half")
        rest = await fetch(ctx, info["url"], headers=[("Range", f"bytes={half}-")], note="resume from the half")
        if (first.status, rest.status) != (206, 206) or first.body + rest.body != full.body:
            problems.append(f"download resumed at {half}: HTTP {first.status}+{rest.status}, "
                            f"{len(first.body)}+{len(rest.body)} bytes that are not the file")
        problems += await check_unsatisfiable(ctx, info["url"], f.size, full.body, f.path)
        fail_if(problems)


@check("FILE-005")
async def file_005(ctx: Context) -> None:
    async with file_session(ctx) as fs:
        share = await writable_share(fs)
        path, data = f"/{share}/{new_name()}", data_of(192 * 1024, 5)
        try:
            res, info = await upload(ctx, fs, path, data)
            problems = [] if info["offset"] == "0" else [f"BeginPut of a new name: offset {info['offset']}"]
            if not upload_complete(res):
                raise CaseFailed(f"PUT of all {len(data)} bytes: HTTP {res.status} {res.body[:100]!r}, "
                                 "expected 201")
            if json_of(res).get("sha256", sha256(data)) != sha256(data):
                problems.append(f"the PUT answer's sha256 {json_of(res).get('sha256')!r} is not the upload's")
            st = await invoke(fs, "Stat", path=path, checksum=True)
            if st.get("size") != str(len(data)) or st.get("sha256", sha256(data)) != sha256(data):
                problems.append(f"Stat {path}: size {st.get('size')!r} sha256 {st.get('sha256')!r}")
            if path.rsplit("/", 1)[1] not in [e.get("name") for e in await listing(fs, f"/{share}")]:
                problems.append(f"Browse /{share} does not list the upload")
            got = await invoke(fs, "BeginGet", path=path, checksum=False)
            back = await fetch(ctx, got["url"], note="the upload downloaded")
            if back.body != data:
                problems.append(f"the download gives {len(back.body)} bytes that are not the upload")
            await invoke(fs, "Delete", path=path, recursive=False)
            problems += await absent(fs, path, "after Delete")
            fail_if(problems)
        finally:
            await remove(fs, path)


@check("FILE-006")
async def file_006(ctx: Context) -> None:
    async with file_session(ctx) as fs:
        share = await writable_share(fs)
        path, data = f"/{share}/{new_name()}", data_of(64 * 1024, 6)
        wrong = sha256(data + b"other bytes")
        try:
            res, info = await upload(ctx, fs, path, data, digest=wrong)
            problems = []
            if 200 <= res.status < 300:
                problems.append(f"the PUT with a wrong SHA-256 was accepted: HTTP {res.status} "
                                f"{res.body[:80]!r}")
            elif res.status != CHECKSUM_MISMATCH:
                problems.append(f"the PUT with a wrong SHA-256: HTTP {res.status}, expected 460")
            problems += await absent(fs, path, "after the PUT with the wrong SHA-256")
            fail_if(problems)  # (a stored file would also make the BeginPut below a 409)
            again = await begin_put(fs, path, data, wrong)
            if again["offset"] != "0":
                problems.append(f"BeginPut again starts at offset {again['offset']}: the partial was kept")
            await cancel(fs, again.get("upload", info.get("upload", "")))
            fail_if(problems)
        finally:
            await remove(fs, path)


@check("FILE-007")
async def file_007(ctx: Context) -> None:
    async with file_session(ctx) as fs:
        share = await writable_share(fs)
        path, data = f"/{share}/{new_name()}", data_of(384 * 1024, 7)
        sent = 256 * 1024
        try:
            info = await begin_put(fs, path, data)
            request = http_request("PUT", info["url"], ctx.host, ctx.port, [("Upload-Offset", "0")], data)
            await raw_exchange(ctx, request, send_only=len(request) - len(data) + sent,
                               note=f"PUT announcing {len(data)} bytes, cut after {sent}")
            await settled(ctx, info["url"])
            fail_if(await absent(fs, path, "after the interrupted PUT"))
            problems = []
            again = await begin_put(fs, path, data)
            offset = int(again["offset"])
            ctx.rec.add("!", ctx.location, b"", f"the DUT resumes at offset {offset} of {sent} sent")
            if not 0 <= offset <= sent:
                raise CaseFailed(f"BeginPut after {sent} bytes were sent resumes at offset {offset}")
            head = await fetch(ctx, again["url"], method="HEAD", note="HEAD of the upload")
            if head.header("Upload-Offset") != str(offset):
                problems.append(f"HEAD Upload-Offset {head.header('Upload-Offset')!r}, BeginPut said {offset}")
            wrong = await put(ctx, again["url"], data[offset + 1:offset + 1025], offset + 1,
                              note="PUT at a wrong offset")
            if wrong.status != CONFLICT or wrong.header("Upload-Offset") != str(offset):
                problems.append(f"PUT at offset {offset + 1}: HTTP {wrong.status} Upload-Offset "
                                f"{wrong.header('Upload-Offset')!r}, expected 409 with {offset}")
            rest = await put(ctx, again["url"], data[offset:], offset, note="the rest")
            if not upload_complete(rest):
                raise CaseFailed(f"resuming at {offset}: HTTP {rest.status} {rest.body[:100]!r}, expected 201")
            st = await invoke(fs, "Stat", path=path, checksum=True)
            if st.get("size") != str(len(data)) or st.get("sha256", sha256(data)) != sha256(data):
                problems.append(f"the resumed file: size {st.get('size')!r} sha256 {st.get('sha256')!r}")
            fail_if(problems)
        finally:
            await remove(fs, path)


def read_forms(share: str, file: str) -> list[tuple[str, str, set[int]]]:
    """(label, path, accepted codes) for Browse/Stat/BeginGet (file-profile.md §3)."""
    refused, unnamed = {PATH_REFUSED}, {NOT_FOUND, PATH_REFUSED}
    return [
        ("..", f"/{share}/..", refused),
        ("../<share>", f"/{share}/../{share}/{file}", refused),
        ("x/../..", f"/{share}/conformance-x/../../{share}/{file}", refused),
        ("leading ..", f"/../{share}/{file}", refused),
        (".", f"/{share}/./{file}", refused),
        ("backslash", f"/{share}/..\\..\\{share}\\{file}", refused),
        ("U+007F", f"/{share}/{file}\x7f", refused),
        ("U+0085", f"/{share}/\x85{file}", refused),
        ("encoded %2e%2e", f"/{share}/%2e%2e/{share}/{file}", unnamed),
        ("encoded ..%2f", f"/{share}/..%2f{share}%2f{file}", unnamed),
        ("absolute", "/etc/passwd", unnamed),
        ("absolute in share", f"/{share}//etc/passwd", unnamed),
    ]


def write_forms(share: str) -> list[tuple[str, str]]:
    name = f"conformance-{secrets.token_hex(4)}"
    return [
        ("..", f"/{share}/../{name}"),
        ("x/../..", f"/{share}/{name}/../../{name}"),
        (".", f"/{share}/./{name}"),
        ("backslash", f"/{share}/..\\{name}"),
        ("U+007F", f"/{share}/{name}\x7f"),
    ]


async def _read_attempts(fs: ServiceProxy, share: str, file: str) -> list[str]:
    problems = []
    for label, path, codes in read_forms(share, file):
        found = [await expect_refused(fs, codes, "Browse", path=path, offset=0, limit=PAGE),
                 await expect_refused(fs, codes, "Stat", path=path, checksum=False),
                 await expect_refused(fs, codes, "BeginGet", path=path, checksum=False)]
        problems += [f"{label}: {p}" for p in found if p]
    return problems


async def _write_attempts(ctx: Context, fs: ServiceProxy, share: str, writable: bool) -> list[str]:
    codes = {PATH_REFUSED} if writable else {PATH_REFUSED, FORBIDDEN}
    problems = []
    tries: list[tuple[str, str, dict[str, Any]]] = []
    for label, path in write_forms(share):
        tries += [(label, "MakeDirectory", {"path": path, "parents": False}),
                  (label, "Delete", {"path": path, "recursive": False}),
                  (label, "BeginPut", {"path": path, "size": 16, "sha256": "0" * 64, "overwrite": False}),
                  (label, "Move", {"source": path, "target": f"/{share}/{new_name()}", "overwrite": False})]
    own = ""
    if writable:  # Move our own file to a hostile target: a careless server moves it out of the share
        own = f"/{share}/{new_name()}"
        res, _ = await upload(ctx, fs, own, data_of(MIN_FILE, 8))
        if upload_complete(res):
            tries += [(label, "Move", {"source": own, "target": path, "overwrite": False})
                      for label, path in write_forms(share)]
    try:
        for label, action, args in tries:
            problem = await expect_refused(fs, codes, action, **args)
            problems.append(f"{label}: {problem}" if problem else "")
        if own:
            code, _ = await refusal(fs, "Stat", path=own, checksum=False)
            if code is not None:
                problems.append(f"our file {own} is gone from the share after the refused moves (Stat {code})")
    finally:
        if own:
            await remove(fs, own)
    return problems


async def _url_attempts(ctx: Context, fs: ServiceProxy, file_path: str | None) -> list[str]:
    targets = ["/files/..%2f..%2f..%2f..%2f..%2f..%2fetc%2fpasswd",
               "/files/%2e%2e/%2e%2e/%2e%2e/%2e%2e/etc/passwd", "/files/../../../../../../etc/passwd"]
    if file_path is not None:
        url = (await invoke(fs, "BeginGet", path=file_path, checksum=False))["url"]
        targets += [f"{url}%00", f"{url}/../../../../../../etc/passwd", f"{url}/..%2f..%2f..%2fetc%2fpasswd"]
    problems = []
    for target in targets:
        res = await fetch(ctx, target, note="traversal in the /files/ URL space")
        if PASSWD.search(res.body):
            problems.append(f"GET {target[:70]} served /etc/passwd")
        elif not 400 <= res.status < 500:
            problems.append(f"GET {target[:70]}: HTTP {res.status}, expected 4xx")
    return problems


@check("FILE-008")
async def file_008(ctx: Context) -> None:
    async with file_session(ctx) as fs:
        offered = await shares(fs)
        found = await find_file(ctx, fs, offered.names)
        share = found.path.split("/")[1] if found else (offered.writable() or offered.names[0])
        file = found.path.split("/", 2)[2] if found else "conformance-none.txt"
        problems = await _read_attempts(fs, share, file)
        target = offered.writable() or share  # a careless server only shows itself where it may write
        problems += await _write_attempts(ctx, fs, target, offered.access(target) == "rw")
        problems += await _url_attempts(ctx, fs, found.path if found else None)
        fail_if([p for p in problems if p])


@check("FILE-009")
async def file_009(ctx: Context) -> None:
    source = second_source(ctx)
    async with file_session(ctx) as fs, sample_file(ctx, fs) as f:
        url = (await invoke(fs, "BeginGet", path=f.path, checksum=False))["url"]
        request = http_request("GET", url, ctx.host, ctx.port)
        foreign = await raw_exchange(ctx, request, source=source,
                                     note="the caller's URL used from another address")
        assert foreign is not None
        problems = []
        if foreign.status != FORBIDDEN:
            problems.append(f"GET from {source}: HTTP {foreign.status} ({len(foreign.body)} bytes), "
                            "expected 403")
        own = await fetch(ctx, url, note="the URL used by the caller")
        if own.status != 200 or len(own.body) != f.size:
            problems.append(f"GET by the caller: HTTP {own.status} with {len(own.body)} bytes, "
                            "expected the file")
        elif foreign.body and foreign.body == own.body:
            problems.append(f"the file was served to {source}")
        unknown = await fetch(ctx, f"/files/{secrets.token_urlsafe(24)}", note="a token never issued")
        if unknown.status != NOT_FOUND:
            problems.append(f"GET of an unknown token: HTTP {unknown.status}, expected 404")
        share = (await shares(fs)).writable()
        if share is not None:
            problems += await _foreign_put(ctx, fs, share, source)
        fail_if(problems)


async def _foreign_put(ctx: Context, fs: ServiceProxy, share: str, source: str) -> list[str]:
    path, data = f"/{share}/{new_name()}", data_of(4096, 9)
    info = await begin_put(fs, path, data)
    try:
        request = http_request("PUT", info["url"], ctx.host, ctx.port, [("Upload-Offset", "0")], data)
        res = await raw_exchange(ctx, request, source=source,
                                 note="the caller's upload URL used from another address")
        assert res is not None
        problems = [] if res.status == FORBIDDEN else [f"PUT from {source}: HTTP {res.status}, expected 403"]
        return problems + await absent(fs, path, f"after the PUT from {source}")
    finally:
        await cancel(fs, info.get("upload", ""))
        await remove(fs, path)


@check("FILE-010")
async def file_010(ctx: Context) -> None:
    async with file_session(ctx) as fs:
        share = await writable_share(fs)
        path = f"/{share}/{new_name()}"
        problems = [await expect_refused(fs, {TOO_LARGE, QUOTA_EXCEEDED}, "BeginPut", path=path, size=1 << 50,
                                         sha256="0" * 64, overwrite=False)]
        data = data_of(16, 10)
        info = await begin_put(fs, path, data)
        try:
            res = await put(ctx, info["url"], data + data, 0, note="32 bytes for a 16-byte upload")
            if res.status != TOO_LARGE:
                problems.append(f"PUT of 32 bytes for 16 declared: HTTP {res.status}, expected 413")
            problems += await absent(fs, path, "after the long body")
        finally:
            await cancel(fs, info.get("upload", ""))
            await remove(fs, path)
        fail_if([p for p in problems if p])


# --- FILE-011: transfers between paired devices are encrypted and pinned -----------------------------
async def tls_contexts(ctx: Context) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """Client contexts that accept only the DUT's paired identity: showing the test device's
    certificate (the identity the DUT paired with), and a stranger's (a fresh identity)."""
    from igrs.core.security.identity import LocalIdentity
    from igrs.net.tls import PinnedTls

    peer = await TestPeer.of(ctx)
    assert ctx.device_id is not None
    dut_key = peer.cp.keystore.peer_key(ctx.device_id)
    if dut_key is None:
        raise CaseFailed("paired, but the test device holds no identity key of the DUT")
    return (PinnedTls(peer.identity).client_context(dut_key),
            PinnedTls(LocalIdentity.generate()).client_context(dut_key))


async def begin_tls(fs: ServiceProxy, action: str, **args: Any) -> tuple[dict[str, str], int]:
    answer = await invoke(fs, action, **args, transport="tls")
    info = dict(answer) if isinstance(answer, dict) else {}
    if info.get("transport") != "tls" or not str(info.get("port", "")).isdigit():
        raise CaseFailed(f'{action} with transport "tls" answered transport {info.get("transport")!r} and '
                         f'port {info.get("port")!r}: the bytes would travel in clear')
    return info, int(info["port"])


async def tls_fetch(ctx: Context, port: int, target: str, context: ssl.SSLContext, note: str, *,
                    method: str = "GET", headers: Sequence[tuple[str, str]] = (),
                    body: bytes = b"") -> HttpResult | str:
    """A raw exchange inside TLS with the DUT's TLS port; the refusal (why) as a string when
    the handshake or the connection fails."""
    try:
        host = f"[{ctx.host}]" if ":" in ctx.host else ctx.host
        return await fetch(ctx, f"https://{host}:{port}{target}", method, headers, body, note, tls=context)
    except CaseFailed as exc:
        ctx.rec.add("!", f"{ctx.host}:{port}", b"", f"refused: {exc}")
        return str(exc)


@check("FILE-011")
async def file_011(ctx: Context) -> None:
    own, stranger = await tls_contexts(ctx)
    async with file_session(ctx) as fs, sample_file(ctx, fs) as f:
        info, port = await begin_tls(fs, "BeginGet", path=f.path, checksum=True)
        got = await tls_fetch(ctx, port, info["url"], own, "GET inside TLS, the test device's certificate")
        if isinstance(got, str):
            raise CaseFailed(f"GET inside TLS with the paired identity's certificate failed ({got}): the "
                             "DUT's certificate is not signed by the identity key it proved at pairing, or it "
                             "refused the test device's")
        problems = []
        digest = sha256(got.body)
        if got.status != 200 or digest != info.get("sha256", digest) or len(got.body) != f.size:
            problems.append(f"GET inside TLS: HTTP {got.status} with {len(got.body)} bytes, not the file")
        if not got.tls.startswith("TLSv1.3 "):
            problems.append(f"the transfer negotiated {got.tls or 'no TLS'}, expected TLS 1.3")
        other = await tls_fetch(ctx, port, info["url"], stranger,
                                "GET inside TLS, a certificate of another key")
        if not isinstance(other, str) and (other.status == 200 or (got.body and got.body in other.body)):
            problems.append(f"a client with another key got HTTP {other.status} with {len(other.body)} bytes: "
                            "the DUT does not pin the paired identity")
        clear = await fetch(ctx, info["url"], note="the TLS transfer's URL over plain HTTP")
        if clear.status == 200 or (got.body and got.body in clear.body):
            problems.append(f"the TLS transfer's URL over plain HTTP: HTTP {clear.status}, the file in clear")
        share = (await shares(fs)).writable()
        if share is not None:
            problems += await _tls_put(ctx, fs, share, own)
        fail_if(problems)


async def _tls_put(ctx: Context, fs: ServiceProxy, share: str, own: ssl.SSLContext) -> list[str]:
    path, data = f"/{share}/{new_name()}", data_of(64 * 1024, 11)
    try:
        info, port = await begin_tls(fs, "BeginPut", path=path, size=len(data), sha256=sha256(data),
                                     overwrite=False)
        res = await tls_fetch(ctx, port, info["url"], own, "PUT inside TLS", method="PUT", body=data,
                              headers=[("Upload-Offset", "0"), ("Content-Type", "application/octet-stream")])
        if isinstance(res, str) or not upload_complete(res):
            return [f"PUT inside TLS: {res if isinstance(res, str) else f'HTTP {res.status}'}, expected 201"]
        st = await invoke(fs, "Stat", path=path, checksum=True)
        if st.get("sha256", sha256(data)) != sha256(data):
            return [f"the upload inside TLS was stored with SHA-256 {st.get('sha256')!r}"]
        return []
    finally:
        await remove(fs, path)
