"""Client of the File profile: browse and change a device's shared folders, get and put
files with resumption, checksums and progress (specs/file-profile.md §6).

    async with ControlPoint(interfaces=["lo"]) as cp:
        await cp.search()
        async with FileClient.connect(cp, "PC") as files:
            for entry in await files.ls("/photos"):
                print(entry.name, entry.size)
            await files.get("/photos/cat.jpg", "cat.jpg", progress=lambda done, total: ...)
            await files.put("video.mkv", "/inbox/video.mkv")

An interrupted ``get`` leaves ``<local>.igrs-part`` (+ ``.json``) and continues from there
next time; an interrupted ``put`` continues from the offset the server holds.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import re
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import aiohttp

from igrs.constants import FILE_BROWSE_LIMIT, FILE_STALL_TIMEOUT, HTTP_HANDOFF_BUFFER, ReturnCode
from igrs.errors import IGRSError, RemoteError
from igrs.profiles.file.pipeline import WriteBehind, io_executor
from igrs.profiles.file.server import SERVICE_TYPE
from igrs.profiles.file.transfer import Writeback, hash_file, write_all

if TYPE_CHECKING:
    import ssl

log = logging.getLogger(__name__)

Progress = Callable[[int, int], None]  # (bytes done, bytes total)
BLOCK = 1 << 20
PART_SUFFIX = ".igrs-part"


class TransferFailed(IGRSError):
    """An HTTP transfer step failed; ``return_code`` is the server's code (HTTP status)."""


def _said(text: str) -> str:
    """What a transfer answer says: its JSON ``error``, else its first line of text."""
    try:
        said = json.loads(text).get("error")
    except (ValueError, AttributeError):
        said = None
    return str(said) if said else (text.strip().splitlines() or ["no reason given"])[0][:200]


def error_code(exc: BaseException) -> int | None:
    """The return code of a remote failure, including codes outside ``ReturnCode`` (422, 460,
    507) that ``RemoteError.return_code`` cannot hold yet (they end its message as ``(NNN)``)."""
    if isinstance(exc, TransferFailed):
        return int(exc.return_code)
    if isinstance(exc, IGRSError):
        m = re.search(r"\((\d{3})\)$", exc.reason)
        if m:
            return int(m.group(1))
        return int(exc.return_code)
    return None


@dataclass(frozen=True, slots=True)
class Entry:
    name: str
    type: str  # file | dir | share | other
    size: int
    mtime: float
    access: str = ""

    @classmethod
    def parse(cls, d: dict[str, str]) -> Entry:
        return cls(d.get("name", ""), d.get("type", "other"), int(d.get("size", "0") or 0),
                   float(d.get("mtime", "0") or 0), d.get("access", ""))


def local_sha256(path: str | os.PathLike[str], progress: Progress | None = None) -> str:
    h = hashlib.sha256()
    total = os.path.getsize(path)
    done = 0
    with open(path, "rb") as f:
        while block := f.read(BLOCK):
            h.update(block)
            done += len(block)
            if progress is not None:
                progress(done, total)
    return h.hexdigest()


class _Throttle:
    def __init__(self, rate: float | None) -> None:
        self.rate, self.start, self.sent = rate, time.monotonic(), 0

    async def __call__(self, n: int) -> None:
        if not self.rate:
            return
        self.sent += n
        ahead = self.sent / self.rate - (time.monotonic() - self.start)
        if ahead > 0:
            await asyncio.sleep(ahead)


class _Stall:
    """Ends the transfer it guards with TimeoutError when no byte moved (``moved``) for
    ``limit`` seconds: one timer per transfer, re-armed only when it fires. (aiohttp's
    ``sock_read`` timeout re-arms a timer per socket read: an eighth of a download's event-loop
    time, profiled.)"""

    def __init__(self, limit: float) -> None:
        self.limit = limit
        self._loop = asyncio.get_running_loop()
        self._task = asyncio.current_task()
        self._fired = False
        self._last = self._loop.time()
        self._handle = self._loop.call_later(limit, self._check)
        self._cancelling = self._task.cancelling() if self._task is not None else 0

    def moved(self) -> None:
        self._last = self._loop.time()

    def _check(self) -> None:
        idle = self._loop.time() - self._last
        if idle < self.limit:
            self._handle = self._loop.call_later(self.limit - idle, self._check)
        elif self._task is not None:
            self._fired = True
            self._task.cancel()

    def __enter__(self) -> _Stall:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: Any) -> None:
        self._handle.cancel()
        if (self._fired and exc_type is asyncio.CancelledError and self._task is not None
                and self._task.uncancel() <= self._cancelling):
            raise TimeoutError(f"no byte moved for {self.limit:.0f} s")


class _Partial:
    """The ``.igrs-part`` file of a download, written (and hashed) by a worker thread."""

    def __init__(self, path: Path, offset: int, *, hashing: bool) -> None:
        self.path, self.offset, self.hashing = path, offset, hashing
        self._hash = hashlib.sha256()
        self._fd: int | None = None
        self._writeback = Writeback()

    def open(self) -> None:
        """Open at ``offset`` (dropping anything beyond), hashing the prefix kept."""
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
        if self.offset and self.hashing:
            self._hash = hash_file(self.path, self.offset)
        os.ftruncate(self._fd, self.offset)
        os.lseek(self._fd, self.offset, os.SEEK_SET)

    def restart(self) -> None:
        assert self._fd is not None
        os.ftruncate(self._fd, 0)
        os.lseek(self._fd, 0, os.SEEK_SET)
        self.offset, self._hash = 0, hashlib.sha256()

    def write(self, chunks: list[bytes]) -> None:
        assert self._fd is not None
        start = self.offset
        self.offset += write_all(self._fd, chunks)
        self._writeback.written(self._fd, start, self.offset)
        if self.hashing:
            for chunk in chunks:
                self._hash.update(chunk)

    def finish(self) -> str:
        """Durable on disk; the SHA-256 of the whole file (empty when not hashing)."""
        assert self._fd is not None
        os.fsync(self._fd)
        return self._hash.hexdigest() if self.hashing else ""

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def _tls_refused(remote: str, exc: aiohttp.ClientSSLError) -> TransferFailed:
    return TransferFailed(f"{remote}: TLS with the device failed: its certificate is not signed by the "
                          f"identity paired with, or it refused ours ({exc})",
                          return_code=ReturnCode.NOT_AUTHENTICATED)


class FileClient:
    """One open session with a device's FileServer, plus an HTTP client for the transfers.

    ``tls``: None (default) carries the bytes over TLS when the device offers it -- every igrs
    device of this version does -- and over plain HTTP for a device that does not know TLS
    transfers (a legacy peer); True requires TLS; False asks for plain HTTP. ``pinned`` makes
    the TLS context that accepts only the device's paired identity (``connect`` passes it).
    ``transport`` is what the last transfer used ("tls" or "http")."""

    def __init__(self, proxy: Any, base_url: str, *, http: aiohttp.ClientSession | None = None,
                 tls: bool | None = None, pinned: Callable[[], ssl.SSLContext] | None = None,
                 stall_timeout: float = FILE_STALL_TIMEOUT) -> None:
        self.proxy = proxy
        self.stall_timeout = stall_timeout  # s without a byte moved (or an answer): TimeoutError
        self.base_url = base_url.rstrip("/")
        self._http = http
        self._own_http = http is None
        self.tls = tls
        self._pinned = pinned
        self._context: ssl.SSLContext | None = None
        self.transport = ""

    @classmethod
    @contextlib.asynccontextmanager
    async def connect(cls, cp: Any, device: Any, *, tls: bool | None = None,
                      stall_timeout: float = FILE_STALL_TIMEOUT) -> AsyncIterator[FileClient]:
        """Open a session with ``device``'s file server through ControlPoint ``cp`` (paired)."""
        record = cp.find(device)
        parts = urlsplit(record.url)
        peer_key = cp.keystore.peer_key(record.device_id)

        def pinned() -> ssl.SSLContext:  # ssl and the certificate code load on the first TLS transfer
            from igrs.net.tls import PinnedTls

            if peer_key is None:
                raise TransferFailed("not paired with the device: no identity to pin for TLS",
                                     return_code=ReturnCode.FORBIDDEN)
            return PinnedTls(cp.identity).client_context(peer_key)

        async with cp.session(record, SERVICE_TYPE) as proxy:
            client = cls(proxy, f"{parts.scheme}://{parts.netloc}", tls=tls, pinned=pinned,
                         stall_timeout=stall_timeout)
            try:
                yield client
            finally:
                await client.close()

    @property
    def http(self) -> aiohttp.ClientSession:
        if self._http is None:
            # no sock_read: each transfer has its own stall timer (_Stall); a socket read (256 KiB)
            # fits the read buffer without pausing and resuming reading (as HTTP_HANDOFF_BUFFER)
            self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None, sock_connect=10),
                                               read_bufsize=HTTP_HANDOFF_BUFFER)
        return self._http

    async def close(self) -> None:
        if self._own_http and self._http is not None:
            await self._http.close()
            self._http = None

    # --- actions ------------------------------------------------------------------------------
    async def ls(self, path: str = "/", *, page: int = FILE_BROWSE_LIMIT) -> list[Entry]:
        """Every entry of a directory (all pages)."""
        out: list[Entry] = []
        while True:
            rows = await self.proxy.Browse(path=path, offset=len(out), limit=page)
            if not rows:
                return out
            out += [Entry.parse(r) for r in rows]

    async def stat(self, path: str, *, checksum: bool = False) -> dict[str, str]:
        return dict(await self.proxy.Stat(path=path, checksum=checksum))

    async def mkdir(self, path: str, *, parents: bool = False) -> None:
        await self.proxy.MakeDirectory(path=path, parents=parents)

    async def rm(self, path: str, *, recursive: bool = False) -> None:
        await self.proxy.Delete(path=path, recursive=recursive)

    async def mv(self, source: str, target: str, *, overwrite: bool = False) -> None:
        await self.proxy.Move(source=source, target=target, overwrite=overwrite)

    def watch(self) -> Any:
        """Changes made through the server: ``async for c in files.watch(): c.value["op"]``."""
        return self.proxy.subscribe("change")

    # --- transfers ----------------------------------------------------------------------------
    async def _begin(self, action: str, **args: Any) -> tuple[dict[str, str], str, ssl.SSLContext | None]:
        """Call BeginGet/BeginPut asking for the transport ``tls`` says; return the answer, the
        absolute URL and the TLS context to use (None: plain HTTP)."""
        call = getattr(self.proxy, action)
        if self.tls is not False and self._pinned is not None:
            try:
                info = dict(await call(**args, transport="tls"))
            except RemoteError as exc:
                if exc.return_code != ReturnCode.BAD_MESSAGE or "transport" not in exc.reason:
                    raise
                if self.tls:
                    raise TransferFailed(f"{action}: the device does not know TLS transfers",
                                         return_code=ReturnCode.FORBIDDEN) from None
                log.info("the device does not know TLS transfers (%s): plain HTTP", exc.reason)
                self.tls = False  # a legacy peer: do not ask again in this session
                info = dict(await call(**args))
        else:
            info = dict(await call(**args))
        if info.get("transport") == "tls":
            if self._context is None:
                assert self._pinned is not None
                self._context = self._pinned()
            self.transport = "tls"
            host = urlsplit(self.base_url).hostname or ""
            host = f"[{host}]" if ":" in host else host
            return info, f"https://{host}:{int(info['port'])}{info['url']}", self._context
        if self.tls:
            raise TransferFailed(f"{action}: the device offers no TLS transfer",
                                 return_code=ReturnCode.FORBIDDEN)
        self.transport = "http"
        return info, self.base_url + info["url"], None

    # --- get ----------------------------------------------------------------------------------
    async def get(self, remote: str, local: str | os.PathLike[str], *, resume: bool = True,
                  verify: bool = True, progress: Progress | None = None,
                  rate_limit: float | None = None) -> Path:
        """Download ``remote`` to ``local`` (written as ``local.igrs-part``, renamed when
        complete and, with ``verify``, its SHA-256 matches the server's)."""
        dest = Path(local)
        part = dest.with_name(dest.name + PART_SUFFIX)
        meta_path = dest.with_name(dest.name + PART_SUFFIX + ".json")
        info, url, context = await self._begin("BeginGet", path=remote, checksum=verify)
        size = int(info["size"])
        meta = {"remote": remote, "size": size, "mtime": info["mtime"], "sha256": info.get("sha256", "")}
        offset = 0
        if resume and part.exists():
            try:
                old = json.loads(meta_path.read_text())
            except (OSError, ValueError):
                old = None
            if old == meta and part.stat().st_size <= size:
                offset = part.stat().st_size
        meta_path.write_text(json.dumps(meta))
        loop = asyncio.get_running_loop()
        sink = _Partial(part, offset, hashing=verify)
        await loop.run_in_executor(io_executor(), sink.open)  # (re-hashes a kept prefix)
        try:
            await self._receive(remote, url, context, sink, size, progress, rate_limit)
            digest = await loop.run_in_executor(io_executor(), sink.finish)  # fsync'ed
        finally:
            sink.close()
        if sink.offset != size:
            raise TransferFailed(f"GET {remote}: got {sink.offset} of {size} bytes (run again to resume)",
                                 return_code=ReturnCode.PRECONDITION_FAILED)
        if verify and meta["sha256"] and digest != meta["sha256"]:
            part.unlink()
            meta_path.unlink(missing_ok=True)
            raise TransferFailed(f"GET {remote}: SHA-256 mismatch; the partial was discarded",
                                 return_code=460)
        await loop.run_in_executor(io_executor(), os.replace, part, dest)
        meta_path.unlink(missing_ok=True)
        return dest

    async def _receive(self, remote: str, url: str, context: ssl.SSLContext | None, sink: _Partial, size: int,
                       progress: Progress | None, rate_limit: float | None) -> None:
        """GET the bytes from ``sink.offset`` into ``sink`` (written in a thread as they come)."""
        if progress is not None:
            progress(sink.offset, size)
        if sink.offset >= size:
            return
        throttle = _Throttle(rate_limit)
        writer = WriteBehind(sink.write)
        headers = {"Range": f"bytes={sink.offset}-"} if sink.offset else {}
        try:
            with _Stall(self.stall_timeout) as stall:
                async with self.http.get(url, headers=headers, ssl=context or True) as resp:
                    if resp.status == 200 and sink.offset:  # the server ignored the range: start over
                        await asyncio.get_running_loop().run_in_executor(io_executor(), sink.restart)
                    elif resp.status not in (200, 206):
                        raise TransferFailed(f"GET {remote}: {_said(await resp.text())} (HTTP {resp.status})",
                                             return_code=resp.status)
                    done = sink.offset
                    async for chunk, _ in resp.content.iter_chunks():
                        await writer.add(chunk)
                        done += len(chunk)
                        if progress is not None:
                            progress(done, size)
                        await throttle(len(chunk))
                        stall.moved()
            await writer.flush()
        except aiohttp.ClientSSLError as exc:
            raise _tls_refused(remote, exc) from None
        except BaseException:
            writer.settle()  # what arrived is kept: the next run resumes after it
            raise

    # --- put ----------------------------------------------------------------------------------
    async def put(self, local: str | os.PathLike[str], remote: str, *, overwrite: bool = False,
                  progress: Progress | None = None, sha256: str | None = None,
                  chunk_size: int | None = None, rate_limit: float | None = None,
                  on_resume: Callable[[int], None] | None = None) -> str:
        """Upload ``local`` to ``remote``; resumes where the server's partial ends. Returns
        the SHA-256 the server verified. ``chunk_size`` splits the upload into several PUTs."""
        src = Path(local)
        size = src.stat().st_size
        digest = sha256 if sha256 else await asyncio.to_thread(local_sha256, src)
        info, url, context = await self._begin("BeginPut", path=remote, size=size, sha256=digest,
                                               overwrite=overwrite)
        offset = int(info["offset"])
        if offset and on_resume is not None:
            on_resume(offset)
        if progress is not None:
            progress(offset, size)
        throttle = _Throttle(rate_limit)
        conflicts = 0
        while True:
            end = size if chunk_size is None else min(size, offset + chunk_size)
            headers = {"Upload-Offset": str(offset), "Content-Type": "application/octet-stream",
                       "Content-Length": str(end - offset)}
            try:
                with _Stall(self.stall_timeout) as stall:
                    body = self._reader(src, offset, end, size, progress, throttle, stall)
                    async with self.http.put(url, data=body, headers=headers, ssl=context or True) as resp:
                        text = await resp.text()
                        server_offset = resp.headers.get("Upload-Offset")
                        status = resp.status
            except aiohttp.ClientSSLError as exc:
                raise _tls_refused(remote, exc) from None
            if status == 201 or (status == 200 and '"complete": true' in text):
                return digest
            if status == 200:
                offset = int(server_offset or end)
                continue
            if status == 409 and server_offset is not None and conflicts < 3:
                conflicts += 1
                offset = int(server_offset)
                continue
            raise TransferFailed(f"PUT {remote}: {_said(text)} (HTTP {status})", return_code=status)

    @staticmethod
    async def _reader(src: Path, start: int, end: int, total: int, progress: Progress | None,
                      throttle: _Throttle, stall: _Stall) -> AsyncIterator[bytes]:
        with open(src, "rb") as f:
            f.seek(start)
            pos = start
            while pos < end:
                stall.moved()
                block = f.read(min(BLOCK, end - pos))
                if not block:
                    raise IGRSError(f"{src} shrank while being sent")
                pos += len(block)
                yield block
                if progress is not None:
                    progress(pos, total)
                await throttle(len(block))


__all__ = ["Entry", "FileClient", "RemoteError", "TransferFailed", "error_code", "local_sha256"]
