"""What tv.py, pc.py and phone.py share: the command line, JSON lines on stdout, signals.

Every role prints one JSON object per line on stdout (``{"event": "ready", ...}``,
``{"event": "pin", ...}``, ...) for scripts and the other roles, and readable text on stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
from typing import Any

from igrs.constants import IGRS_PORT


def parser(description: str, name: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument(
        "-i",
        "--interface",
        action="append",
        required=not os.environ.get("IGRS_INTERFACES"),
        metavar="IF",
        help="interface name or IPv4 address to use (repeatable; required unless "
        "$IGRS_INTERFACES is set). 'lo' to try it on one machine",
    )
    p.add_argument("--port", type=int, default=IGRS_PORT, help=f"ISDP UDP port (default {IGRS_PORT})")
    p.add_argument(
        "--state-dir", help="keep the identity and pairings here (default: in memory, forgotten on exit)"
    )
    p.add_argument("--name", default=name, help=f"device name (default {name!r})")
    return p


def emit(event: str, **fields: Any) -> None:
    """One JSON line on stdout."""
    print(json.dumps({"event": event, **fields}), flush=True)


def info(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


async def until_signal() -> None:
    """Wait for SIGINT or SIGTERM."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
