"""Small asyncio helpers shared by the shells."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")
_EAGER = sys.version_info >= (3, 12)


async def wait_event(event: asyncio.Event, timeout: float | None) -> bool:
    """Wait until ``event`` is set or ``timeout`` seconds pass; True if it was set.

    ``asyncio.timeout`` rather than ``wait_for``: on Python 3.11 a ``wait_for`` cancelled as
    its timeout fires can swallow the cancellation, and the task then never stops.
    """
    try:
        async with asyncio.timeout(timeout):
            await event.wait()
    except TimeoutError:
        return event.is_set()
    return True


def start_eagerly(loop: asyncio.AbstractEventLoop, coro: Coroutine[Any, Any, T]) -> asyncio.Task[T]:
    """A task for ``coro`` whose first step has already run, here and now, as the task:
    a coroutine that never suspends is done on return (no wait for the loop's next turn,
    no done callback to schedule). Python 3.12+ says so (``eager_start``); on 3.11 the
    step the task scheduled on asyncio's own loop is taken out and run at once, when no
    other task is running. Elsewhere (another loop) it is an ordinary task."""
    if _EAGER:
        return asyncio.Task(coro, loop=loop, eager_start=True)  # type: ignore[call-arg,unused-ignore]
    task = loop.create_task(coro)
    ready = getattr(loop, "_ready", None)
    if ready and getattr(ready[-1]._callback, "__self__", None) is task and asyncio.current_task(loop) is None:
        ready.pop()._run()
    return task


STREAM_READ_SIZE = 65536  # bytes asked of the kernel per read on an HTTP connection (specs/transport.md)


def limit_read_size(transport: asyncio.BaseTransport) -> None:
    """Read at most STREAM_READ_SIZE bytes at a time on ``transport``. asyncio's socket
    transport asks ``recv`` for 256 KiB: on Linux/glibc, a buffer that large is mapped and
    unmapped for every read (≈ 17 µs per read, the cost of a whole HTTP head's parsing);
    64 KiB comes from the heap. Transports without the setting (uvloop's, TLS) are left."""
    if isinstance(getattr(transport, "max_size", None), int):
        transport.max_size = STREAM_READ_SIZE  # type: ignore[attr-defined]
