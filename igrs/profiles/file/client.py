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
import os
import re
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from igrs.constants import FILE_BROWSE_LIMIT, ReturnCode
from igrs.errors import IGRSError, RemoteError
from igrs.profiles.file.server import SERVICE_TYPE

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


class FileClient:
    """One open session with a device's FileServer, plus an HTTP client for the transfers."""

    def __init__(self, proxy: Any, base_url: str, *, http: aiohttp.ClientSession | None = None) -> None:
        self.proxy = proxy
        self.base_url = base_url.rstrip("/")
        self._http = http
        self._own_http = http is None

    @classmethod
    @contextlib.asynccontextmanager
    async def connect(cls, cp: Any, device: Any) -> AsyncIterator[FileClient]:
        """Open a session with ``device``'s file server through ControlPoint ``cp`` (paired)."""
        record = cp.find(device)
        parts = urlsplit(record.url)
        async with cp.session(record, SERVICE_TYPE) as proxy:
            client = cls(proxy, f"{parts.scheme}://{parts.netloc}")
            try:
                yield client
            finally:
                await client.close()

    @property
    def http(self) -> aiohttp.ClientSession:
        if self._http is None:
            self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None, sock_connect=10,
                                                                             sock_read=60))
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

    # --- get ----------------------------------------------------------------------------------
    async def get(self, remote: str, local: str | os.PathLike[str], *, resume: bool = True,
                  verify: bool = True, progress: Progress | None = None,
                  rate_limit: float | None = None) -> Path:
        """Download ``remote`` to ``local`` (written as ``local.igrs-part``, renamed when
        complete and, with ``verify``, its SHA-256 matches the server's)."""
        dest = Path(local)
        part = dest.with_name(dest.name + PART_SUFFIX)
        meta_path = dest.with_name(dest.name + PART_SUFFIX + ".json")
        info = await self.proxy.BeginGet(path=remote, checksum=verify)
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
        h = hashlib.sha256()
        with open(part, "r+b" if offset else "wb") as f:
            if offset:
                while f.tell() < offset and (block := f.read(min(BLOCK, offset - f.tell()))):
                    h.update(block)
                f.seek(offset)
                f.truncate()
            if progress is not None:
                progress(offset, size)
            if offset < size:
                throttle = _Throttle(rate_limit)
                headers = {"Range": f"bytes={offset}-"} if offset else {}
                async with self.http.get(self.base_url + info["url"], headers=headers) as resp:
                    if resp.status == 200 and offset:  # the server ignored the range: start over
                        f.seek(0)
                        f.truncate()
                        h, offset = hashlib.sha256(), 0
                    elif resp.status not in (200, 206):
                        raise TransferFailed(f"GET {remote}: {_said(await resp.text())} (HTTP {resp.status})",
                                             return_code=resp.status)
                    done = offset
                    async for chunk in resp.content.iter_chunked(BLOCK):
                        f.write(chunk)
                        h.update(chunk)
                        done += len(chunk)
                        if progress is not None:
                            progress(done, size)
                        await throttle(len(chunk))
            f.flush()
            if f.tell() != size:
                raise TransferFailed(f"GET {remote}: got {f.tell()} of {size} bytes (run again to resume)",
                                     return_code=ReturnCode.PRECONDITION_FAILED)
            os.fsync(f.fileno())
        if verify and meta["sha256"] and h.hexdigest() != meta["sha256"]:
            part.unlink()
            meta_path.unlink(missing_ok=True)
            raise TransferFailed(f"GET {remote}: SHA-256 mismatch; the partial was discarded",
                                 return_code=460)
        os.replace(part, dest)
        meta_path.unlink(missing_ok=True)
        return dest

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
        info = await self.proxy.BeginPut(path=remote, size=size, sha256=digest, overwrite=overwrite)
        url, offset = self.base_url + info["url"], int(info["offset"])
        if offset and on_resume is not None:
            on_resume(offset)
        if progress is not None:
            progress(offset, size)
        throttle = _Throttle(rate_limit)
        conflicts = 0
        while True:
            end = size if chunk_size is None else min(size, offset + chunk_size)
            body = self._reader(src, offset, end, size, progress, throttle)
            async with self.http.put(url, data=body, headers={"Upload-Offset": str(offset),
                                                            "Content-Type": "application/octet-stream",
                                                            "Content-Length": str(end - offset)}) as resp:
                text = await resp.text()
                server_offset = resp.headers.get("Upload-Offset")
                if resp.status == 201 or (resp.status == 200 and '"complete": true' in text):
                    return digest
                if resp.status == 200:
                    offset = int(server_offset or end)
                    continue
                if resp.status == 409 and server_offset is not None and conflicts < 3:
                    conflicts += 1
                    offset = int(server_offset)
                    continue
                raise TransferFailed(f"PUT {remote}: {_said(text)} (HTTP {resp.status})",
                                     return_code=resp.status)

    @staticmethod
    async def _reader(src: Path, start: int, end: int, total: int, progress: Progress | None,
                      throttle: _Throttle) -> AsyncIterator[bytes]:
        with open(src, "rb") as f:
            f.seek(start)
            pos = start
            while pos < end:
                block = f.read(min(BLOCK, end - pos))
                if not block:
                    raise IGRSError(f"{src} shrank while being sent")
                pos += len(block)
                yield block
                if progress is not None:
                    progress(pos, total)
                await throttle(len(block))


__all__ = ["Entry", "FileClient", "RemoteError", "TransferFailed", "error_code", "local_sha256"]
