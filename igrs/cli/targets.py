"""The DEVICE argument of a command about one device, and how it is located: an endpoint
(host:port or LOCATION URL, no search), a device remembered in the controller's location
cache and confirmed, else a search that ends at its first answer (ControlPoint.locate)."""

from __future__ import annotations

import argparse
from typing import Any

from igrs.cli.state import state_dir

DEVICE_HELP = ("the device: its id, a prefix of its UUID, its exact name, host:port of its endpoint "
               "or its LOCATION URL (no search for the last two)")
ONE_DEVICE_TIMEOUT = 3.0


def device_argument(p: argparse.ArgumentParser) -> None:
    """The DEVICE argument and the search bound of a command about one device."""
    p.add_argument("device", help=DEVICE_HELP)
    p.add_argument("-t", "--timeout", type=float, default=ONE_DEVICE_TIMEOUT,
                   help=f"at most this many seconds to search (default {ONE_DEVICE_TIMEOUT:g}); the search "
                        "ends when the device answers, and a device located lately is only asked to confirm")


def location_cache(args: argparse.Namespace) -> Any:
    """The controller state folder's cache of recently located devices (igrs.node.locations)."""
    from igrs.node.keystore import KeyStore
    from igrs.node.locations import LocationCache

    return LocationCache(KeyStore(state_dir(args, "controller")), port=args.port)


async def located(cp: Any, args: argparse.Namespace) -> Any:
    """``args.device`` -- host:port, LOCATION URL, device id, UUID prefix or name -- as soon as
    it is known (ControlPoint.locate: no search for an endpoint or a confirmed remembered
    location; else the search ends at its first answer, within ``args.timeout``)."""
    return await cp.locate(args.device, args.timeout, cache=location_cache(args))
