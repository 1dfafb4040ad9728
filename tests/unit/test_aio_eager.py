"""igrs.net.aio.start_eagerly: a task whose first step runs at once, as that task (called,
as the HTTP server calls it, from a protocol callback: no task is running there)."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

import pytest

from igrs.net.aio import start_eagerly


async def from_callback(coro: Coroutine[Any, Any, Any]) -> tuple[asyncio.Task[Any], bool]:
    """The task start_eagerly makes in a loop callback, and whether it was done on return."""
    loop = asyncio.get_running_loop()
    made: asyncio.Future[tuple[asyncio.Task[Any], bool]] = loop.create_future()

    def callback() -> None:
        task = start_eagerly(loop, coro)
        made.set_result((task, task.done()))

    loop.call_soon(callback)
    return await made


async def test_a_coroutine_that_does_not_wait_is_done_on_return() -> None:
    seen: list[object] = []

    async def quick() -> int:
        seen.append(asyncio.current_task())
        async with asyncio.timeout(1):  # needs a current task
            return 7

    task, done = await from_callback(quick())
    assert done and task.result() == 7 and seen == [task]


async def test_a_coroutine_that_waits_goes_on_as_the_same_task() -> None:
    steps: list[object] = []
    gate = asyncio.Event()

    async def slow() -> str:
        steps.append(asyncio.current_task())
        await gate.wait()
        steps.append(asyncio.current_task())
        return "done"

    task, done = await from_callback(slow())
    assert not done and steps == [task]
    gate.set()
    assert await task == "done" and steps == [task, task]


async def test_a_waiting_eager_task_can_be_cancelled() -> None:
    async def forever() -> None:
        await asyncio.sleep(3600)

    task, done = await from_callback(forever())
    assert not done
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_inside_a_running_task_it_is_still_a_task() -> None:
    async def quick() -> object:
        return asyncio.current_task()

    task = start_eagerly(asyncio.get_running_loop(), quick())
    assert await task is task
