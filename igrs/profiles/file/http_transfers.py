"""The File profile's plain HTTP side: GET and resumable PUT on the capability URLs under
``/files/`` (specs/file-profile.md), answered with aiohttp.

Loaded by ``FileServer.handle_http`` on the first such request, so a device sharing folders
imports aiohttp only when a transfer starts.
"""

from __future__ import annotations

import asyncio
import logging
import os
from typing import IO, TYPE_CHECKING, Any, Protocol

from aiohttp import web
from aiohttp.abc import AbstractStreamWriter

from igrs.constants import FILE_HTTP_PREFIX
from igrs.profiles.file import paths
from igrs.profiles.file.grants import Grant, same_host
from igrs.profiles.file.paths import PathRefused, Resolved
from igrs.profiles.file.pipeline import WriteBehind, io_executor
from igrs.profiles.file.refusals import refusal
from igrs.profiles.file.shares import NONE, RW
from igrs.profiles.file.transfer import COMMITTED, TransferError, Upload

if TYPE_CHECKING:
    from collections import OrderedDict

    from igrs.net.tls import TlsEndpoint
    from igrs.profiles.file.shares import SharedFolder

log = logging.getLogger("igrs.profiles.file.server")
READ_CHUNK = 1 << 20


class TransferHost(Protocol):
    """What the HTTP side uses of its igrs.profiles.file.server.FileServer."""

    shares: dict[str, SharedFolder]
    token_lifetime: float
    _grants: OrderedDict[str, Grant]
    _uploads: dict[str, Upload]
    _file_mode: int

    @property
    def tls(self) -> TlsEndpoint | None: ...
    def clock(self) -> float: ...
    def _changed(self, op: str, path: str, to: str = "") -> None: ...
    async def _receive(self, request: web.BaseRequest, grant: Grant, up: Upload,
                       target: Resolved) -> web.StreamResponse: ...


async def handle(self: TransferHost, request: web.BaseRequest) -> web.StreamResponse:
    """The answer to a request under ``/files/`` for ``self``'s capability URLs."""
    token = request.path[len(FILE_HTTP_PREFIX):]
    grant = self._grants.get(token)
    now = self.clock()
    if grant is None or grant.expires < now:
        return web.Response(status=404, text="no such transfer (expired?)\n")
    if not same_host(request.remote or "", grant.address):
        return web.Response(status=403, text="this transfer belongs to another device\n")
    if grant.tls and (self.tls is None or not self.tls.verified(request.transport, grant.peer)):
        return web.Response(status=403, text="this transfer is for the TLS connection of the device "
                            "that asked for it (its paired identity's certificate)\n")
    share = self.shares.get(grant.share)
    if share is None or share.access(grant.peer) == NONE:
        return web.Response(status=403, text="access withdrawn\n")
    try:
        target = paths.resolve(share.root, share.name, grant.rel)
    except PathRefused as exc:
        return web.Response(status=exc.return_code, text=exc.reason + "\n")
    if grant.kind == "get":
        if request.method not in ("GET", "HEAD"):
            return web.Response(status=405, headers={"Allow": "GET, HEAD"})
        if not target.real.is_file():
            return web.Response(status=404, text="no such file\n")
        try:  # a file the device cannot read: say so (FileResponse would answer a bare 403)
            os.close(os.open(target.real, os.O_RDONLY | os.O_NONBLOCK))
        except OSError as exc:
            refused = refusal(exc)
            if refused is None:
                raise
            log.warning("GET refused by the file system: %s", exc)
            return web.json_response({"error": refused.reason, "code": int(refused.return_code)},
                                     status=int(refused.return_code))
        return _FileResponse(target.real, chunk_size=READ_CHUNK,
                             headers={"Accept-Ranges": "bytes", "Cache-Control": "no-store"})
    assert grant.upload is not None
    grant.expires = now + self.token_lifetime  # an upload in use stays resumable
    up = grant.upload
    headers = {"Upload-Offset": str(up.offset), "Upload-Length": str(up.size)}
    if request.method == "HEAD":
        return web.Response(status=200, headers=headers)
    if request.method not in ("PUT", "PATCH"):
        return web.Response(status=405, headers={"Allow": "PUT, PATCH, HEAD"})
    if share.access(grant.peer) != RW:
        return web.Response(status=403, text="read-only\n")
    return await self._receive(request, grant, up, target)  # a seam for tests/conformance

async def receive(self: TransferHost, request: web.BaseRequest, grant: Grant, up: Upload,
                   target: Resolved) -> web.StreamResponse:
    try:
        offset = int(request.headers.get("Upload-Offset", "0"))
    except ValueError:
        return web.Response(status=400, text="bad Upload-Offset\n")
    if up.busy:
        return web.Response(status=409, text="the upload is in progress elsewhere\n",
                            headers={"Upload-Offset": str(up.offset)})
    if up.state == COMMITTED:
        return web.json_response({"offset": up.size, "complete": True, "sha256": up.sha256}, status=200)
    if offset != up.offset:
        return web.Response(status=409, text=f"the upload is at offset {up.offset}\n",
                            headers={"Upload-Offset": str(up.offset)})
    length = request.content_length
    if length is not None and offset + length > up.size:
        return web.Response(status=413, text="more than the declared size\n")
    up.busy = True
    writer = WriteBehind(up.write_chunks)  # written and hashed in a thread while more arrive
    try:
        await asyncio.to_thread(up.prepare)
        async for chunk, _ in request.content.iter_chunks():
            await writer.add(chunk)
        await writer.flush()
        if not up.complete:
            return web.json_response({"offset": up.offset, "complete": False},
                                     headers={"Upload-Offset": str(up.offset)})
        digest = await asyncio.get_running_loop().run_in_executor(
            io_executor(), up.finish, target.real, grant.overwrite, self._file_mode)
    except TransferError as exc:
        return web.json_response({"offset": up.offset, "error": exc.reason, "code": int(exc.return_code)},
                                 status=int(exc.return_code), headers={"Upload-Offset": str(up.offset)})
    except (ConnectionError, asyncio.CancelledError):
        _keep_received(up, writer)
        log.info("upload %s interrupted at %d of %d bytes", up.id, up.offset, up.size)
        raise
    except Exception as exc:  # the stream broke (client gone): keep what was received
        _keep_received(up, writer)
        refused = refusal(exc)
        if refused is not None:  # not an interruption: the device's disk said no
            log.warning("upload %s refused by the file system: %s", up.id, exc)
            return web.json_response({"offset": up.offset, "error": refused.reason,
                                      "code": int(refused.return_code)}, status=int(refused.return_code),
                                     headers={"Upload-Offset": str(up.offset)})
        log.info("upload %s interrupted at %d of %d bytes: %s", up.id, up.offset, up.size, exc)
        return web.Response(status=400, text="upload interrupted\n",
                            headers={"Upload-Offset": str(up.offset)})
    finally:
        up.busy = False
        if up.state != "receiving":
            self._uploads.pop(up.id, None)
        up.close()
    self._changed("put", target.virtual)
    return web.json_response({"offset": up.offset, "complete": True, "sha256": digest}, status=201,
                             headers={"Upload-Offset": str(up.offset)})


def _keep_received(up: Upload, writer: WriteBehind) -> None:
    """Write the bytes that arrived before the stream broke (in the writer's batches, not yet
    written), so the upload resumes after the last byte received, not after the last full
    batch. Synchronous: this runs on the way out of a cancelled handler (at most two batches)."""
    if up.state == "receiving":
        writer.settle()


class _FileResponse(web.FileResponse):
    """aiohttp's file response (ranges, conditional requests, sendfile on plain connections).
    Over TLS the file goes in ``READ_CHUNK`` reads, as aiohttp sends it when sendfile is off,
    instead of through asyncio's sendfile emulation: 16 KiB blocks with an executor round trip
    each, which held a TLS download to a sixth of a plain one (profiled, issue 15)."""

    async def _sendfile(self, request: web.BaseRequest, fobj: IO[Any], offset: int,
                        count: int) -> AbstractStreamWriter:
        if request.transport is None or request.transport.get_extra_info("sslcontext") is None:
            return await super()._sendfile(request, fobj, offset, count)
        writer = await web.StreamResponse.prepare(self, request)
        assert writer is not None
        return await self._sendfile_fallback(writer, fobj, offset, count)
