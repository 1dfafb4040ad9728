"""The ``igrs`` command: a thin client of the public API.

Exit status and signals: one rule for every command, in ``igrs/cli/exits.py`` (0 success;
1 the operation failed; 2 usage error; 3 conformance run incomplete; 130 Ctrl-C).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import inspect
import json
import logging
import os
import sys
from collections.abc import Callable, Coroutine
from importlib import import_module
from pathlib import Path
from typing import Any

from igrs import __version__
from igrs.cli import event_loop, exits
from igrs.cli.exits import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE, UsageError, catch_signals
from igrs.cli.options import device_id, device_name, device_type, key_value, port_number
from igrs.cli.shares import add_share_folder
from igrs.cli.state import slug, state_dir, state_option
from igrs.cli.targets import DEVICE_HELP, device_argument, located, location_cache
from igrs.constants import (
    DEFAULT_MAX_AGE,
    DESCRIBE_DEADLINE,
    IGRS_PORT,
    KEEPALIVE_INTERVAL,
    KEEPALIVE_MISSES,
    ReturnCode,
)
from igrs.errors import IGRSError

log = logging.getLogger(__name__)
Command = Callable[[argparse.Namespace], Coroutine[Any, Any, int]]


_slug, _state_dir, _state_option = slug, state_dir, state_option


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("-i", "--interface", action="append", metavar="IF",
                   help="interface name or address to use (repeatable; default: $IGRS_INTERFACES, "
                        "else every non-loopback interface)")
    p.add_argument("--port", type=port_number, default=IGRS_PORT, help=f"ISDP UDP port (default {IGRS_PORT})")
    p.add_argument("--ipv6", action="store_true", help="also use IPv6 (ff02::c) on link-local addresses")


def _via_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--via", choices=["isdp", "mdns", "both"], default="isdp",
                   help="find devices by ISDP multicast (default), mDNS/DNS-SD (_igrs._tcp; "
                        "needs igrs[dnssd]) or both")


def _peer_options(p: argparse.ArgumentParser, *, device: bool = True) -> None:
    """The options of a command that talks to found devices (and its DEVICE argument)."""
    _common(p)
    _state_option(p)
    _via_option(p)
    if device:
        device_argument(p)


def _record_json(rec: Any, now: float) -> dict[str, Any]:
    return {
        "id": str(rec.device_id), "name": rec.name, "type": str(rec.device_type),
        "address": rec.address, "location": rec.location, "age": round(rec.age(now), 1),
        "interfaces": rec.interfaces,
        # other addresses announcing this device id, not proven to be it (specs/isdp.md §11a)
        "candidates": sorted({addr for _, addr in rec.candidates}),
    }


def _table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True))]
    lines += ["  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    return "\n".join(line.rstrip() for line in lines)


# --- discover ------------------------------------------------------------------------------------
async def cmd_discover(args: argparse.Namespace) -> int:
    from igrs.core.discovery import DeviceAppeared, DeviceGone

    async with await _control_point(args, persistent=False) as cp:
        loop = asyncio.get_running_loop()
        if args.watch:
            events = cp.events()
            await cp.search(timeout=0, target=args.target, mx=args.mx)
            async for ev in events:
                rec, now = ev.device, loop.time()
                kind = {DeviceAppeared: "appeared", DeviceGone: "gone"}.get(type(ev), "updated")
                if args.json:
                    out = {"event": kind, **_record_json(rec, now)}
                    if isinstance(ev, DeviceGone):
                        out["reason"] = ev.reason
                    print(json.dumps(out), flush=True)
                else:
                    mark = {"appeared": "+", "gone": "-", "updated": "~"}[kind]
                    extra = f" ({ev.reason})" if isinstance(ev, DeviceGone) else ""
                    if rec.candidates:
                        extra += " also announced by " + ", ".join(sorted({a for _, a in rec.candidates}))
                    print(f"{mark} {rec.name!r} {rec.device_type.name} {rec.address} "
                          f"{rec.device_id.uuid}{extra}", flush=True)
            return EXIT_OK
        found = await cp.search(timeout=args.timeout, target=args.target, mx=args.mx)
        location_cache(args).remember(found)  # a following one-shot command need not search
        described = await _described(cp, found) if args.describe else {}
        now = loop.time()
        if args.json:
            print(json.dumps([{**_record_json(r, now), **described.get(r.device_id, {})} for r in found],
                             indent=2))
        elif not found:
            print("no IGRS devices found", file=sys.stderr)
        else:
            header = ["ID", "NAME", "TYPE", "ADDRESS", "AGE"]
            rows = [[str(r.device_id.uuid), r.name, r.device_type.name, r.address, f"{r.age(now):.1f}s"]
                    for r in found]
            if args.describe:
                header += ["MODEL", "SERVICES"]
                for row, rec in zip(rows, found, strict=True):
                    info = described[rec.device_id]
                    row += [info.get("model", "?"), str(len(info["services"])) if "services" in info else
                            f"error: {info['error']}"]
            print(_table(rows, header))
    return EXIT_OK


async def _described(cp: Any, records: list[Any]) -> dict[Any, dict[str, Any]]:
    """--describe: each device's description fields, or its error (never one for all)."""
    from igrs.node.listing import describe_all

    out: dict[Any, dict[str, Any]] = {}
    for item in await describe_all(cp, records):
        desc = item.description
        out[item.record.device_id] = {"error": item.error} if desc is None else {
            "manufacturer": desc.manufacturer, "model": desc.model_name,
            "services": [{"id": s.service_id, "name": s.name, "type": s.service_type} for s in desc.services]}
    return out


# --- describe ------------------------------------------------------------------------------------
async def cmd_describe(args: argparse.Namespace) -> int:
    from igrs.wire import description as ddesc

    async with await _control_point(args, persistent=False) as cp:
        record = await located(cp, args)
        desc = await cp.describe(record)
        if args.xml:
            sys.stdout.write(ddesc.to_bytes(desc).decode())
            sys.stdout.write("\n")
            return EXIT_OK
        rows = [
            ["id", str(desc.device_id)], ["name", desc.name], ["type", str(desc.device_type)],
            ["manufacturer", desc.manufacturer], ["model", desc.model_name],
            ["location", record.location],
            ["groups", ", ".join(g.name or g.group_id for g in desc.groups) or "-"],
            ["services", ", ".join(f"{s.name or s.service_type} (#{s.service_id})"
                                   for s in desc.services) or "-"],
        ]
        print(_table(rows, ["FIELD", "VALUE"]))
    return EXIT_OK


# --- device run ----------------------------------------------------------------------------------
async def cmd_device_run(args: argparse.Namespace) -> int:
    from igrs.cli.file_commands import shared_folders
    from igrs.node.device import Device
    from igrs.node.pin_text import pin_shown

    # the folders first: a mistake there is a usage error before anything is announced
    shares = shared_folders(args.share_folder or [])
    media = dict(_named_folder(spec) for spec in args.media_folder or [])

    def show_pin(pin: str) -> None:
        if args.json:
            print(json.dumps({"event": "pin", "pin": pin}), flush=True)
        else:
            print(pin_shown(args.name, pin), flush=True)

    device = Device(name=args.name, device_type=args.type, device_id=args.id,
                    interfaces=args.interface, port=args.port, http_port=args.http_port,
                    max_age=args.max_age, ipv6=args.ipv6,
                    state_dir=_state_dir(args, f"devices/{_slug(args.name)}"),
                    on_pin=None if args.no_pairing else show_pin, groups=bool(args.group),
                    send_on_alt_group=args.alt_group)
    if args.dnssd:
        from igrs.bridges.dnssd import attach_dnssd

        await attach_dnssd(device)  # announced when the device starts, gone before its byebye
    if args.sample_service:
        from igrs.apps.sample_service import Volume

        device.add_service(Volume())
    if shares:
        from igrs.profiles.file import attach_file_server

        attach_file_server(device, shares)
    stop = catch_signals()
    async with device, contextlib.AsyncExitStack() as profiles:
        screen = await _attach_av(device, media, args, profiles)
        upnp = await _attach_upnp(device, args, profiles)
        groups = [await device.groups.create_centralised(name) for name in args.group or []]
        if args.open_services:  # what this command shares: the sample service and the profiles
            for info in device.services.services:
                device.share_openly(info.service_id)
        if args.json:
            print(json.dumps({"event": "ready", "id": str(device.device_id), "location": device.location,
                              "locations": device.locations, "upnp": upnp,
                              "groups": {str(g.group_id): g.name for g in groups},
                              "open_services": [s.service_id for s in device.services.open_services],
                              **({"screen": screen} if screen else {})}), flush=True)
        else:
            print(f"{device.name} ({device.device_type}) is up as {device.device_id}", flush=True)
            for iface, url in device.locations.items():
                print(f"  {iface}: {url}", flush=True)
            for url in upnp:
                print(f"  UPnP: {url}", flush=True)
            for g in groups:
                print(f"  masters the centralised group {g.name!r}: igrs group join {g.group_id}", flush=True)
            if screen:
                print(f"  its screen (what it plays): {screen}", flush=True)
            for info in device.services.open_services:
                print(f"  shared OPENLY (no pairing, in the clear): {info.name} #{info.service_id}", flush=True)
            print("Ctrl-C to stop (a DeviceOfflineAdvertisement is sent on exit)", flush=True)
        await stop.wait()
    if args.json:
        print(json.dumps({"event": "stopped", "id": str(device.device_id)}), flush=True)
    return EXIT_OK


async def _attach_av(device: Any, media: dict[str, str], args: argparse.Namespace,
                     stack: contextlib.AsyncExitStack) -> str:
    """``--media-folder``: a MediaServer over those folders; ``--renderer [virtual|ffmpeg]``: a
    MediaRenderer (a TV with a virtual screen, or one that decodes what it plays with ffmpeg):
    its page at /screen/ as in the demo, and a line printed for what it plays. Both closed when
    the device stops. Returns the screen page's URL, or ""."""
    if media:
        from igrs.profiles.av.server import attach_media_server

        server = await attach_media_server(device, media)
        stack.push_async_callback(server.aclose)
    if not args.renderer:
        return ""
    from urllib.parse import urlsplit

    from igrs.profiles.av.media import mime_type
    from igrs.profiles.av.renderer import FfmpegOutput, ObservedOutput, Track, attach_renderer
    from igrs.profiles.av.screen import attach_screen

    def playing(state: str, track: Track | None) -> None:
        mime = (track.mime or mime_type(urlsplit(track.uri).path)) if track else ""
        if args.json:
            print(json.dumps({"event": state, "uri": track.uri if track else "",
                              "title": track.title if track else "", "mime": mime}), flush=True)
        elif track is None:
            print(f"{device.name}: {state}", flush=True)
        else:
            what = f"{track.title!r} " if track.title else ""
            print(f"{device.name}: {state} {what}({mime}) {track.uri}", flush=True)

    inner = FfmpegOutput() if args.renderer == "ffmpeg" else None
    renderer = await attach_renderer(device, backend=ObservedOutput(playing, inner),
                                     fetch_allow=args.fetch_allow or ())
    stack.push_async_callback(renderer.aclose)
    return attach_screen(device, renderer).url()


async def _attach_upnp(device: Any, args: argparse.Namespace, stack: contextlib.AsyncExitStack) -> list[str]:
    """``--upnp``: the device's media server and renderer also as UPnP AV / DLNA devices;
    returns their description URLs."""
    if not args.upnp:
        return []
    if not (args.media_folder or args.renderer):
        raise UsageError("--upnp exposes a media server or a renderer: add --media-folder or --renderer")
    from igrs.bridges.upnp import attach_upnp

    upnp = await attach_upnp(device, fetch_allow=args.fetch_allow or ())
    stack.push_async_callback(upnp.aclose)
    return upnp.locations


def _named_folder(spec: str) -> tuple[str, str]:
    name, sep, path = spec.partition("=")
    if not sep:
        path = name
        name = Path(path).name or path
    if not Path(path).is_dir():
        raise UsageError(f"--media-folder {spec}: not a directory")
    return name, path


# --- pairing -------------------------------------------------------------------------------------
async def _control_point(args: argparse.Namespace, *, persistent: bool = True, **options: Any) -> Any:
    """A control point (not started) with the command's options: ``--via mdns|both`` plugs
    DNS-SD in (igrs.bridges.dnssd), ``mdns`` alone sends no ISDP search. ``persistent``: the
    controller identity of the state folder (pairings), else a throw-away one."""
    from igrs.node.control import ControlPoint

    via = getattr(args, "via", "isdp")
    cp = ControlPoint(interfaces=args.interface, port=args.port, ipv6=args.ipv6,
                      state_dir=_state_dir(args, "controller") if persistent else None,
                      isdp_search=via != "mdns", **options)
    if via != "isdp":
        from igrs.bridges.dnssd import attach_dnssd

        await attach_dnssd(cp)
    return cp


async def cmd_pair(args: argparse.Namespace) -> int:
    from igrs.node.pin_text import pin_prompt

    async with await _control_point(args) as cp:
        record = await located(cp, args)

        async def typed(digits: int) -> str:
            if args.pin:
                return str(args.pin)
            return await exits.ask(pin_prompt(record.name or str(record.device_id), digits))

        paired = await cp.pair(record, typed)
        print(f"paired with {paired.name or paired.device_id} ({paired.device_id})")
        print(f"fingerprint {paired.fingerprint}")
    return EXIT_OK


def _paired_match(peers: list[Any], text: str) -> Any:
    matches = [p for p in peers if text in (str(p.device_id), p.name)
               or str(p.device_id.uuid).startswith(text.lower())]
    if len(matches) != 1:
        raise IGRSError(f"{'no' if not matches else 'more than one'} paired device matches {text!r}")
    return matches[0]


async def cmd_unpair(args: argparse.Namespace) -> int:
    from igrs.node.keystore import KeyStore

    store = KeyStore(_state_dir(args, "controller"))
    peer = _paired_match(store.peers(), args.device)
    store.remove(peer.device_id)
    print(f"unpaired {peer.name or peer.device_id} ({peer.device_id})")
    return EXIT_OK


async def cmd_paired(args: argparse.Namespace) -> int:
    from igrs.node.keystore import KeyStore

    store = KeyStore(_state_dir(args, args.role))
    peers = store.peers()
    if args.json:
        print(json.dumps([{"id": str(p.device_id), "name": p.name, "fingerprint": p.fingerprint,
                           "paired_at": p.paired_at} for p in peers], indent=2))
    elif not peers:
        print("no paired devices", file=sys.stderr)
    else:
        print(_table([[str(p.device_id.uuid), p.name, p.fingerprint[:19] + "…"] for p in peers],
                     ["ID", "NAME", "FINGERPRINT"]))
    return EXIT_OK


# --- services ------------------------------------------------------------------------------------
def _service_target(text: str) -> str | int:
    """A service id, a type URN, or a short type name (``Volume`` -> its :1 URN)."""
    if text.isascii() and text.isdigit():
        return int(text)
    return text if text.lower().startswith("urn:") else f"urn:IGRS:ServiceType:{text}:1"


async def cmd_services(args: argparse.Namespace) -> int:
    from igrs.node.listing import describe_all

    async with await _control_point(args) as cp:
        if args.device:
            records = [await located(cp, args)]
            if args.service:
                return await _show_service(cp, records[0], args)
        else:
            records = await cp.search(timeout=args.timeout)
        rows, out, failed = [], [], 0
        for item in await describe_all(cp, records):  # concurrently; one failure fails alone
            rec, desc = item.record, item.description
            if desc is None:
                failed += 1
                print(f"igrs: {rec.name} ({rec.address}): {item.error}", file=sys.stderr)
                continue
            for s in desc.services:
                rows.append([rec.name, str(s.service_id), s.name, s.service_type])
                out.append({"device": str(rec.device_id), "device_name": rec.name, "id": s.service_id,
                            "name": s.name, "type": s.service_type})
        if args.json:
            print(json.dumps(out, indent=2))
        elif not rows:
            print("no services found", file=sys.stderr)
        else:
            print(_table(rows, ["DEVICE", "ID", "NAME", "TYPE"]))
    return EXIT_FAILED if records and failed == len(records) else EXIT_OK


async def _show_service(cp: Any, record: Any, args: argparse.Namespace) -> int:
    """``igrs services DEVICE SERVICE``: the actions with their arguments' names and types, and
    the attributes, from the service description (GetServiceDescriptionRequest: needs a pairing)."""
    agent = await cp.agent(record)
    desc = await agent.describe_service(_service_target(args.service))
    if args.json:
        print(json.dumps({"device": str(record.device_id), "device_name": record.name, **desc.to_json()},
                         indent=2))
        return EXIT_OK
    print(f"{desc.name or desc.service_type} ({desc.service_type}, id {desc.service_id}) on {record.name}\n")
    actions = [[a.name, ", ".join(f"{p.name}: {p.type}" + ("" if p.required else " (optional)")
                                  for p in a.params) or "-", a.result or "-"] for a in desc.actions]
    print(_table(actions, ["ACTION", "ARGUMENTS", "RESULT"]) if actions else "no actions")
    attributes = [[a.name, a.type, a.mutability + (", evented" if a.notifiable else "")]
                  for a in desc.attributes]
    print()
    print(_table(attributes, ["ATTRIBUTE", "TYPE", "KIND"]) if attributes else "no attributes")
    return EXIT_OK


async def _arguments(agent: Any, svc: Any, action: str, words: list[str], *,
                     described: bool = True) -> dict[str, Any]:
    """``KEY=VALUE`` words as the action's arguments, typed by the service description (an
    unknown action or argument is refused here, naming what exists). A device that gives no
    description, and a call with ``described`` False (``igrs call --open``: a legacy peer has
    no service description to ask for, its session holds only what ezbox sends), get JSON
    where a value parses as JSON, else the text."""
    from igrs.wire.bodies.services import STANDARD_OPERATIONS
    from igrs.wire.typed_text import arguments_from_text, no_such_action

    desc = None
    if described:
        try:
            desc = await agent.describe(svc.info.service_id)
        except IGRSError as exc:
            log.info("no service description (%s): arguments as JSON or text", exc.reason)
    spec = desc.action(action) if desc is not None else None
    if spec is not None:
        try:
            return arguments_from_text(spec, words)
        except ValueError as exc:  # what this device's service takes: not a usage error (exit 1)
            raise IGRSError(str(exc), return_code=ReturnCode.BAD_MESSAGE) from None
    if desc is not None and action not in STANDARD_OPERATIONS:
        raise IGRSError(no_such_action(desc, action), return_code=ReturnCode.NOT_FOUND)
    kwargs = {}
    for word in words:  # KEY=VALUE already (options.key_value)
        key, _, text = word.partition("=")
        try:
            kwargs[key] = json.loads(text)
        except ValueError:
            kwargs[key] = text
    return kwargs


async def cmd_call(args: argparse.Namespace) -> int:
    from igrs.wire.typed_text import encode_value

    async with await _control_point(args) as cp:
        record = await located(cp, args)
        agent = await cp.agent(record, open=args.open)
        async with agent.session(_service_target(args.service)) as svc:
            arguments = await _arguments(agent, svc, args.action, args.arguments, described=not args.open)
            result = await svc.call(args.action, **arguments)
    print(json.dumps(encode_value(result)) if args.json or not isinstance(result, str) else result)
    return EXIT_OK


async def cmd_watch(args: argparse.Namespace) -> int:
    """Until Ctrl-C (exit 130) or SIGTERM (exit 0), or until the device is gone — its byebye
    at once, a silent one within KEEPALIVE_MISSES x --keepalive seconds — or ends the
    subscription (exit 1)."""
    stop = catch_signals()
    async with await _control_point(args, keepalive_interval=args.keepalive) as cp:
        record = await located(cp, args)
        async with cp.session(record, _service_target(args.service)) as svc, \
                svc.subscribe(*args.attributes) as changes:
            reader = asyncio.ensure_future(_print_changes(changes, args.json))
            stopper = asyncio.ensure_future(stop.wait())
            await asyncio.wait({reader, stopper}, return_when=asyncio.FIRST_COMPLETED)
            for task in (reader, stopper):
                task.cancel()
            if reader.done() and not reader.cancelled():
                reader.result()  # DeviceLost / SubscriptionEnded: "igrs: device ... is gone: ...", exit 1
    return EXIT_OK


async def _print_changes(changes: Any, as_json: bool) -> None:
    async for change in changes:
        if as_json:
            print(json.dumps({"attribute": change.name, "value": change.value,
                              "sequence": change.sequence}), flush=True)
        else:
            print(f"{change.name} = {change.value!r}", flush=True)


# --- demo ----------------------------------------------------------------------------------------
async def cmd_demo(args: argparse.Namespace) -> int:
    from igrs.apps.demo import run_demo
    from igrs.net import interfaces as netifaces

    netifaces.resolve(args.interface or ["lo"])  # an unknown --interface: a usage error, before the scenario
    return await run_demo(interfaces=args.interface or ["lo"], port=args.port, duration=args.duration,
                          stop=catch_signals(), upnp=args.upnp)


# --- parser --------------------------------------------------------------------------------------
# The commands defined in their own modules: (name, module, help), in the order of the help.
_MODULE_COMMANDS = (
    ("group", "group_commands", "device groups: create, join, leave, list"),
    ("file", "file_commands", "shared folders: ls, stat, get, put, rm, mv, mkdir, serve (igrs file --help)"),
    ("conformance", "conformance_commands", "check an IGRS device against specs/ (test suite)"),
    ("bridge", "bridge_commands", "bridges to other ecosystems: igrs bridge upnp"),
    ("relay", "relay_commands", "IGRS 2.0 relay: serve, register, bind, send, listen, ... (igrs relay --help)"),
)
_NAMED_ONLY = ("file", "relay")  # built only when given: they pull in the relay node, the File profile


class _Parser(argparse.ArgumentParser):
    """argparse's parser, but its help formatter gets the terminal width from here: argparse's
    own imports shutil for it (with bz2, lzma and zlib: 0.8 MB of an idle device's RSS) at the
    first add_argument. Subparsers are of the same class (add_subparsers' default)."""

    def _get_formatter(self) -> argparse.HelpFormatter:
        # every argparse formatter takes width; typeshed's protocol names prog only
        return self.formatter_class(prog=self.prog, width=_columns() - 2)  # type: ignore[call-arg]


def _columns() -> int:
    """shutil.get_terminal_size().columns: $COLUMNS, else stdout's terminal, else 80."""
    with contextlib.suppress(ValueError):
        if (columns := int(os.environ.get("COLUMNS", "0"))) > 0:
            return columns
    try:
        return os.get_terminal_size(sys.__stdout__.fileno()).columns or 80  # type: ignore[union-attr]
    except (AttributeError, ValueError, OSError):
        return 80


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The parser of the command ``only`` (the one given); the others are placeholders that show
    their help (a running device carries one command's argparse tree, not all of them).
    ``only=None``: every command, but file and relay (for ``igrs --help``)."""
    parser: argparse.ArgumentParser = _Parser(prog="igrs",
                                              description="IGRS (ISO/IEC 14543-5) home-network tool")
    parser.add_argument("--version", action="version", version=f"igrs {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="log more (-vv: debug)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    if p := _command(sub, "discover", only, help="find IGRS devices on the LAN"):
        _common(p)
        p.add_argument("-t", "--timeout", type=float, default=1.5, help="seconds to listen (default 1.5)")
        p.add_argument("--mx", type=int, default=1, help="MX: devices answer within this many seconds")
        p.add_argument("--target", help="search target: a device type (TV), type URN or device id")
        p.add_argument("--json", action="store_true", help="machine-readable output")
        p.add_argument("-w", "--watch", action="store_true",
                       help="keep watching: print devices coming and going")
        p.add_argument("-d", "--describe", action="store_true",
                       help="also fetch each device's description (all at once, each within "
                            f"{DESCRIBE_DEADLINE:g} s; a device that fails shows its error)")
        _via_option(p)
        _state_option(p)
        p.set_defaults(func=cmd_discover)

    if p := _command(sub, "describe", only, help="fetch and show a device's description document"):
        _common(p)
        device_argument(p)
        p.add_argument("--xml", action="store_true", help="print the raw description XML")
        _via_option(p)
        _state_option(p)
        p.set_defaults(func=cmd_describe)

    if p := _command(sub, "device", only, help="run a device"):
        dsub = p.add_subparsers(dest="device_command", metavar="ACTION", required=True)
        run = dsub.add_parser("run", help="announce a device until Ctrl-C, then say goodbye")
        _common(run)
        run.add_argument("--name", required=True, type=device_name, help="friendly name")
        run.add_argument("--type", default="PC", type=device_type,
                         help="device type: TV, PC, MobilePhone, STB, ... or a URN")
        run.add_argument("--id", type=device_id,
                         help="device id (urn:IGRS:Device:DeviceId:<uuid>); default: a new one")
        run.add_argument("--http-port", type=port_number, help="TCP port of the /IGRS endpoint (default 3880, "
                                                               "else a free one)")
        run.add_argument("--max-age", type=int, default=DEFAULT_MAX_AGE, help="advertisement lifetime, seconds")
        run.add_argument("--json", action="store_true", help="print machine-readable status lines")
        run.add_argument("--no-pairing", action="store_true", help="refuse PIN pairing requests")
        run.add_argument("--alt-group", action="store_true",
                         help="also announce on 239.255.255.250:3880 (besides the IANA group 224.0.0.110), "
                              "for ezbox-era peers that listen only there")
        run.add_argument("--dnssd", action="store_true",
                         help="also announce over mDNS/DNS-SD as _igrs._tcp (needs igrs[dnssd])")
        run.add_argument("--group", action="append", metavar="NAME",
                         help="master a centralised device group of that name (repeatable); paired devices "
                              "join it with igrs group join")
        run.add_argument("--sample-service", action="store_true",
                         help="share the sample Volume service (to try igrs call / igrs watch)")
        add_share_folder(run)
        run.add_argument("--media-folder", action="append", metavar="[NAME=]PATH",
                         help="share the media in a folder (AV profile: a MediaServer; repeatable)")
        run.add_argument("--renderer", nargs="?", const="virtual", choices=["virtual", "ffmpeg"],
                         help="be a TV: a MediaRenderer (AV profile) with a virtual screen — its page at "
                              "http://<device>/screen/ shows what plays, and a line is printed for each "
                              "change — or one that decodes what it plays with ffmpeg (--renderer ffmpeg)")
        run.add_argument("--upnp", action="store_true",
                         help="also appear to UPnP AV / DLNA control points (VLC, phone apps, TVs) as a "
                              "MediaServer / MediaRenderer (needs igrs[upnp])")
        run.add_argument("--fetch-allow", action="append", metavar="NET|HOST[:PORT]",
                         help="also let paired peers make this device fetch media from here (beyond "
                              "its LAN; specs/av-profile.md §12; repeatable)")
        run.add_argument("--open-services", action="store_true",
                         help="share the services this command shares (--sample-service, --share-folder, "
                              "--media-folder, --renderer) OPENLY as well: any host on the LAN may open a "
                              "session and invoke them in the clear, without pairing or a pipe -- for legacy "
                              "peers that have no pipes (ezbox). SECURITY COST: no authentication (a caller's "
                              "device id is only claimed), no confidentiality, no integrity; shared folders "
                              "become readable (never writable) by anyone; the renderer controllable by "
                              "anyone. Default: paired devices only, in a secure pipe (specs/security.md §12)")
        _state_option(run)
        event_loop.add_loop_option(run)
        run.set_defaults(func=cmd_device_run)

    if p := _command(sub, "pair", only, help="pair with a device by the PIN it shows"):
        _peer_options(p)
        p.add_argument("--pin", help="the PIN (default: asked for)")
        p.set_defaults(func=cmd_pair)

    if p := _command(sub, "unpair", only, help="forget a paired device"):
        _state_option(p)
        p.add_argument("device", help="device id, its UUID prefix, or its name")
        p.set_defaults(func=cmd_unpair)

    if p := _command(sub, "paired", only, help="list paired devices"):
        _state_option(p)
        p.add_argument("--role", default="controller",
                       help="whose pairings: controller (default) or devices/<name>")
        p.add_argument("--json", action="store_true", help="machine-readable output")
        p.set_defaults(func=cmd_paired)

    if p := _command(sub, "services", only,
                     help="list the services devices share (descriptions fetched at once, "
                          f"each within {DESCRIBE_DEADLINE:g} s; a device that fails is "
                          "reported on stderr; exit 1 only if every device failed)"):
        _peer_options(p, device=False)
        p.add_argument("device", nargs="?", help=f"one device (default: every device found): {DEVICE_HELP}")
        p.add_argument("service", nargs="?",
                       help="one service of DEVICE (id, type URN or type name, e.g. Volume): list its actions "
                            "with their arguments' names and types, and its attributes (needs a pairing)")
        p.add_argument("-t", "--timeout", type=float, default=1.5,
                       help="seconds to search (default 1.5); with DEVICE at most that, ending when it answers")
        p.add_argument("--json", action="store_true", help="machine-readable output")
        p.set_defaults(func=cmd_services)

    if p := _command(sub, "call", only, help="invoke a service action (needs a pairing, or --open)"):
        _peer_options(p)
        p.add_argument("--open", action="store_true",
                       help="a service the device shares openly: no pairing, no pipe, in the clear "
                            "(legacy peers); the invocation goes out in RPC style (no ActionName), and its "
                            "arguments are JSON values or text (no service description is asked for)")
        p.add_argument("service", help="service id, type URN, or type name (Volume)")
        p.add_argument("action", help="action name (igrs services DEVICE SERVICE lists them)")
        p.add_argument("arguments", nargs="*", metavar="KEY=VALUE", type=key_value,
                       help="arguments, read as the types the service declares: ObjectID=0 is the string 0 "
                            "for a string, Level=30 a number for an int, Mute=true a bool, bytes in base64, "
                            "lists and dicts as JSON")
        p.add_argument("--json", action="store_true", help="print the result as JSON")
        p.set_defaults(func=cmd_call)

    if p := _command(sub, "watch", only, help="print a service's attribute changes (needs a pairing)"):
        _peer_options(p)
        p.add_argument("service", help="service id, type URN, or type name")
        p.add_argument("attributes", nargs="*", help="attributes (default: every notifiable one)")
        p.add_argument("--json", action="store_true", help="one JSON line per change")
        p.add_argument("--keepalive", type=float, default=KEEPALIVE_INTERVAL, metavar="SECONDS",
                       help=f"seconds between keep-alive probes of the pipe (default {KEEPALIVE_INTERVAL:g}); "
                            f"a device that stops answering {KEEPALIVE_MISSES} in a row is reported gone "
                            "(exit 1), as one that says goodbye is at once")
        p.set_defaults(func=cmd_watch)

    if p := _command(sub, "demo", only,
                     help="the TV/PC sharing demo: a PC, a TV and a phone on loopback, narrated"):
        _common(p)
        port = next(a for a in p._actions if a.dest == "port")
        port.default, port.help = None, "ISDP UDP port (default: a free random one, so demos never meet)"
        p.add_argument("--duration", type=float, default=None,
                       help="stay up this many seconds after the scenario (default: until Ctrl-C)")
        p.add_argument("--upnp", action="store_true",
                       help="also show the PC and the TV to UPnP AV / DLNA control points (needs igrs[upnp])")
        p.set_defaults(func=cmd_demo)

    for name, module, text in _MODULE_COMMANDS:
        if only == name or (only is None and name not in _NAMED_ONLY):
            import_module(f"igrs.cli.{module}").add_subcommands(sub)
        else:
            _placeholder(sub, name, text)
    return parser


def _command(sub: argparse._SubParsersAction[argparse.ArgumentParser], name: str, only: str | None,
             help: str) -> argparse.ArgumentParser | None:
    """The parser of the command ``name`` to fill in when it is to be built, else None (and a
    placeholder in its place)."""
    if only is None or only == name:
        return sub.add_parser(name, help=help)
    _placeholder(sub, name, help)
    return None


def _placeholder(sub: argparse._SubParsersAction[argparse.ArgumentParser], name: str, text: str) -> None:
    """A command whose parser is built only when it is the command given (main rebuilds)."""
    p = sub.add_parser(name, help=text, add_help=False)
    p.add_argument("rest", nargs=argparse.REMAINDER)
    p.set_defaults(func=lambda _args: main([name, "--help"]))


def _usage_hint(exc: IGRSError) -> str | None:
    """For the library errors that mean the command line cannot work as given (exit 2): what
    to add to the message ('' if nothing); None for a failure (exit 1)."""
    from igrs.net.interfaces import InterfaceError
    from igrs.node.keystore import StateDirInUse

    if isinstance(exc, StateDirInUse):  # a second device with the same identity
        return "; pass --state-dir or another --name"
    if isinstance(exc, InterfaceError):  # --interface names nothing usable here
        return ""
    return None


def main(argv: list[str] | None = None) -> int:
    words = sys.argv[1:] if argv is None else argv
    command = next((w for w in words if not w.startswith("-")), "")
    parser = build_parser(command or None)
    try:
        args = parser.parse_args(argv)
        if not getattr(args, "func", None):
            parser.print_help()
            return EXIT_USAGE
    except BrokenPipeError:  # igrs --help | head
        exits.quiet_stdout()
        return EXIT_OK
    level = [logging.WARNING, logging.INFO, logging.DEBUG][min(args.verbose, 2)]
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    exits.reset()
    try:
        result = args.func(args)
        # Most commands are coroutines; some (igrs relay ...) run their own loop.
        if inspect.iscoroutine(result):
            # --loop on the long-running commands; the others on asyncio's own loop
            status = event_loop.run(result, getattr(args, "loop", "asyncio"))
        else:
            status = int(result)
    except KeyboardInterrupt:
        exits.mark_interrupted()
        status = EXIT_INTERRUPTED
    except UsageError as exc:
        print(f"igrs: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except IGRSError as exc:
        usage = _usage_hint(exc)
        print(f"igrs: {exc.reason}{usage or ''}", file=sys.stderr)
        status = EXIT_FAILED if usage is None else EXIT_USAGE
    except BrokenPipeError:  # the reader went away (| head): nothing more to say
        exits.quiet_stdout()
        return EXIT_OK
    except OSError as exc:
        print(f"igrs: {exc}", file=sys.stderr)
        status = EXIT_FAILED
    try:
        sys.stdout.flush()  # here, not at exit: a reader gone by now is not worth a complaint
    except BrokenPipeError:
        exits.quiet_stdout()
    if exits.interrupted() or status == EXIT_INTERRUPTED:
        hint = getattr(args, "on_interrupt", "")
        print(f"igrs: interrupted{'; ' + hint if hint else ''}", file=sys.stderr)
        return EXIT_INTERRUPTED
    return status


if __name__ == "__main__":
    sys.exit(main())
