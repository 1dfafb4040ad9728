"""The File profile server (ISO/IEC 14543-5-22 scope; design: specs/file-profile.md).

    from igrs.profiles.file import SharedFolder, attach_file_server
    server = attach_file_server(device, [SharedFolder("photos", "/srv/photos"),
                                         SharedFolder("inbox", "/srv/inbox", writable=True)])

``FileServer`` is an IGRS service (``urn:IGRS:ServiceType:FileServer:1``): its actions
browse, stat and change the shared folders; ``BeginGet`` / ``BeginPut`` hand out
short-lived capability URLs under ``/files/`` where the bytes move as HTTP (GET with ranges;
PUT resumable at an offset, SHA-256 verified): inside TLS 1.3 on the device's TLS port when
the paired caller asks for it (``transport="tls"``, identities pinned: igrs.net.tls), else
on the device's own HTTP port. Permissions are per paired device; every action learns its
caller from the secure pipe.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import secrets
import shutil
import stat as st
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from igrs.constants import (
    FILE_BROWSE_BYTES,
    FILE_BROWSE_LIMIT,
    FILE_HTTP_PREFIX,
    FILE_MAX_TOKENS,
    FILE_MAX_UPLOADS_PER_PEER,
    FILE_PARTIAL_LIFETIME,
    FILE_QUOTA_EXCEEDED,
    FILE_TOKEN_LIFETIME,
    ReturnCode,
)
from igrs.errors import IGRSError
from igrs.node.service import Service, action, attribute
from igrs.node.service_host import current_peer
from igrs.profiles.file import paths
from igrs.profiles.file.grants import Grant
from igrs.profiles.file.paths import PARTIAL_DIR, Resolved
from igrs.profiles.file.refusals import refusal
from igrs.profiles.file.shares import NONE, RO, RW, SharedFolder, parse_share_spec, parse_size
from igrs.profiles.file.transfer import (
    Upload,
    default_file_mode,
    expire_partials,
    partials,
)
from igrs.wire.lazy_import import lazy_import
from igrs.wire.memo import Memo

if TYPE_CHECKING:
    from aiohttp import web

    from igrs.net.tls import TlsEndpoint
    from igrs.node.device import Device
    from igrs.profiles.file import http_transfers
else:  # aiohttp and the transfers' code load with the first request under /files/
    http_transfers = lazy_import("igrs.profiles.file.http_transfers")

log = logging.getLogger(__name__)

SERVICE_TYPE = "urn:IGRS:ServiceType:FileServer:1"
LISTING_TTL = 5.0  # s a sorted directory listing is reused for paging


# --- who is calling -----------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Caller:
    device_id: str  # as claimed in the clear when not ``secure`` (a service shared openly)
    address: str
    secure: bool = True  # the call came sealed in a secure pipe, from a paired device


def current_caller() -> Caller | None:
    """The peer whose InvokeServiceRequest is being handled (None outside an invocation): the
    File profile's view of ``igrs.node.service_host.current_peer``, the one "who is calling"."""
    peer = current_peer.get()
    return None if peer is None else Caller(str(peer.device_id), peer.address, peer.secure)




# --- capabilities: igrs.profiles.file.grants ----------------------------------------------------


def _err(code: int, reason: str) -> IGRSError:
    return IGRSError(reason, return_code=code)


def _kind(mode: int) -> str:
    return "dir" if st.S_ISDIR(mode) else "file" if st.S_ISREG(mode) else "other"


def _entry(name: str, s: os.stat_result) -> dict[str, str]:
    return {"name": name, "type": _kind(s.st_mode), "size": str(s.st_size if st.S_ISREG(s.st_mode) else 0),
            "mtime": f"{s.st_mtime:.6f}"}


# --- the service --------------------------------------------------------------------------------
class FileServer(Service):
    """Shared folders of one device (actions: specs/file-profile.md §4)."""

    service_type = SERVICE_TYPE
    name = "File server"
    # The last change made through this service: {"op", "path", "to", "seq"} (watch = subscribe).
    change: attribute[dict[str, str]] = attribute(dict[str, str], {}, notifiable=True)

    def __init__(self, folders: Iterable[SharedFolder] = (), *, token_lifetime: float = FILE_TOKEN_LIFETIME,
                 clock: Callable[[], float] = time.monotonic, require_tls: bool = False) -> None:
        self.shares: dict[str, SharedFolder] = {}
        for folder in folders:
            self.add_folder(folder)
        self.token_lifetime = token_lifetime
        self.require_tls = require_tls  # refuse plain HTTP transfers (legacy clients)
        self._tls_setup: Callable[[], TlsEndpoint] | None = None
        self._tls: TlsEndpoint | None = None
        self.clock = clock
        self._grants: OrderedDict[str, Grant] = OrderedDict()
        self._uploads: dict[str, Upload] = {}
        self._listings: Memo[str, tuple[int, float, list[dict[str, str]]]] = Memo(64)
        self._usage: dict[str, tuple[float, int]] = {}
        self._hashes: Memo[tuple[int, int, int, int], str] = Memo(1024)
        self._opening: dict[str, tuple[str, int]] = {}  # upload id -> (share, bytes): accepted, no partial yet
        self._file_mode = default_file_mode()
        self._seq = 0

    def add_folder(self, folder: SharedFolder) -> None:
        if folder.name in self.shares:
            raise ValueError(f"share {folder.name!r} exists")
        self.shares[folder.name] = folder
        with contextlib.suppress(OSError):
            expire_partials(folder.root, FILE_PARTIAL_LIFETIME)

    async def invoke(self, name: str, arguments: Any) -> Any:
        """Every action; a refusal of the device's file system is answered as such (403/507
        with its reason: refusals.py), logged here with the device's path."""
        try:
            return await super().invoke(name, arguments)
        except OSError as exc:
            refused = refusal(exc)
            if refused is None:
                raise
            log.warning("%s refused by the file system: %s", name, exc)
            raise refused from None

    # --- access -------------------------------------------------------------------------------
    def _caller(self) -> Caller:
        caller = current_caller()
        if caller is None:
            raise _err(ReturnCode.FORBIDDEN, "the caller is unknown (no secure pipe)")
        return caller

    def _share_of(self, name: str, caller: Caller) -> tuple[SharedFolder, str]:
        share = self.shares.get(name)
        access = share.access(caller.device_id, secure=caller.secure) if share is not None else NONE
        if share is None or access == NONE:
            raise paths.not_found("share")  # shares a peer may not use are not disclosed
        return share, access

    def _target(self, path: str, *, write: bool = False) -> tuple[SharedFolder, Resolved]:
        parts = paths.split(path)
        if not parts:
            raise _err(ReturnCode.FORBIDDEN, "the top level lists the shares; it cannot be changed")
        share, access = self._share_of(parts[0], self._caller())
        if write and access != RW:
            raise _err(ReturnCode.FORBIDDEN, f"share {share.name!r} is read-only for this device")
        return share, paths.resolve(share.root, share.name, parts[1:])

    def _changed(self, op: str, path: str, to: str = "") -> None:
        self._seq += 1
        self._listings.clear()
        self._usage.clear()
        self.change = {"op": op, "path": path, "to": to, "seq": str(self._seq)}

    # --- browsing -------------------------------------------------------------------------------
    def _listing(self, target: Resolved, share: SharedFolder) -> list[dict[str, str]]:
        key = str(target.real)
        try:
            dir_stat = os.stat(target.real)
        except FileNotFoundError:
            raise paths.not_found("directory") from None
        if not st.S_ISDIR(dir_stat.st_mode):
            raise _err(ReturnCode.CONFLICT, "not a directory")
        cached = self._listings.get(key)
        now = self.clock()
        if cached is not None and cached[0] == dir_stat.st_mtime_ns and now - cached[1] < LISTING_TTL:
            return cached[2]
        root_real = str(share.root)
        out = []
        with os.scandir(target.real) as it:
            for e in it:
                if target.is_root and e.name == PARTIAL_DIR:
                    continue
                try:
                    if e.is_symlink() and not paths.within(root_real, os.path.realpath(e.path)):
                        continue  # symlinks leaving the share are not shown (nor followed)
                    out.append(_entry(e.name, e.stat()))
                except OSError:
                    continue
        out.sort(key=lambda x: x["name"])
        self._listings.remember(key, (dir_stat.st_mtime_ns, now, out))
        return out

    @action
    async def Browse(self, path: str, offset: int = 0, limit: int = 100) -> list[dict[str, str]]:
        """Entries of a directory sorted by name, from ``offset``; at most ``limit`` (and a
        body-size budget) per page: an empty page is the end. ``/`` lists the shares."""
        if offset < 0 or limit < 1:
            raise _err(ReturnCode.BAD_MESSAGE, "offset must be >= 0 and limit >= 1")
        limit = min(limit, FILE_BROWSE_LIMIT)
        parts = paths.split(path)
        if not parts:
            caller = self._caller()
            rows = []
            for name, share in sorted(self.shares.items()):
                access = share.access(caller.device_id, secure=caller.secure)
                if access != NONE:
                    with contextlib.suppress(OSError):
                        rows.append({**_entry(name, os.stat(share.root)), "type": "share", "access": access})
            return rows[offset:offset + limit]
        share, target = self._target(path)
        entries = await asyncio.to_thread(self._listing, target, share) if offset == 0 else \
            self._listing(target, share)
        page: list[dict[str, str]] = []
        budget = FILE_BROWSE_BYTES
        for entry in entries[offset:offset + limit]:
            budget -= 96 + 6 * len(entry["name"].encode())  # worst-case XML escaping
            if budget < 0 and page:
                break
            page.append(entry)
        return page

    @action
    async def Stat(self, path: str, checksum: bool = False) -> dict[str, str]:
        """name, type (file/dir/share/other), size, mtime, access; ``entries`` for a directory;
        ``sha256`` of a file when ``checksum``."""
        parts = paths.split(path)
        if not parts:
            return {"name": "/", "type": "dir", "size": "0", "mtime": "0", "access": RO,
                    "entries": str(len(await self.Browse("/", 0, FILE_BROWSE_LIMIT)))}
        share, target = self._target(path)
        try:
            s = os.stat(target.real)
        except FileNotFoundError:
            raise paths.not_found("file or directory") from None
        out = _entry(parts[-1], s)
        caller = self._caller()
        out["access"] = share.access(caller.device_id, secure=caller.secure)
        if target.is_root:
            out["type"] = "share"
        if st.S_ISDIR(s.st_mode):
            out["entries"] = str(len(await asyncio.to_thread(self._listing, target, share)))
        elif checksum and st.S_ISREG(s.st_mode):
            out["sha256"] = await self._sha256(target.real, s)
        return out

    async def _sha256(self, real: Path, s: os.stat_result) -> str:
        key = (s.st_dev, s.st_ino, s.st_size, s.st_mtime_ns)
        digest = self._hashes.get(key)
        if digest is None:
            from igrs.profiles.file.transfer import file_sha256

            digest = await asyncio.to_thread(file_sha256, real)
            self._hashes.remember(key, digest)
        return digest

    # --- changing -------------------------------------------------------------------------------
    @action
    async def MakeDirectory(self, path: str, parents: bool = False) -> None:
        _, target = self._target(path, write=True)
        try:
            if parents:
                target.real.mkdir(parents=True, exist_ok=False)
            else:
                os.mkdir(target.real)
        except FileExistsError:
            raise _err(ReturnCode.CONFLICT, "exists") from None
        except FileNotFoundError:
            raise paths.not_found("parent directory") from None
        self._changed("mkdir", target.virtual)

    @action
    async def Delete(self, path: str, recursive: bool = False) -> None:
        """Delete a file, an empty directory, or (``recursive``) a directory tree."""
        _, target = self._target(path, write=True)
        if target.is_root:
            raise _err(ReturnCode.FORBIDDEN, "a share itself cannot be deleted")
        real = target.real
        try:
            if real.is_dir():
                if recursive:
                    await asyncio.to_thread(shutil.rmtree, real)
                else:
                    os.rmdir(real)
            else:
                os.unlink(real)
        except FileNotFoundError:
            raise paths.not_found("file or directory") from None
        except OSError as exc:
            if exc.errno == errno.ENOTEMPTY:
                raise _err(ReturnCode.CONFLICT, "directory not empty (recursive=true deletes it)") from None
            raise
        self._changed("delete", target.virtual)

    @action
    async def Move(self, source: str, target: str, overwrite: bool = False) -> None:
        """Rename / move within the device's shares (a directory never replaces anything)."""
        _, src = self._target(source, write=True)
        _, dst = self._target(target, write=True)
        if src.is_root or dst.is_root:
            raise _err(ReturnCode.FORBIDDEN, "a share itself cannot be moved or replaced")
        if not src.real.exists():
            raise paths.not_found("source")
        if paths.within(str(src.real), str(dst.real)):
            raise _err(ReturnCode.CONFLICT, "cannot move a directory into itself")
        if dst.real.exists() and (not overwrite or dst.real.is_dir() or src.real.is_dir()):
            raise _err(ReturnCode.CONFLICT, "the target exists")
        if not dst.real.parent.is_dir():
            raise paths.not_found("target directory")
        try:
            os.replace(src.real, dst.real) if overwrite else _rename_noreplace(src.real, dst.real)
        except FileExistsError:
            raise _err(ReturnCode.CONFLICT, "the target exists") from None
        except OSError as exc:
            if exc.errno == errno.EXDEV:
                raise _err(ReturnCode.CONFLICT, "source and target are on different file systems") from None
            raise
        self._changed("move", src.virtual, dst.virtual)

    # --- transfers ------------------------------------------------------------------------------
    def serve_tls(self, setup: Callable[[], TlsEndpoint]) -> None:
        """Offer transfers over TLS (``transport="tls"``) through the endpoint ``setup`` makes on
        first use (``attach_file_server`` passes the device's)."""
        self._tls_setup = setup

    @property
    def tls(self) -> TlsEndpoint | None:
        if self._tls is None and self._tls_setup is not None:
            self._tls = self._tls_setup()
        return self._tls

    async def _transport(self, caller: Caller, transport: str) -> dict[str, str]:
        """The fields a BeginGet/BeginPut answer adds for ``transport`` ("http" or "tls")."""
        if transport not in ("http", "tls"):
            raise _err(ReturnCode.BAD_MESSAGE, 'transport must be "http" or "tls"')
        if transport == "tls" and self.tls is not None:
            port = await self.tls.port_for(caller.device_id)
            if port is None:
                raise _err(ReturnCode.FORBIDDEN, "the caller is not paired")
            return {"transport": "tls", "port": str(port)}
        if self.require_tls:
            raise _err(ReturnCode.FORBIDDEN, 'this device transfers files over TLS only (transport="tls")')
        return {"transport": "http"}

    def _grant(self, grant: Grant) -> str:
        now = self.clock()
        for key in [k for k, g in self._grants.items() if g.expires < now]:
            self._grants.pop(key)
        while len(self._grants) >= FILE_MAX_TOKENS:
            self._grants.popitem(last=False)
        token = secrets.token_urlsafe(24)
        self._grants[token] = grant
        return FILE_HTTP_PREFIX + token

    @action
    async def BeginGet(self, path: str, checksum: bool = False, transport: str = "http") -> dict[str, str]:
        """A capability URL (path) to GET the file, with ranges: ``url``, ``size``, ``mtime``,
        ``expires`` (s), ``sha256`` when ``checksum``; ``transport`` ("http": this device's HTTP
        port; "tls": the TLS ``port``, pinned identities)."""
        caller = self._caller()
        share, target = self._target(path)
        try:
            s = os.stat(target.real)
        except FileNotFoundError:
            raise paths.not_found("file") from None
        if not st.S_ISREG(s.st_mode):
            raise _err(ReturnCode.CONFLICT, "not a regular file")
        how = await self._transport(caller, transport)
        url = self._grant(Grant("get", share.name, target.rel, caller.device_id, caller.address,
                                self.clock() + self.token_lifetime, tls=how["transport"] == "tls"))
        out = {"url": url, "size": str(s.st_size), "mtime": f"{s.st_mtime:.6f}",
               "expires": str(int(self.token_lifetime)), **how}
        if checksum:
            out["sha256"] = await self._sha256(target.real, s)
        return out

    def _usage_of(self, share: SharedFolder) -> int:
        cached = self._usage.get(share.name)
        if cached is not None and self.clock() - cached[0] < LISTING_TTL:
            return cached[1]
        total = 0
        for dirpath, _dirs, files in os.walk(share.root):
            for f in files:
                with contextlib.suppress(OSError):
                    total += os.lstat(os.path.join(dirpath, f)).st_size
        self._usage[share.name] = (self.clock(), total)
        return total

    def _reserved(self, shares: Iterable[SharedFolder], exclude: str) -> int:
        """Bytes still to come of the unfinished uploads into ``shares`` (their partials, and
        those accepted but not yet opened), but ``exclude``."""
        outstanding: dict[str, int] = {}
        names = set()
        for share in shares:
            names.add(share.name)
            for p in partials(share.root):
                outstanding[str(p["id"])] = max(0, int(p["size"]) - int(p["offset"]))  # type: ignore[call-overload]
        outstanding.update({key: n for key, (name, n) in self._opening.items() if name in names})
        outstanding.pop(exclude, None)
        return sum(outstanding.values())

    @action
    async def BeginPut(self, path: str, size: int, sha256: str, overwrite: bool = False,
                       transport: str = "http") -> dict[str, str]:
        """A capability URL to PUT ``size`` bytes whose SHA-256 is ``sha256`` to ``path``:
        ``url``, ``upload`` (id), ``offset`` (bytes already held: resume from there);
        ``transport`` as BeginGet."""
        caller = self._caller()
        share, target = self._target(path, write=True)
        if target.is_root:
            raise _err(ReturnCode.CONFLICT, "a share is a directory")
        if size > share.max_upload:
            raise _err(ReturnCode.PAYLOAD_TOO_LARGE, f"larger than the {share.max_upload} bytes allowed")
        if not target.real.parent.is_dir():
            raise paths.not_found("parent directory")
        existing = 0
        if target.real.exists():
            if target.real.is_dir():
                raise _err(ReturnCode.CONFLICT, "a directory has that name")
            if not overwrite:
                raise _err(ReturnCode.CONFLICT, "the file exists (overwrite=true replaces it)")
            existing = target.real.stat().st_size
        sha256 = sha256.lower()
        how = await self._transport(caller, transport)
        held = partials(share.root)
        upload_key = _upload_key(caller.device_id, share.name, target.virtual, size, sha256)
        if (sum(p.get("peer") == caller.device_id for p in held) >= FILE_MAX_UPLOADS_PER_PEER
                and upload_key not in {p["id"] for p in held}):
            raise _err(ReturnCode.TOO_MANY_REQUESTS, "too many unfinished uploads from this device")
        have = next((int(p["offset"]) for p in held  # type: ignore[call-overload]
                     if p["id"] == upload_key and p.get("size") == size), 0)
        needed = size - have
        if share.quota is not None:
            used = await asyncio.to_thread(self._usage_of, share)
            others = self._reserved([share], upload_key)
            if used + others + needed - existing > share.quota:
                raise _err(FILE_QUOTA_EXCEEDED, "the share's quota would be exceeded")
        device = os.stat(share.root).st_dev
        same_disk = [s for s in self.shares.values() if _device_of(s.root) == device]
        reserved = self._reserved(same_disk, upload_key)
        if shutil.disk_usage(share.root).free - reserved < needed:
            raise _err(FILE_QUOTA_EXCEEDED, "not enough free disk space" +
                       (f" ({reserved} bytes are reserved by unfinished uploads)" if reserved else ""))
        up = self._uploads.get(upload_key)
        if up is None or up.state != "receiving":
            self._opening[upload_key] = (share.name, needed)  # reserved before the partial exists
            try:
                up = await asyncio.to_thread(Upload.open, share.root, share.name, target.virtual,
                                             caller.device_id, size, sha256)
            finally:
                self._opening.pop(upload_key, None)
            self._uploads[up.id] = up
        url = self._grant(Grant("put", share.name, target.rel, caller.device_id, caller.address,
                                self.clock() + self.token_lifetime, up, overwrite, how["transport"] == "tls"))
        return {"url": url, "upload": up.id, "offset": str(up.offset), "size": str(size),
                "expires": str(int(self.token_lifetime)), **how}

    @action
    async def CancelPut(self, upload: str) -> None:
        """Forget an unfinished upload of this device (its partial data is deleted)."""
        caller = self._caller()
        for share in self.shares.values():
            for p in partials(share.root):
                if p["id"] == upload and p.get("peer") == caller.device_id:
                    up = self._uploads.pop(upload, None)
                    if up is not None and up.busy:
                        raise _err(ReturnCode.CONFLICT, "the upload is in progress")
                    for suffix in (".part", ".json"):
                        with contextlib.suppress(FileNotFoundError):
                            (share.root / PARTIAL_DIR / f"{upload}{suffix}").unlink()
                    return
        raise paths.not_found("upload")

    # --- plain HTTP under /files/ --------------------------------------------------------------
    async def handle_http(self, request: web.BaseRequest) -> web.StreamResponse:
        """A request under ``/files/`` (a capability URL): igrs.profiles.file.http_transfers."""
        return await http_transfers.handle(self, request)

    async def _receive(self, request: web.BaseRequest, grant: Grant, up: Upload,
                       target: Resolved) -> web.StreamResponse:
        """The body of a PUT/PATCH on an upload's capability URL."""
        return await http_transfers.receive(self, request, grant, up, target)


def _device_of(path: Path) -> int:
    try:
        return os.stat(path).st_dev
    except OSError:
        return -1


def _upload_key(peer: str, share: str, path: str, size: int, sha256: str) -> str:
    from igrs.profiles.file.transfer import upload_id

    return upload_id(peer, share, path, size, sha256)


def _rename_noreplace(src: Path, dst: Path) -> None:
    """rename without replacing (hard link + unlink for files; checked rename for dirs)."""
    if src.is_dir() and not src.is_symlink():
        if dst.exists():
            raise FileExistsError(str(dst))
        os.rename(src, dst)
        return
    os.link(src, dst, follow_symlinks=False)
    os.unlink(src)


def attach_file_server(device: Device, folders: Iterable[SharedFolder | str], *,
                       service_id: int | None = None, **kwargs: Any) -> FileServer:
    """Share ``folders`` (SharedFolder or ``PATH[:rw]`` / ``NAME=PATH[:rw]`` specs) from
    ``device``: adds the FileServer service, mounts ``/files/`` and offers TLS transfers on
    the device's TLS port (its identity, its pairings). Call before or after ``device.start()``."""
    server = FileServer([f if isinstance(f, SharedFolder) else parse_share_spec(f) for f in folders], **kwargs)
    device.add_service(server, service_id)
    device.http.mount(FILE_HTTP_PREFIX, server.handle_http)

    def endpoint() -> TlsEndpoint:  # ssl and the certificate code load on the first TLS transfer
        from igrs.net.tls import TlsEndpoint

        return TlsEndpoint(device.http, lambda: device.identity, device.keystore.peer_key)

    server.serve_tls(endpoint)
    return server


__all__ = ["SERVICE_TYPE", "Caller", "FileServer", "SharedFolder", "attach_file_server", "current_caller",
           "parse_share_spec", "parse_size"]
