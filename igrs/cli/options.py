"""What the command modules share (igrs/cli/main.py, file_commands.py, ...): the state folder of
a role, the DEVICE argument of a command about one device and how it is located, the
``--share-folder`` help. Imported by them, importing none of them."""

from __future__ import annotations

import argparse
from typing import Any

SHARE_FOLDER_METAVAR = "[NAME=]PATH[:rw][:quota=SIZE]"
SHARE_FOLDER_HELP = ("read-only unless :rw; quota=SIZE caps what the share may hold (files and unfinished "
                     "uploads; more is refused with 507), SIZE in bytes or with K, M, G or T (powers of "
                     "1024), e.g. inbox=/srv/inbox:rw:quota=20G")
DEVICE_HELP = ("the device: its id, a prefix of its UUID, its exact name, host:port of its endpoint "
               "or its LOCATION URL (no search for the last two)")
ONE_DEVICE_TIMEOUT = 3.0


def state_dir(args: argparse.Namespace, role: str) -> str:
    """--state-dir, else <$IGRS_STATE_DIR or ~/.local/state/igrs>/<role>."""
    from igrs.node.keystore import default_state_dir

    return args.state_dir or str(default_state_dir() / role)


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
