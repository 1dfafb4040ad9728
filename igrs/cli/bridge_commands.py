"""``igrs bridge upnp``: every DLNA media server and renderer on the LAN as an IGRS device
(igrs.bridges.upnp.imported; specs/upnp-bridge.md §6). Needs ``igrs[upnp]``."""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
from typing import Any

from igrs.constants import IGRS_PORT

EXIT_OK = 0


def add_subcommands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("bridge", help="bridges to other ecosystems: igrs bridge upnp")
    bsub = p.add_subparsers(dest="bridge_command", metavar="KIND", required=True)
    up = bsub.add_parser("upnp", help="show every DLNA server and renderer on the LAN as an IGRS device "
                                      "(pairable by PIN; needs igrs[upnp])")
    up.add_argument("-i", "--interface", action="append", metavar="IF",
                    help="interface name or address (repeatable; default: $IGRS_INTERFACES, else every "
                         "non-loopback interface)")
    up.add_argument("--port", type=int, default=IGRS_PORT, help=f"ISDP UDP port (default {IGRS_PORT})")
    up.add_argument("--state-dir", help="where the virtual devices' identities and pairings live (default: "
                                        "$IGRS_STATE_DIR or ~/.local/state/igrs, folder bridge-upnp)")
    up.add_argument("--fetch-allow", action="append", metavar="NET|HOST[:PORT]",
                    help="also let paired peers make the bridge fetch from here (specs/av-profile.md §12)")
    up.add_argument("--search-interval", type=float, default=None,
                    help="seconds between SSDP searches for DLNA devices (default 30)")
    up.add_argument("--json", action="store_true", help="machine-readable status lines")
    up.set_defaults(func=cmd_bridge_upnp)


def _say(args: argparse.Namespace, obj: dict[str, Any], text: str) -> None:
    print(json.dumps(obj) if args.json else text, flush=True)


async def cmd_bridge_upnp(args: argparse.Namespace) -> int:
    try:
        from igrs.bridges.upnp.imported import Imported, UpnpImportBridge
    except ImportError as exc:
        raise SystemExit(f"igrs: the UPnP bridge needs igrs[upnp] (pip install 'igrs[upnp]'): {exc}") from None
    from igrs.bridges.upnp.constants import IMPORT_SEARCH_INTERVAL
    from igrs.node.keystore import default_state_dir

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)

    def describe(imp: Imported) -> dict[str, Any]:
        return {"name": imp.device.name, "id": str(imp.device.device_id), "kind": imp.kind, "udn": imp.udn,
                "upnp": imp.location, "location": imp.device.location}

    def on_device(what: str, imp: Imported) -> None:
        info = describe(imp)
        _say(args, {"event": what, **info},
             f"{'+' if what == 'appeared' else '-'} DLNA {imp.kind} {imp.device.name!r} ({imp.location}) "
             f"as IGRS device {imp.device.device_id}")

    def on_pin(imp: Imported, pin: str) -> None:
        _say(args, {"event": "pin", "pin": pin, "name": imp.device.name, "id": str(imp.device.device_id)},
             f"Pairing requested for {imp.device.name!r}: type this PIN on the other device: {pin}")

    bridge = UpnpImportBridge(
        interfaces=args.interface, port=args.port,
        state_dir=args.state_dir or str(default_state_dir() / "bridge-upnp"),
        on_pin=on_pin, on_device=on_device, fetch_allow=args.fetch_allow or (),
        search_interval=args.search_interval or IMPORT_SEARCH_INTERVAL)
    try:
        await bridge.start()
        _say(args, {"event": "ready", "interfaces": [i.address for i in bridge.interfaces],
                    "devices": [describe(i) for i in bridge.imported.values()]},
             f"UPnP bridge up on {', '.join(i.address for i in bridge.interfaces)}; Ctrl-C to stop")
        await stop.wait()
    finally:
        await bridge.aclose()
    _say(args, {"event": "stopped"}, "UPnP bridge stopped")
    return EXIT_OK
