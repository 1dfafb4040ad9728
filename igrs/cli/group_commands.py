"""``igrs group create|join|leave|list``: device groups from the command line (specs/groups.md §9).

``add_subcommands(subparsers)`` registers the ``group`` command on ``igrs/cli/main.py``'s parser;
each handler is an ``async`` function of ``args`` (run by ``cli.main``). ``create`` and
``join`` run an ``igrs.Device(groups=True)``; ``leave`` and ``list`` a ``ControlPoint``. They
use the persistent identities of every other command (``igrs/cli/state.py``): ``create``
the device folder of its ``--device-name`` (as ``igrs device run --name``), ``join`` and
``leave`` the ``controller`` folder, the identity ``igrs pair`` pairs, so that
``igrs pair MASTER`` then ``igrs group join GROUP`` works. A running ``join`` records itself
in that folder (``groups/<group uuid>.json``) so that ``leave`` can end it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from igrs.cli.exits import catch_signals
from igrs.cli.options import port_number
from igrs.cli.state import slug, state_dir, state_option
from igrs.constants import IGRS_PORT
from igrs.errors import IGRSError

EXIT_OK, EXIT_FAILED = 0, 1
JOIN_RECORDS = "groups"  # folder of the running joins' records, in the identity's state folder
LEAVE_WAIT = 15.0  # s ``leave`` waits for a running ``join`` to quit and exit


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("-i", "--interface", action="append", metavar="IF",
                   help="interface name or address (repeatable; default: $IGRS_INTERFACES, else the LAN)")
    p.add_argument("--port", type=port_number, default=IGRS_PORT, help=f"ISDP UDP port (default {IGRS_PORT})")
    p.add_argument("--json", action="store_true", help="machine-readable output")


def add_subcommands(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    group = subparsers.add_parser("group", help="device groups: create, join, leave, list")
    sub = group.add_subparsers(dest="group_command", metavar="ACTION", required=True)

    p = sub.add_parser("create", help="create a group and host it until Ctrl-C (which ends it)")
    _common(p)
    state_option(p)
    p.add_argument("name", help="group name")
    p.add_argument("--centralised", action="store_true", help="a centralised group with this device as master "
                                                               "(default: peer-to-peer)")
    p.add_argument("--device-name", default="igrs group host",
                   help="this device's friendly name (its identity: devices/<name> under the state root)")
    p.add_argument("--id", help="this device's id when its state folder has none yet")
    p.add_argument("--group-id", help="re-create a group under this id")
    p.set_defaults(func=cmd_create)

    p = sub.add_parser("join", help="join a group and stay in it until Ctrl-C (which leaves it)")
    _common(p)
    state_option(p)
    p.add_argument("group", help="group id, its UUID prefix, or its exact name")
    p.add_argument("--device-name", default="igrs group member", help="this device's friendly name")
    p.add_argument("-t", "--timeout", type=float, default=1.5, help="seconds to search first")
    p.set_defaults(func=cmd_join)

    p = sub.add_parser("leave", help="leave a group this host's identity joined (ends its `group join`)")
    _common(p)
    state_option(p)
    p.add_argument("group", help="group id, its UUID prefix, or its exact name")
    p.add_argument("-t", "--timeout", type=float, default=1.5, help="seconds to search first")
    p.set_defaults(func=cmd_leave)

    p = sub.add_parser("list", help="search the LAN for groups")
    _common(p)
    p.add_argument("-t", "--timeout", type=float, default=1.5, help="seconds to listen")
    p.add_argument("--mx", type=int, default=1, help="MX: devices answer within this many seconds")
    p.set_defaults(func=cmd_list)


# --- plumbing --------------------------------------------------------------------------------
def _say(args: argparse.Namespace, event: str, text: str, **fields: Any) -> None:
    print(json.dumps({"event": event, **fields}) if args.json else text, flush=True)


def _event_line(event: Any, as_json: bool) -> str:
    fields = {k: str(getattr(event, k)) for k in ("group_id", "device_id", "master", "reason", "return_code")
              if hasattr(event, k)}
    if hasattr(event, "group"):
        fields["group_id"] = str(event.group.group_id)
        fields["name"] = event.group.name
    if as_json:
        return json.dumps({"event": type(event).__name__, **fields})
    return f"{type(event).__name__} " + " ".join(f"{k}={v}" for k, v in fields.items())


def _find_group(groups: list[Any], text: str) -> Any:
    text = text.strip()
    matches = [g for g in groups
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


def member_count(record: Any) -> int:
    """Members of a heard group: a centralised group's slaves as its master last said; the
    peers heard for a peer group."""
    if record.master is not None:
        return int(record.member_count or 0)
    return len(record.members)


# --- the record of a running join (so that ``leave`` can end it) -------------------------------
def _record_path(state: str, group_id: Any) -> Path:
    return Path(state) / JOIN_RECORDS / f"{str(group_id).rpartition(':')[2]}.json"


@contextlib.contextmanager
def _join_record(state: str, group_id: Any) -> Iterator[None]:
    path = _record_path(state, group_id)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    path.write_text(json.dumps({"pid": os.getpid(), "group_id": str(group_id)}))
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            if json.loads(path.read_text()).get("pid") == os.getpid():
                path.unlink()


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (an exited process its parent has not reaped yet does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    with contextlib.suppress(OSError, IndexError):
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] != "Z"
    return True


def _running_join(state: str, group_id: Any) -> int | None:
    """The pid of this identity's running ``join`` of ``group_id``, if any (stale records go)."""
    path = _record_path(state, group_id)
    try:
        pid = int(json.loads(path.read_text())["pid"])
    except (OSError, ValueError, KeyError, TypeError):
        pid = None
    if pid is None or not _alive(pid):
        with contextlib.suppress(OSError):
            path.unlink()
        return None
    return pid


async def _end_process(pid: int) -> bool:
    """SIGTERM ``pid`` (a ``join``: it quits the group on the way out); wait for it to exit."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + LEAVE_WAIT
    while time.monotonic() < deadline:
        if not _alive(pid):
            return True
        await asyncio.sleep(0.1)
    return False


# --- commands --------------------------------------------------------------------------------
async def cmd_create(args: argparse.Namespace) -> int:
    from igrs.node.device import Device
    from igrs.wire.group_datagrams import GroupId

    device = Device(name=args.device_name, device_id=args.id, interfaces=args.interface, port=args.port,
                    state_dir=state_dir(args, f"devices/{slug(args.device_name)}"),
                    on_pin=_show_pin(args.json, args.device_name), groups=True)
    stop = catch_signals()
    async with device:
        events = device.groups.events()
        printer = asyncio.create_task(_print_events(events, args.json))
        gid = GroupId.parse(args.group_id) if args.group_id else None
        info = await (device.groups.create_centralised(args.name, gid) if args.centralised
                      else device.groups.create_peer(args.name, gid))
        _say(args, "ready", f"{info.kind.value} group {info.name!r} is {info.group_id}, hosted by "
                            f"{device.device_id} (Ctrl-C to end it)",
             group_id=str(info.group_id), kind=info.kind.value, device_id=str(device.device_id))
        await stop.wait()
        printer.cancel()
    return EXIT_OK


async def _print_events(events: Any, as_json: bool) -> None:
    async for event in events:
        print(_event_line(event, as_json), flush=True)


async def cmd_join(args: argparse.Namespace) -> int:
    from igrs.node.device import Device
    from igrs.wire.group_datagrams import GroupKind

    state = state_dir(args, "controller")
    device = Device(name=args.device_name, interfaces=args.interface, port=args.port, state_dir=state,
                    groups=True)
    stop = catch_signals()
    async with device:
        groups = device.groups
        record = _find_group(await groups.search(timeout=args.timeout, mx=1), args.group)
        events = groups.events()
        if record.kind is GroupKind.CENTRALISED:
            info = await groups.join(record.group_id, record.master)
        else:
            info = await groups.join_peer(record.group_id)
        with _join_record(state, info.group_id):
            me = str(device.device_id)
            _say(args, "joined", f"joined {info.name!r} ({info.group_id}) as {me} (Ctrl-C to leave)",
                 group_id=str(info.group_id), device_id=me)
            ended = asyncio.ensure_future(_membership_end(events, info.group_id, args.json))
            stopped = asyncio.ensure_future(stop.wait())
            await asyncio.wait({ended, stopped}, return_when=asyncio.FIRST_COMPLETED)
            stopped.cancel()
            if ended.done():
                print(f"igrs: no longer in {info.name!r}: {ended.result()}", file=sys.stderr)
                return EXIT_FAILED
            ended.cancel()
    _say(args, "left", f"left {info.name!r} ({info.group_id})", group_id=str(info.group_id))
    return EXIT_OK


_ENDED = {"dissolved": "the group was dissolved by its master", "removed": "the master removed this device",
          "master_lost": "the master did not come back"}


async def _membership_end(events: Any, group_id: Any, as_json: bool) -> str:
    """Print this group's events; return why the membership ended when it does."""
    from igrs.core.device_groups import GroupDissolved, GroupLeft, MasterLost, MasterReturned

    async for event in events:
        group = getattr(event, "group", None)
        if group_id not in (getattr(event, "group_id", None), getattr(group, "group_id", None)):
            continue
        print(_event_line(event, as_json), flush=True)
        if isinstance(event, GroupDissolved):
            return _ENDED.get(event.reason, event.reason)
        if isinstance(event, GroupLeft):
            return "left"
        if isinstance(event, MasterLost) and not as_json:
            print(f"the master is gone ({event.reason}); waiting for it to come back", file=sys.stderr,
                  flush=True)
        if isinstance(event, MasterReturned) and not as_json:
            print("the master is back", file=sys.stderr, flush=True)
    return "stopped"


async def cmd_leave(args: argparse.Namespace) -> int:
    from igrs.node.control import ControlPoint
    from igrs.wire.bodies.groups import QuitCentralisedDeviceGroupNotify
    from igrs.wire.messages import ErrorResponse

    state = state_dir(args, "controller")
    async with ControlPoint(interfaces=args.interface, port=args.port, state_dir=state,
                            name="igrs group leave") as cp:
        record = _find_group(await cp.search_groups(timeout=args.timeout, mx=1), args.group)
        me, name = cp.device_id, record.name
        pid = _running_join(state, record.group_id)
        if pid is not None and not await _end_process(pid):
            raise IGRSError(f"`igrs group join` (pid {pid}) of {me} did not end within {LEAVE_WAIT:.0f} s")
        if record.master is None:  # a peer group: the membership is what that join advertised
            if pid is None:
                raise IGRSError(f"{me} is not a member of {name!r} ({record.group_id}): no `igrs group join` "
                                f"of this identity runs")
        else:
            # Ask the master: it drops us (200) or says we are not a member (404).
            await cp.search(timeout=args.timeout, target=record.master)
            pipe = await cp.open_pipe(record.master)
            _, frame = await pipe.exchange(QuitCentralisedDeviceGroupNotify(record.group_id))
            refused = frame.message.status if frame is not None and isinstance(frame.message, ErrorResponse) \
                else None
            if refused is not None and refused.return_code == 404 and pid is None:
                raise IGRSError(f"{me} is not a member of {name!r} ({record.group_id}): its master says so")
            if refused is not None and refused.return_code != 404:
                raise IGRSError(f"the master of {name!r} refused the quit: "
                                f"{refused.reason or refused.return_code}")
    _say(args, "left", f"{me} left {name!r} ({record.group_id})", group_id=str(record.group_id),
         device_id=str(me))
    return EXIT_OK


async def cmd_list(args: argparse.Namespace) -> int:
    from igrs.node.control import ControlPoint

    async with ControlPoint(interfaces=args.interface, port=args.port, name="igrs group list") as cp:
        found = await cp.search_groups(timeout=args.timeout, mx=args.mx)
    if args.json:
        print(json.dumps([{"id": str(g.group_id), "name": g.name, "kind": g.kind.value,
                           "master": str(g.master) if g.master else None,
                           "members": sorted(str(m) for m in g.members),
                           "member_count": member_count(g)} for g in found], indent=2))
        return EXIT_OK
    if not found:
        print("no IGRS device groups found", file=sys.stderr)
        return EXIT_OK
    for g in found:
        master = f" master {g.master.uuid}" if g.master else ""
        print(f"{g.group_id}  {g.name!r}  {g.kind.value}{master}  members {member_count(g)}")
    return EXIT_OK
