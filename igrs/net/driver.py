"""Drives a sans-IO state machine's timers from the event loop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import Awaitable, Callable

log = logging.getLogger(__name__)


class TimerDriver:
    """Sleeps until the machine's next deadline, then polls it.

    ``poll(now)`` does the work for due timers (and may await sends). Call ``wake()``
    after feeding the machine an input: it reads ``next_deadline()`` and re-arms the sleep
    only when the input brought the deadline forward, so an input that adds no earlier
    deadline costs one ``next_deadline()`` call and no poll.
    """

    def __init__(self, next_deadline: Callable[[], float | None],
                 poll: Callable[[float], Awaitable[None]]) -> None:
        self._next_deadline = next_deadline
        self._poll = poll
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._armed = -math.inf  # the deadline being slept for; -inf: not sleeping (polling)
        self.polls = 0  # polls run so far (for tests and benchmarks)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="igrs-timers")

    def wake(self) -> None:
        deadline = self._next_deadline()
        if deadline is not None and deadline < self._armed:
            self._wake.set()

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            deadline = self._next_deadline()
            if deadline is None or deadline > loop.time():
                self._armed = math.inf if deadline is None else deadline
                # call_at + Event rather than wait_for: on Python 3.11 a wait_for that times out
                # as it is cancelled can swallow the cancellation, and stop() would hang.
                timer = loop.call_at(deadline, self._wake.set) if deadline is not None else None
                try:
                    await self._wake.wait()
                finally:
                    self._armed = -math.inf
                    if timer is not None:
                        timer.cancel()
                self._wake.clear()
                continue  # re-read: woken for an earlier deadline, or this one is due
            self.polls += 1
            now = loop.time()
            try:
                await self._poll(now)
            except Exception:
                log.exception("timer poll failed")
            after = self._next_deadline()
            if after is not None and after <= now:
                # The poll left a deadline it was due for (a failing poll): do not spin.
                await asyncio.sleep(0.01)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self._armed = -math.inf
