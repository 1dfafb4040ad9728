"""Small asyncio helpers shared by the shells."""

from __future__ import annotations

import asyncio


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
