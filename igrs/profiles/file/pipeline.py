"""Write-behind for file transfers: the bytes a transfer receives are written (and hashed) by a
worker thread while the event loop receives the next ones (specs/file-profile.md §5, "Speed").

    writer = WriteBehind(upload.write_chunks)
    async for chunk, _ in request.content.iter_chunks():
        await writer.add(chunk)
    await writer.flush()          # every byte handed over is written (errors raised here)
    ...
    writer.settle()               # on the way out of an interrupted transfer: keep what arrived

At most one batch (``FILE_WRITE_BATCH`` bytes) is in the worker and one fills on the loop, so a
transfer holds at most twice that in memory; batches are written in order (one in flight).
Without it, the loop waited for each write: receiving and writing took turns instead of
overlapping (profiled: a third of a PUT's wall time was the loop idle in ``epoll``).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
from collections.abc import Callable

from igrs.constants import FILE_IO_THREADS, FILE_WRITE_BATCH

Sink = Callable[[list[bytes]], object]

_executor: concurrent.futures.ThreadPoolExecutor | None = None


def io_executor() -> concurrent.futures.ThreadPoolExecutor:
    """The file transfers' worker threads (created on first use)."""
    global _executor
    if _executor is None:
        _executor = concurrent.futures.ThreadPoolExecutor(FILE_IO_THREADS, thread_name_prefix="igrs-file-io")
    return _executor


class WriteBehind:
    """Hands chunks to ``sink`` (run in a worker thread) in batches of ``batch`` bytes, one batch
    in flight; an exception of ``sink`` is raised by the next ``add`` or by ``flush``."""

    def __init__(self, sink: Sink, batch: int = FILE_WRITE_BATCH) -> None:
        self.sink = sink
        self.batch = batch
        self._pending: list[bytes] = []
        self._size = 0
        self._busy: concurrent.futures.Future[object] | None = None

    async def add(self, chunk: bytes) -> None:
        self._pending.append(chunk)
        self._size += len(chunk)
        if self._size >= self.batch:
            await self._hand_over()

    async def flush(self) -> None:
        """Hand over what is pending and wait until everything is written."""
        if self._pending:
            await self._hand_over()
        await self._wait()

    async def _hand_over(self) -> None:
        await self._wait()
        chunks, self._pending, self._size = self._pending, [], 0
        self._busy = io_executor().submit(self.sink, chunks)

    async def _wait(self) -> None:
        busy, self._busy = self._busy, None
        if busy is not None:
            # shielded: a cancelled transfer does not cancel a batch that has not started yet
            await asyncio.shield(asyncio.wrap_future(busy))

    def settle(self) -> None:
        """Synchronously finish the batch in flight and write the pending chunks, ignoring
        errors: the bytes that arrived before a transfer broke are kept (resumption starts
        after the last byte received). Blocks for at most two batches' writes."""
        busy, self._busy = self._busy, None
        if busy is not None:
            with contextlib.suppress(Exception):
                busy.result()
        chunks, self._pending, self._size = self._pending, [], 0
        if chunks:
            with contextlib.suppress(Exception):
                self.sink(chunks)


__all__ = ["WriteBehind", "io_executor"]
