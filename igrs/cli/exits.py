"""How every ``igrs`` command ends (README "Command line"), written once.

Exit status: 0 success; 1 the operation failed (device not found, refused, network error, a
conformance run FAILED); 2 usage error (bad option value, unknown case, missing folder);
3 a conformance run INCOMPLETE (a mandatory case not checked); 130 interrupted.

Signals: Ctrl-C (SIGINT) ends any command with 130 and an ``igrs: interrupted`` line on
stderr, after the command's own clean-up (a device says byebye, a conformance run writes its
partial report, a transfer says how to resume). SIGTERM asks a long-running command (device
run, file serve, group create/join, watch, relay serve, relay xmpp-component) to stop
cleanly: exit 0.
A closed stdout (``| head``) ends a command quietly, exit 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import threading

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INCOMPLETE, EXIT_INTERRUPTED = 0, 1, 2, 3, 130

_interrupted = threading.Event()


class UsageError(Exception):
    """A command line that cannot work as given (exit status 2); the message says why."""


def catch_signals() -> asyncio.Event:
    """An event set by SIGINT or SIGTERM on the running loop (install it before announcing
    readiness); a SIGINT also makes the command end with 130 (``interrupted()``)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()

    def on_sigint() -> None:
        _interrupted.set()
        stop.set()

    loop.add_signal_handler(signal.SIGINT, on_sigint)
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    return stop


def mark_interrupted() -> None:
    _interrupted.set()


def interrupted() -> bool:
    """Whether a SIGINT reached a handler of ``catch_signals`` (or the command was interrupted)."""
    return _interrupted.is_set()


def reset() -> None:
    """Forget an earlier interruption (``main`` runs more than one command in tests)."""
    _interrupted.clear()


async def read_line() -> str:
    """A line of stdin without blocking the loop. A daemon thread reads it, so Ctrl-C while
    waiting for the user does not hang the exit (``asyncio.to_thread`` would: the loop waits
    for its executor's threads)."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[str] = loop.create_future()

    def deliver(line: str) -> None:
        if not done.done():
            done.set_result(line)

    def read() -> None:
        line = sys.stdin.readline()
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile (Ctrl-C): nobody waits
            loop.call_soon_threadsafe(deliver, line)

    threading.Thread(target=read, name="igrs-stdin", daemon=True).start()
    return (await done).strip()


async def ask(prompt: str) -> str:
    """``prompt`` on stderr (stdout stays the result), then a line of stdin (``read_line``).
    A prompt for people at a terminal; a whole line when a program types the answer (it can
    wait for lines, not for a prompt without its end)."""
    print(prompt, end="" if sys.stdin.isatty() else "\n", file=sys.stderr, flush=True)
    return await read_line()


def quiet_stdout() -> None:
    """After a BrokenPipeError on stdout: point it at /dev/null so that the interpreter's final
    flush does not complain again."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass
    finally:
        os.close(devnull)
