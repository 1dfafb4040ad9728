"""``igrs group create|join|leave|list``: device groups from the command line (specs/groups.md).

``add_subcommands(subparsers)`` registers the ``group`` command on ``igrs/cli/main.py``'s parser;
each handler is an ``async`` function of ``args`` (run by ``cli.main``). Until the Device
hosts a ``GroupManager`` itself, ``create`` and ``join`` run their own ``Device`` (public
API) for the ``/IGRS`` endpoint, their own ISDP endpoints for the group datagrams, and
send the unicast group messages in a secure pipe (``ControlPoint.open_pipe``): joining a
centralised group needs the two devices paired first (``igrs pair``), with the same
``--state-dir`` as here.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import sys
from collections.abc import AsyncIterator
from typing import Any

from igrs.constants import IGRS_PORT

EXIT_OK, EXIT_FAILED = 0, 1


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("-i", "--interface", action="append", metavar="IF",
                   help="interface name or address (repeatable; default: $IGRS_INTERFACES, else the LAN)")
    p.add_argument("--port", type=int, default=IGRS_PORT, help=f"ISDP UDP port (default {IGRS_PORT})")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--state-dir", help="identity keys and pairings of this device (as for igrs pair)")


def add_subcommands(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    group = subparsers.add_parser("group", help="device groups: create, join, leave, list")
    sub = group.add_subparsers(dest="group_command", metavar="ACTION", required=True)

    p = sub.add_parser("create", help="create a group and host it until Ctrl-C")
    _common(p)
    p.add_argument("name", help="group name")
    p.add_argument("--centralised", action="store_true", help="a centralised group with this device as master "
                                                               "(default: peer-to-peer)")
    p.add_argument("--device-name", default="igrs group host", help="this device's friendly name")
    p.add_argument("--id", help="this device's id (default: a new one)")
    p.add_argument("--group-id", help="re-create a group under this id")
    p.set_defaults(func=cmd_create)

    p = sub.add_parser("join", help="join a group and stay in it until Ctrl-C")
    _common(p)
    p.add_argument("group", help="group id, its UUID prefix, or its exact name")
    p.add_argument("--device-name", default="igrs group member", help="this device's friendly name")
    p.add_argument("--id", help="this device's id (default: a new one)")
    p.add_argument("-t", "--timeout", type=float, default=1.5, help="seconds to search first")
    p.set_defaults(func=cmd_join)

    p = sub.add_parser("leave", help="make device --id leave a group (quit notify / quit advertisement)")
    _common(p)
    p.add_argument("group", help="group id, its UUID prefix, or its exact name")
    p.add_argument("--id", required=True, help="the device id that leaves")
    p.add_argument("-t", "--timeout", type=float, default=1.5, help="seconds to search first")
    p.set_defaults(func=cmd_leave)

    p = sub.add_parser("list", help="search the LAN for groups")
    _common(p)
    p.add_argument("-t", "--timeout", type=float, default=1.5, help="seconds to listen")
    p.add_argument("--mx", type=int, default=1, help="MX: devices answer within this many seconds")
    p.set_defaults(func=cmd_list)


# --- plumbing --------------------------------------------------------------------------------
@contextlib.asynccontextmanager
async def _groups(args: argparse.Namespace, name: str, device: Any = None,
                  device_id: Any = None) -> AsyncIterator[Any]:
    """A GroupManager on its own ISDP endpoints; unicast group messages in secure pipes."""
    from igrs.net.isdp import IsdpEndpoints
    from igrs.node.control import ControlPoint
    from igrs.node.group_manager import GroupManager
    from igrs.wire.messages import Frame, Routing

    if device is not None:
        device_id = device.device_id
    cp = ControlPoint(interfaces=args.interface, port=args.port, device_id=device_id,
                      state_dir=getattr(args, "state_dir", None), name=name or "igrs group tool")
    await cp.start()
    device_id = cp.device_id
    manager: GroupManager | None = None

    async def send_request(target: Any, message: Any) -> Any:
        if cp.discovery.get(target) is None:
            await cp.search(timeout=1.0, target=target, mx=1)
        pipe = await cp.open_pipe(target)
        _, frame = await pipe.exchange(message)
        if frame is None:  # a notify's bare 200
            return Frame(Routing(message.message_type, target, device_id, 1), message)
        return frame

    def on_datagram(data: bytes, source: tuple[str, int], interface: str) -> None:
        if manager is not None:
            manager.on_datagram(data, source, interface)

    endpoints = IsdpEndpoints(cp.interfaces, args.port, on_datagram)
    manager = GroupManager(device_id, name, execute=endpoints.execute, send_request=send_request,
                           interfaces=cp.interfaces, port=args.port)
    if device is not None:
        async def handle(frame: Any, ctx: Any) -> Any:
            assert manager is not None
            return await manager.handle_request(frame, getattr(ctx, "address", None))

        for mtype in ("JoinCentralisedDeviceGroupRequest", "QuitCentralisedDeviceGroupNotify"):
            device.handlers[mtype] = handle
        device.group_source = manager.joined_groups  # joinedGroupList in its description
    try:
        await endpoints.start()
        await manager.start()
        yield manager
    finally:
        await manager.stop()
        await endpoints.close()
        await cp.stop()


async def _until_signalled() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


def _event_line(event: Any, as_json: bool) -> str:
    fields = {k: str(getattr(event, k)) for k in ("group_id", "device_id", "master", "reason", "return_code")
              if hasattr(event, k)}
    if hasattr(event, "group"):
        fields["group_id"] = str(event.group.group_id)
        fields["name"] = event.group.name
    if as_json:
        return json.dumps({"event": type(event).__name__, **fields})
    return f"{type(event).__name__} " + " ".join(f"{k}={v}" for k, v in fields.items())


async def _print_events(manager: Any, as_json: bool) -> None:
    async for event in manager.events():
        print(_event_line(event, as_json), flush=True)


def _find_group(manager: Any, text: str) -> Any:
    from igrs.errors import IGRSError

    text = text.strip()
    matches = [g for g in manager.heard
               if text in (str(g.group_id), g.name)
               or str(g.group_id).rpartition(":")[2].startswith(text.lower())]
    if len(matches) != 1:
        raise IGRSError(f"{'no' if not matches else 'more than one'} group matches {text!r}")
    return matches[0]


def _show_pin(as_json: bool, name: str) -> Any:
    """Print the PIN a pairing request asks for (members pair with the master to join)."""
    from igrs.node.pin_text import pin_shown

    def show(pin: str) -> None:
        print(json.dumps({"event": "pin", "pin": pin}) if as_json else pin_shown(name, pin), flush=True)

    return show


def _device_id(text: str | None) -> Any:
    from igrs.wire.ids import DeviceId

    return DeviceId.parse(text) if text else DeviceId.new()


# --- commands --------------------------------------------------------------------------------
async def cmd_create(args: argparse.Namespace) -> int:
    from igrs import Device
    from igrs.wire.group_datagrams import GroupId

    device = Device(name=args.device_name, device_id=args.id, interfaces=args.interface, port=args.port,
                    state_dir=args.state_dir, on_pin=_show_pin(args.json, args.device_name))
    async with device, _groups(args, args.device_name, device) as groups:
        device_id = device.device_id
        printer = asyncio.create_task(_print_events(groups, args.json))
        gid = GroupId.parse(args.group_id) if args.group_id else None
        info = await (groups.create_centralised(args.name, gid) if args.centralised
                      else groups.create_peer(args.name, gid))
        ready = {"event": "ready", "group_id": str(info.group_id), "kind": info.kind.value,
                 "device_id": str(device_id)}
        print(json.dumps(ready) if args.json else
              f"{info.kind.value} group {info.name!r} is {info.group_id} (Ctrl-C to end it)", flush=True)
        await _until_signalled()
        printer.cancel()
    return EXIT_OK


async def cmd_join(args: argparse.Namespace) -> int:
    from igrs import Device
    from igrs.wire.group_datagrams import GroupKind

    device = Device(name=args.device_name, device_id=args.id, interfaces=args.interface, port=args.port,
                    state_dir=args.state_dir, on_pin=_show_pin(args.json, args.device_name))
    async with device, _groups(args, args.device_name, device) as groups:
        device_id = device.device_id
        await groups.search(timeout=args.timeout, mx=1)
        record = _find_group(groups, args.group)
        printer = asyncio.create_task(_print_events(groups, args.json))
        if record.kind is GroupKind.CENTRALISED:
            info = await groups.join(record.group_id, record.master)
        else:
            info = await groups.join_peer(record.group_id)
        ready = {"event": "joined", "group_id": str(info.group_id), "device_id": str(device_id)}
        print(json.dumps(ready) if args.json else
              f"joined {info.name!r} ({info.group_id}) as {device_id} (Ctrl-C to leave)", flush=True)
        await _until_signalled()
        printer.cancel()
    return EXIT_OK


async def cmd_leave(args: argparse.Namespace) -> int:
    device_id = _device_id(args.id)
    async with _groups(args, "", device_id=device_id) as groups:
        await groups.search(timeout=args.timeout, mx=1)
        record = _find_group(groups, args.group)
        await groups.quit_untracked(record.group_id, record.kind, record.master)
        await asyncio.sleep(0.3)  # the quit copies / the notify
    print(json.dumps({"event": "left", "group_id": str(record.group_id)}) if args.json
          else f"{device_id} left {record.name!r} ({record.group_id})", flush=True)
    return EXIT_OK


async def cmd_list(args: argparse.Namespace) -> int:
    from igrs.wire.ids import DeviceId

    async with _groups(args, "", device_id=DeviceId.new()) as groups:
        found = await groups.search(timeout=args.timeout, mx=args.mx)
    if args.json:
        print(json.dumps([{"id": str(g.group_id), "name": g.name, "kind": g.kind.value,
                           "master": str(g.master) if g.master else None,
                           "members": sorted(str(m) for m in g.members)} for g in found], indent=2))
        return EXIT_OK
    if not found:
        print("no IGRS device groups found", file=sys.stderr)
        return EXIT_OK
    for g in found:
        master = f" master {g.master.uuid}" if g.master else ""
        print(f"{g.group_id}  {g.name!r}  {g.kind.value}{master}  members {len(g.members)}")
    return EXIT_OK
