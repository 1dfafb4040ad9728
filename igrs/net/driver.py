"""Drives a sans-IO state machine's timers from the event loop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

log = logging.getLogger(__name__)


class TimerDriver:
    """Sleeps until the machine's next deadline (or a wake-up), then polls it.

    ``poll(now)`` does the work for due timers (and may await sends). Call ``wake()``
    after feeding the machine an input, since inputs can add earlier deadlines.
    """

    def __init__(self, next_deadline: Callable[[], float | None],
                 poll: Callable[[float], Awaitable[None]]) -> None:
        self._next_deadline = next_deadline
        self._poll = poll
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="igrs-timers")

    def wake(self) -> None:
        self._wake.set()

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            deadline = self._next_deadline()
            # call_at + Event rather than wait_for: on Python 3.11 a wait_for that times out
            # as it is cancelled can swallow the cancellation, and stop() would hang.
            timer = loop.call_at(deadline, self._wake.set) if deadline is not None else None
            try:
                await self._wake.wait()
            finally:
                if timer is not None:
                    timer.cancel()
            self._wake.clear()
            try:
                await self._poll(loop.time())
            except Exception:
                log.exception("timer poll failed")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
