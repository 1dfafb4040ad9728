"""``igrs file ls|stat|get|put|rm|mv|mkdir|serve``: the File profile from the command line.

``add_subcommands(subparsers)`` registers ``file`` on ``igrs/cli/main.py``'s parser (handlers are
``async`` functions of ``args``, run by ``cli.main``). The client commands use the
controller's keystore (``igrs pair`` first, same ``--state-dir``). Transfers show a progress
bar (rich, when installed and stderr is a terminal) and resume where an interrupted run
stopped: run the same command again. ``igrs file serve`` runs a device sharing folders
(the same thing ``igrs device run --share-folder`` does).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import posixpath
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

from igrs.cli.exits import EXIT_OK, catch_signals
from igrs.cli.options import device_name, device_type, port_number
from igrs.cli.shares import add_share_folder
from igrs.cli.state import state_dir
from igrs.cli.targets import device_argument
from igrs.constants import IGRS_PORT
from igrs.errors import IGRSError

RESUME_HINT = "run the same command again to resume"


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("-i", "--interface", action="append", metavar="IF",
                   help="interface name or address (repeatable; default: $IGRS_INTERFACES, else the LAN)")
    p.add_argument("--port", type=port_number, default=IGRS_PORT, help=f"ISDP UDP port (default {IGRS_PORT})")
    p.add_argument("--state-dir", help="identity keys and pairings (default: as igrs pair)")
    p.add_argument("--json", action="store_true", help="machine-readable output")


def add_subcommands(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    top = subparsers.add_parser("file", help="shared folders: ls, stat, get, put, rm, mv, mkdir, serve")
    sub = top.add_subparsers(dest="file_command", metavar="ACTION", required=True)

    p = sub.add_parser("ls", help="list a directory (/ lists the shares)")
    _common(p)
    device_argument(p)
    p.add_argument("path", nargs="?", default="/", help="remote path, /<share>/... (default /)")
    p.set_defaults(func=cmd_ls)

    p = sub.add_parser("stat", help="show a file's or directory's details")
    _common(p)
    device_argument(p)
    p.add_argument("path", help="remote path, /<share>/...")
    p.add_argument("--checksum", action="store_true", help="also the SHA-256 of a file")
    p.set_defaults(func=cmd_stat)

    p = sub.add_parser("get", help="download a file (resumes an interrupted download)")
    _common(p)
    device_argument(p)
    p.add_argument("path", help="remote file")
    p.add_argument("local", nargs="?", help="local file or directory (default: ./<name>)")
    p.add_argument("--restart", action="store_true", help="ignore a partial download and start over")
    p.add_argument("--no-verify", action="store_true", help="skip the SHA-256 check")
    p.add_argument("--limit-rate", type=float, metavar="BYTES_PER_S", help="throttle the transfer")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_get, on_interrupt=RESUME_HINT)

    p = sub.add_parser("put", help="upload a file (resumes an interrupted upload)")
    _common(p)
    device_argument(p)
    p.add_argument("local", help="local file")
    p.add_argument("path", help="remote file, or a directory ending in / (the local name is kept)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing remote file")
    p.add_argument("--limit-rate", type=float, metavar="BYTES_PER_S", help="throttle the transfer")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_put, on_interrupt=RESUME_HINT)

    p = sub.add_parser("rm", help="delete a file or directory")
    _common(p)
    device_argument(p)
    p.add_argument("path", help="remote file or directory")
    p.add_argument("-r", "--recursive", action="store_true", help="delete a directory and its content")
    p.set_defaults(func=cmd_rm)

    p = sub.add_parser("mv", help="rename or move")
    _common(p)
    device_argument(p)
    p.add_argument("path", help="source")
    p.add_argument("target", help="target")
    p.add_argument("--overwrite", action="store_true", help="replace an existing target file")
    p.set_defaults(func=cmd_mv)

    p = sub.add_parser("mkdir", help="make a directory")
    _common(p)
    device_argument(p)
    p.add_argument("path", help="remote directory to make")
    p.add_argument("-p", "--parents", action="store_true", help="make missing parents too")
    p.set_defaults(func=cmd_mkdir)

    p = sub.add_parser("serve", help="run a device sharing folders until Ctrl-C")
    p.add_argument("-i", "--interface", action="append", metavar="IF", help="interface (repeatable)")
    p.add_argument("--port", type=port_number, default=IGRS_PORT, help=f"ISDP UDP port (default {IGRS_PORT})")
    p.add_argument("--state-dir", help="this device's keys and pairings")
    p.add_argument("--name", default="File server", type=device_name, help="friendly name")
    p.add_argument("--type", default="PC", type=device_type, help="device type")
    p.add_argument("--http-port", type=port_number, help="TCP port of /IGRS and /files/")
    add_share_folder(p, required=True)
    p.add_argument("--json", action="store_true", help="machine-readable status lines")
    p.set_defaults(func=cmd_serve)


# --- plumbing ------------------------------------------------------------------------------------
def shared_folders(specs: list[str]) -> list[Any]:
    """``--share-folder`` values as SharedFolders, each checked now (exists, readable, writable
    when ``:rw``): a mistake is a usage error naming the option, not a traceback or a device
    that starts and then fails its clients."""
    from igrs.cli.exits import UsageError
    from igrs.profiles.file.server import parse_share_spec

    folders = []
    for spec in specs:
        try:
            folders.append(parse_share_spec(spec))
        except (ValueError, IGRSError) as exc:
            raise UsageError(f"--share-folder {spec}: {getattr(exc, 'reason', exc)}") from None
    return folders


@contextlib.asynccontextmanager
async def _files(args: argparse.Namespace) -> AsyncIterator[Any]:
    from igrs.cli.targets import located
    from igrs.node.control import ControlPoint
    from igrs.profiles.file.client import FileClient

    async with ControlPoint(interfaces=args.interface, port=args.port,
                            state_dir=state_dir(args, "controller")) as cp:
        record = await located(cp, args)
        async with FileClient.connect(cp, record) as files:
            yield files


@contextlib.contextmanager
def _progress(args: argparse.Namespace, label: str) -> Iterator[Callable[[int, int], None] | None]:
    if args.no_progress or args.json or not sys.stderr.isatty():
        yield None
        return
    try:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
            TransferSpeedColumn,
        )
    except ImportError:  # no rich: a plain percentage line
        def plain(done: int, total: int) -> None:
            print(f"\r{label}: {100 * done // max(total, 1)}%", end="", file=sys.stderr, flush=True)

        yield plain
        print(file=sys.stderr)
        return
    with Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                  TimeRemainingColumn(), console=Console(stderr=True)) as bar:
        task = bar.add_task(label, total=None)

        def update(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        yield update


def _interrupted(what: str, exc: BaseException) -> IGRSError:
    return IGRSError(f"{what} interrupted ({exc or type(exc).__name__}); {RESUME_HINT}")


def _carried(transport: str) -> str:
    return "inside TLS 1.3" if transport == "tls" else "plain HTTP: the device does not speak TLS"


def _say(args: argparse.Namespace, data: dict[str, Any], text: str) -> None:
    print(json.dumps(data) if args.json else text, flush=True)


# --- commands ------------------------------------------------------------------------------------
async def cmd_ls(args: argparse.Namespace) -> int:
    async with _files(args) as files:
        entries = await files.ls(args.path)
    if args.json:
        print(json.dumps([{"name": e.name, "type": e.type, "size": e.size, "mtime": e.mtime, "access": e.access}
                          for e in entries], indent=2))
        return EXIT_OK
    for e in entries:
        kind = {"dir": "d", "share": "s", "file": "-"}.get(e.type, "?")
        extra = f"  ({e.access})" if e.access else ""
        print(f"{kind} {e.size:>14,}  {e.name}{'/' if e.type in ('dir', 'share') else ''}{extra}")
    return EXIT_OK


async def cmd_stat(args: argparse.Namespace) -> int:
    async with _files(args) as files:
        info = await files.stat(args.path, checksum=args.checksum)
    print(json.dumps(info, indent=2) if args.json else "\n".join(f"{k}: {v}" for k, v in info.items()))
    return EXIT_OK


async def cmd_get(args: argparse.Namespace) -> int:
    import aiohttp

    name = posixpath.basename(args.path.rstrip("/")) or "download"
    local = Path(args.local) if args.local else Path(name)
    if local.is_dir():
        local = local / name
    async with _files(args) as files:
        with _progress(args, name) as progress:
            try:
                dest = await files.get(args.path, local, resume=not args.restart, verify=not args.no_verify,
                                       progress=progress, rate_limit=args.limit_rate)
            except (TimeoutError, aiohttp.ClientError) as exc:
                raise _interrupted("download", exc) from None
    _say(args, {"event": "done", "path": str(dest), "transport": files.transport},
         f"saved {dest} ({_carried(files.transport)})")
    return EXIT_OK


async def cmd_put(args: argparse.Namespace) -> int:
    import aiohttp

    local = Path(args.local)
    remote = args.path + local.name if args.path.endswith("/") else args.path

    def resumed(offset: int) -> None:
        _say(args, {"event": "resume", "offset": offset}, f"resuming at byte {offset:,}")

    async with _files(args) as files:
        with _progress(args, local.name) as progress:
            try:
                digest = await files.put(local, remote, overwrite=args.overwrite, progress=progress,
                                         rate_limit=args.limit_rate, on_resume=resumed)
            except (TimeoutError, aiohttp.ClientError) as exc:
                raise _interrupted("upload", exc) from None
    _say(args, {"event": "done", "path": remote, "sha256": digest, "transport": files.transport},
         f"stored {remote} (sha256 {digest}; {_carried(files.transport)})")
    return EXIT_OK


async def cmd_rm(args: argparse.Namespace) -> int:
    async with _files(args) as files:
        await files.rm(args.path, recursive=args.recursive)
    return EXIT_OK


async def cmd_mv(args: argparse.Namespace) -> int:
    async with _files(args) as files:
        await files.mv(args.path, args.target, overwrite=args.overwrite)
    return EXIT_OK


async def cmd_mkdir(args: argparse.Namespace) -> int:
    async with _files(args) as files:
        await files.mkdir(args.path, parents=args.parents)
    return EXIT_OK


async def cmd_serve(args: argparse.Namespace) -> int:
    from igrs.node.device import Device
    from igrs.profiles.file.server import attach_file_server

    slug = "".join(c if c.isalnum() else "-" for c in args.name.lower()).strip("-") or "device"

    from igrs.node.pin_text import pin_shown

    def show_pin(pin: str) -> None:
        _say(args, {"event": "pin", "pin": pin}, pin_shown(args.name, pin))

    device = Device(name=args.name, device_type=args.type, interfaces=args.interface, port=args.port,
                    http_port=args.http_port, state_dir=state_dir(args, f"devices/{slug}"), on_pin=show_pin)
    server = attach_file_server(device, shared_folders(args.share_folder))
    stop = catch_signals()
    async with device:
        shares = {n: {"path": str(s.root), "writable": s.writable} for n, s in server.shares.items()}
        ready = {"event": "ready", "id": str(device.device_id), "location": device.location, "shares": shares}
        _say(args, ready,
             f"{device.name} shares {', '.join(shares)} as {device.device_id} at {device.location}")
        await stop.wait()
    return EXIT_OK

