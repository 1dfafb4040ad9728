"""The ``igrs`` command: a thin client of the public API.

Exit status: 0 success; 1 the operation failed (device not found, network error, ...);
2 usage error; 130 interrupted.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import inspect
import json
import logging
import signal
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from igrs import __version__
from igrs.constants import DEFAULT_MAX_AGE, DESCRIBE_DEADLINE, IGRS_PORT, KEEPALIVE_INTERVAL, KEEPALIVE_MISSES
from igrs.errors import IGRSError

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
SHARE_FOLDER_METAVAR = "[NAME=]PATH[:rw][:quota=SIZE]"
SHARE_FOLDER_HELP = ("read-only unless :rw; quota=SIZE caps what the share may hold (files and unfinished "
                     "uploads; more is refused with 507), SIZE in bytes or with K, M, G or T (powers of "
                     "1024), e.g. inbox=/srv/inbox:rw:quota=20G")
Command = Callable[[argparse.Namespace], Coroutine[Any, Any, int]]


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in name.lower()).strip("-") or "device"


def _state_dir(args: argparse.Namespace, role: str) -> str:
    """--state-dir, else <$IGRS_STATE_DIR or ~/.local/state/igrs>/<role>."""
    from igrs.node.keystore import default_state_dir

    return args.state_dir or str(default_state_dir() / role)


def _state_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--state-dir", help="where identity keys and pairings live (default: "
                                       "$IGRS_STATE_DIR or ~/.local/state/igrs, one folder per role)")


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("-i", "--interface", action="append", metavar="IF",
                   help="interface name or address to use (repeatable; default: $IGRS_INTERFACES, "
                        "else every non-loopback interface)")
    p.add_argument("--port", type=int, default=IGRS_PORT, help=f"ISDP UDP port (default {IGRS_PORT})")
    p.add_argument("--ipv6", action="store_true", help="also use IPv6 (ff02::c) on link-local addresses")


def _via_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--via", choices=["isdp", "mdns", "both"], default="isdp",
                   help="find devices by ISDP multicast (default), mDNS/DNS-SD (_igrs._tcp; "
                        "needs igrs[dnssd]) or both")


def _record_json(rec: Any, now: float) -> dict[str, Any]:
    return {
        "id": str(rec.device_id), "name": rec.name, "type": str(rec.device_type),
        "address": rec.address, "location": rec.location, "age": round(rec.age(now), 1),
        "interfaces": rec.interfaces,
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
                    print(f"{mark} {rec.name!r} {rec.device_type.name} {rec.address} "
                          f"{rec.device_id.uuid}{extra}", flush=True)
            return EXIT_OK
        found = await cp.search(timeout=args.timeout, target=args.target, mx=args.mx)
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


def _is_address(device: str) -> bool:
    """``host:port`` or an ``http://`` URL of an /IGRS endpoint (rather than an id or a name)."""
    if device.startswith("http://"):
        return True
    host, sep, port = device.rpartition(":")
    return bool(sep and host and port.isdigit() and not device.lower().startswith("urn:"))


async def _located(cp: Any, device: str, timeout: float) -> Any:
    """Search, then find ``device``; on a busy network or device, one more search. A device
    given by address (``host:port``, ``http://...``) is asked for its description there instead:
    a legacy peer may speak no discovery at all."""
    from igrs.errors import DeviceNotFound

    if _is_address(device):
        return await cp.connect(device)
    await cp.search(timeout=timeout)
    try:
        return cp.find(device)
    except DeviceNotFound:
        await cp.search(timeout=timeout)
        return cp.find(device)


# --- describe ------------------------------------------------------------------------------------
async def cmd_describe(args: argparse.Namespace) -> int:
    from igrs.wire import description as ddesc

    async with await _control_point(args, persistent=False) as cp:
        desc = await cp.describe(await _located(cp, args.device, args.timeout))
        if args.xml:
            sys.stdout.write(ddesc.to_bytes(desc).decode())
            sys.stdout.write("\n")
            return EXIT_OK
        rows = [
            ["id", str(desc.device_id)], ["name", desc.name], ["type", str(desc.device_type)],
            ["manufacturer", desc.manufacturer], ["model", desc.model_name],
            ["location", cp.find(desc.device_id).location],
            ["groups", ", ".join(g.name or g.group_id for g in desc.groups) or "-"],
            ["services", ", ".join(f"{s.name or s.service_type} (#{s.service_id})"
                                   for s in desc.services) or "-"],
        ]
        print(_table(rows, ["FIELD", "VALUE"]))
    return EXIT_OK


# --- device run ----------------------------------------------------------------------------------
def _catch_signals() -> asyncio.Event:
    """An event set by SIGINT/SIGTERM (installed before anything announces readiness)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    return stop


async def cmd_device_run(args: argparse.Namespace) -> int:
    from igrs.node.device import Device

    def show_pin(pin: str) -> None:
        if args.json:
            print(json.dumps({"event": "pin", "pin": pin}), flush=True)
        else:
            print(f"Pairing requested: type this PIN on the other device: {pin}", flush=True)

    device = Device(name=args.name, device_type=args.type, device_id=args.id,
                    interfaces=args.interface, port=args.port, http_port=args.http_port,
                    max_age=args.max_age, ipv6=args.ipv6,
                    state_dir=_state_dir(args, f"devices/{_slug(args.name)}"),
                    on_pin=None if args.no_pairing else show_pin, send_on_alt_group=args.alt_group)
    if args.dnssd:
        from igrs.bridges.dnssd import attach_dnssd

        await attach_dnssd(device)  # announced when the device starts, gone before its byebye
    if args.sample_service:
        from igrs.apps.sample_service import Volume

        device.add_service(Volume())
    if args.share_folder:
        from igrs.profiles.file import attach_file_server

        attach_file_server(device, args.share_folder)
    stop = _catch_signals()
    async with device, contextlib.AsyncExitStack() as profiles:
        await _attach_av(device, args, profiles)
        if args.open_services:  # what this command shares: the sample service and the profiles
            for info in device.services.services:
                device.share_openly(info.service_id)
        if args.json:
            print(json.dumps({"event": "ready", "id": str(device.device_id), "location": device.location,
                              "locations": device.locations,
                              "open_services": [s.service_id for s in device.services.open_services]}),
                  flush=True)
        else:
            print(f"{device.name} ({device.device_type}) is up as {device.device_id}", flush=True)
            for iface, url in device.locations.items():
                print(f"  {iface}: {url}", flush=True)
            for info in device.services.open_services:
                print(f"  shared OPENLY (no pairing, in the clear): {info.name} #{info.service_id}", flush=True)
            print("Ctrl-C to stop (a DeviceOfflineAdvertisement is sent on exit)", flush=True)
        await stop.wait()
    if args.json:
        print(json.dumps({"event": "stopped", "id": str(device.device_id)}), flush=True)
    return EXIT_OK


async def _attach_av(device: Any, args: argparse.Namespace, stack: contextlib.AsyncExitStack) -> None:
    """``--media-folder``: a MediaServer over those folders; ``--renderer``: a MediaRenderer
    (a TV with a virtual screen). Both closed when the device stops."""
    if args.media_folder:
        from igrs.profiles.av.server import attach_media_server

        folders = dict(_named_folder(spec) for spec in args.media_folder)
        server = await attach_media_server(device, folders)
        stack.push_async_callback(server.aclose)
    if args.renderer:
        from igrs.profiles.av.renderer import attach_renderer

        renderer = await attach_renderer(device)
        stack.push_async_callback(renderer.aclose)


def _named_folder(spec: str) -> tuple[str, str]:
    name, sep, path = spec.partition("=")
    if not sep:
        path = name
        name = Path(path).name or path
    if not Path(path).is_dir():
        raise SystemExit(f"igrs: --media-folder {spec}: not a directory")
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
    async with await _control_point(args) as cp:
        record = await _located(cp, args.device, args.timeout)

        async def ask(digits: int) -> str:
            if args.pin:
                return str(args.pin)
            print(f"{record.name} shows a {digits}-digit PIN.\nPIN: ", end="", file=sys.stderr,
                  flush=True)  # the prompt on stderr: stdout stays the result
            return (await asyncio.to_thread(sys.stdin.readline)).strip()

        paired = await cp.pair(record, ask)
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


def _value(text: str) -> Any:
    """key=value arguments: JSON where it parses (5, true, [1,2], "x"), else the text."""
    try:
        return json.loads(text)
    except ValueError:
        return text


async def cmd_services(args: argparse.Namespace) -> int:
    from igrs.node.listing import describe_all

    async with await _control_point(args) as cp:
        if args.device:
            records = [await _located(cp, args.device, args.timeout)]
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


async def cmd_call(args: argparse.Namespace) -> int:
    kwargs = {}
    for item in args.arguments:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise IGRSError(f"argument {item!r} is not key=value")
        kwargs[key] = _value(value)
    async with await _control_point(args) as cp:
        record = await _located(cp, args.device, args.timeout)
        async with cp.session(record, _service_target(args.service), open=args.open) as svc:
            result = await getattr(svc, args.action)(**kwargs)
    print(json.dumps(result) if args.json or not isinstance(result, str) else result)
    return EXIT_OK


async def cmd_watch(args: argparse.Namespace) -> int:
    """Until Ctrl-C (exit 0), or until the device is gone — its byebye at once, a silent one
    within KEEPALIVE_MISSES x --keepalive seconds — or ends the subscription (exit 1)."""
    stop = _catch_signals()
    async with await _control_point(args, keepalive_interval=args.keepalive) as cp:
        record = await _located(cp, args.device, args.timeout)
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

    return await run_demo(interfaces=args.interface or ["lo"], port=args.port, duration=args.duration)


# --- parser --------------------------------------------------------------------------------------
def build_parser(*, relay: bool = False, file: bool = False) -> argparse.ArgumentParser:
    """The full parser. The relay and file commands are only loaded when ``relay`` / ``file``
    (they pull in the relay node and aiohttp's web server; an idle device should carry neither)."""
    parser = argparse.ArgumentParser(prog="igrs", description="IGRS (ISO/IEC 14543-5) home-network tool")
    parser.add_argument("--version", action="version", version=f"igrs {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="log more (-vv: debug)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("discover", help="find IGRS devices on the LAN")
    _common(p)
    p.add_argument("-t", "--timeout", type=float, default=1.5, help="seconds to listen (default 1.5)")
    p.add_argument("--mx", type=int, default=1, help="MX: devices answer within this many seconds")
    p.add_argument("--target", help="search target: a device type (TV), type URN or device id")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("-w", "--watch", action="store_true", help="keep watching: print devices coming and going")
    p.add_argument("-d", "--describe", action="store_true",
                   help="also fetch each device's description (all at once, each within "
                        f"{DESCRIBE_DEADLINE:g} s; a device that fails shows its error)")
    _via_option(p)
    p.set_defaults(func=cmd_discover)

    p = sub.add_parser("describe", help="fetch and show a device's description document")
    _common(p)
    p.add_argument("device", help="device id, its UUID prefix, its exact name, or host:port of its /IGRS "
                                  "endpoint (a peer that speaks no discovery)")
    p.add_argument("-t", "--timeout", type=float, default=1.5, help="seconds to search first")
    p.add_argument("--xml", action="store_true", help="print the raw description XML")
    _via_option(p)
    p.set_defaults(func=cmd_describe)

    p = sub.add_parser("device", help="run a device")
    dsub = p.add_subparsers(dest="device_command", metavar="ACTION", required=True)
    run = dsub.add_parser("run", help="announce a device until Ctrl-C, then say goodbye")
    _common(run)
    run.add_argument("--name", required=True, help="friendly name")
    run.add_argument("--type", default="PC", help="device type: TV, PC, MobilePhone, STB, ... or a URN")
    run.add_argument("--id", help="device id (urn:IGRS:Device:DeviceId:<uuid>); default: a new one")
    run.add_argument("--http-port", type=int, help="TCP port of the /IGRS endpoint (default 3880, "
                                                   "else a free one)")
    run.add_argument("--max-age", type=int, default=DEFAULT_MAX_AGE, help="advertisement lifetime, seconds")
    run.add_argument("--json", action="store_true", help="print machine-readable status lines")
    run.add_argument("--no-pairing", action="store_true", help="refuse PIN pairing requests")
    run.add_argument("--alt-group", action="store_true",
                     help="also announce on 239.255.255.250:3880 (besides the IANA group 224.0.0.110), "
                          "for ezbox-era peers that listen only there")
    run.add_argument("--dnssd", action="store_true",
                     help="also announce over mDNS/DNS-SD as _igrs._tcp (needs igrs[dnssd])")
    run.add_argument("--sample-service", action="store_true",
                     help="share the sample Volume service (to try igrs call / igrs watch)")
    run.add_argument("--share-folder", action="append", metavar=SHARE_FOLDER_METAVAR,
                     help=f"share a folder with paired devices (File profile; repeatable): {SHARE_FOLDER_HELP}")
    run.add_argument("--media-folder", action="append", metavar="[NAME=]PATH",
                     help="share the media in a folder (AV profile: a MediaServer; repeatable)")
    run.add_argument("--renderer", action="store_true",
                     help="be a TV: a MediaRenderer with a virtual screen (AV profile)")
    run.add_argument("--open-services", action="store_true",
                     help="share the services this command shares (--sample-service, --share-folder, "
                          "--media-folder, --renderer) OPENLY as well: any host on the LAN may open a "
                          "session and invoke them in the clear, without pairing or a pipe -- for legacy "
                          "peers that have no pipes (ezbox). SECURITY COST: no authentication (a caller's "
                          "device id is only claimed), no confidentiality, no integrity; shared folders "
                          "become readable (never writable) by anyone; the renderer controllable by "
                          "anyone. Default: paired devices only, in a secure pipe (specs/security.md §11)")
    _state_option(run)
    run.set_defaults(func=cmd_device_run)

    p = sub.add_parser("pair", help="pair with a device by the PIN it shows")
    _common(p)
    _state_option(p)
    _via_option(p)
    p.add_argument("device", help="device id, its UUID prefix, or its exact name")
    p.add_argument("--pin", help="the PIN (default: asked for)")
    p.add_argument("-t", "--timeout", type=float, default=1.5, help="seconds to search first")
    p.set_defaults(func=cmd_pair)

    p = sub.add_parser("unpair", help="forget a paired device")
    _state_option(p)
    p.add_argument("device", help="device id, its UUID prefix, or its name")
    p.set_defaults(func=cmd_unpair)

    p = sub.add_parser("paired", help="list paired devices")
    _state_option(p)
    p.add_argument("--role", default="controller",
                   help="whose pairings: controller (default) or devices/<name>")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_paired)

    p = sub.add_parser("services", help="list the services devices share (descriptions fetched at once, "
                                        f"each within {DESCRIBE_DEADLINE:g} s; a device that fails is "
                                        "reported on stderr; exit 1 only if every device failed)")
    _common(p)
    _state_option(p)
    _via_option(p)
    p.add_argument("device", nargs="?", help="one device (default: every device found)")
    p.add_argument("-t", "--timeout", type=float, default=1.5, help="seconds to search first")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_services)

    p = sub.add_parser("call", help="invoke a service action (needs a pairing, or --open)")
    _common(p)
    _state_option(p)
    _via_option(p)
    p.add_argument("device", help="device id, its UUID prefix, its exact name, or host:port of its /IGRS "
                                  "endpoint (a peer that speaks no discovery)")
    p.add_argument("--open", action="store_true",
                   help="a service the device shares openly: no pairing, no pipe, in the clear "
                        "(legacy peers); the invocation goes out in RPC style (no ActionName)")
    p.add_argument("service", help="service id, type URN, or type name (Volume)")
    p.add_argument("action", help="action name")
    p.add_argument("arguments", nargs="*", metavar="KEY=VALUE", help="arguments (JSON values)")
    p.add_argument("-t", "--timeout", type=float, default=1.5, help="seconds to search first")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=cmd_call)

    p = sub.add_parser("watch", help="print a service's attribute changes (needs a pairing)")
    _common(p)
    _state_option(p)
    _via_option(p)
    p.add_argument("device", help="device id, its UUID prefix, or its exact name")
    p.add_argument("service", help="service id, type URN, or type name")
    p.add_argument("attributes", nargs="*", help="attributes (default: every notifiable one)")
    p.add_argument("-t", "--timeout", type=float, default=1.5, help="seconds to search first")
    p.add_argument("--json", action="store_true", help="one JSON line per change")
    p.add_argument("--keepalive", type=float, default=KEEPALIVE_INTERVAL, metavar="SECONDS",
                   help=f"seconds between keep-alive probes of the pipe (default {KEEPALIVE_INTERVAL:g}); "
                        f"a device that stops answering {KEEPALIVE_MISSES} in a row is reported gone "
                        "(exit 1), as one that says goodbye is at once")
    p.set_defaults(func=cmd_watch)

    p = sub.add_parser("demo", help="the TV/PC sharing demo: a PC, a TV and a phone on loopback, narrated")
    _common(p)
    port = next(a for a in p._actions if a.dest == "port")
    port.default, port.help = None, "ISDP UDP port (default: a free random one, so demos never meet)"
    p.add_argument("--duration", type=float, default=None,
                   help="stay up this many seconds after the scenario (default: until Ctrl-C)")
    p.set_defaults(func=cmd_demo)

    from igrs.cli.conformance_commands import add_subcommands as add_conformance_commands
    from igrs.cli.group_commands import add_subcommands as add_group_commands

    add_group_commands(sub)
    if file:
        from igrs.cli.file_commands import add_subcommands as add_file_commands

        add_file_commands(sub)
    else:
        _placeholder(sub, "file", "shared folders: ls, stat, get, put, rm, mv, mkdir, serve (igrs file --help)")
    add_conformance_commands(sub)
    if relay:
        from igrs.cli.relay_commands import add_subcommands

        add_subcommands(sub)
    else:
        _placeholder(sub, "relay", "IGRS 2.0 relay: serve, register, bind, send, listen, ... "
                                   "(igrs relay --help)")
    return parser


def _placeholder(sub: argparse._SubParsersAction[argparse.ArgumentParser], name: str, text: str) -> None:
    """A command whose parser is built only when it is the command given (main rebuilds)."""
    p = sub.add_parser(name, help=text, add_help=False)
    p.add_argument("rest", nargs=argparse.REMAINDER)
    p.set_defaults(func=lambda _args: main([name, "--help"]))


def main(argv: list[str] | None = None) -> int:
    words = sys.argv[1:] if argv is None else argv
    command = next((w for w in words if not w.startswith("-")), "")
    parser = build_parser(relay=command == "relay", file=command == "file")
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_USAGE
    level = [logging.WARNING, logging.INFO, logging.DEBUG][min(args.verbose, 2)]
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    try:
        result = args.func(args)
        # Most commands are coroutines; some (igrs relay ...) run their own loop.
        return asyncio.run(result) if inspect.iscoroutine(result) else int(result)
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except IGRSError as exc:
        print(f"igrs: {exc.reason}", file=sys.stderr)
        return EXIT_FAILED
    except OSError as exc:
        print(f"igrs: {exc}", file=sys.stderr)
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
