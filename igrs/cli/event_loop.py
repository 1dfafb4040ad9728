"""The event loop of the long-running commands (``igrs device run``, ``igrs relay serve``).

``--loop asyncio|uvloop|auto`` or the ``IGRS_LOOP`` environment variable (the option wins);
``auto``, the default, takes uvloop when the ``igrs[uvloop]`` extra is installed and the
standard loop otherwise. The default install stays pure Python. Why uvloop is worth it, with
the figures: benchmarks/README.md, "Event loop".
"""

from __future__ import annotations

import argparse
import asyncio
import os
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")
LOOP_CHOICES = ("auto", "asyncio", "uvloop")
LOOP_ENV = "IGRS_LOOP"


def loop_factory(choice: str) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """The factory of the chosen loop (None: asyncio's own). ``uvloop`` without the extra
    installed is an error; ``auto`` then falls back to asyncio."""
    if choice not in LOOP_CHOICES:
        raise ValueError(f"unknown event loop {choice!r}: one of {', '.join(LOOP_CHOICES)}")
    if choice == "asyncio":
        return None
    try:
        import uvloop
    except ImportError:
        if choice == "uvloop":
            raise ValueError("the uvloop event loop needs the igrs[uvloop] extra") from None
        return None
    return uvloop.new_event_loop


def chosen(option: str | None = None) -> str:
    """The option if given, else ``IGRS_LOOP``, else ``auto``."""
    return option or os.environ.get(LOOP_ENV) or "auto"


def loop_name(loop: asyncio.AbstractEventLoop) -> str:
    return "uvloop" if type(loop).__module__.startswith("uvloop") else "asyncio"


def add_loop_option(parser: argparse.ArgumentParser) -> None:
    """``--loop`` for a long-running command."""
    parser.add_argument("--loop", choices=LOOP_CHOICES, default=None,
                        help=f"event loop (default: ${LOOP_ENV}, else auto: uvloop if igrs[uvloop] is "
                             "installed)")


def run(main: Coroutine[Any, Any, T], option: str | None = None) -> T:
    """``asyncio.run(main)`` on the chosen loop."""
    try:
        factory = loop_factory(chosen(option))
    except ValueError:
        main.close()  # never to run: no "never awaited" warning
        raise
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(main)
