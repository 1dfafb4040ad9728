"""Run a coroutine inline until it first suspends (asyncio's eager tasks, for Python 3.11).

Most frames a relay node handles never wait for anything (a message to a connected party
whose relation is cached): stepping the handler in the read callback saves a task, a queue
and a wake-up per frame. Only a handler that really suspends (a database write, a request)
becomes a task, continued by :class:`Continue` from where it stopped.
"""

from __future__ import annotations

from collections.abc import Coroutine, Generator
from typing import Any


def step(coro: Coroutine[Any, Any, Any]) -> tuple[bool, Any]:
    """Run ``coro`` until it finishes or suspends: ``(True, None)`` when it finished, else
    ``(False, what it yielded)`` for :class:`Continue`. Its exceptions propagate."""
    try:
        yielded = coro.send(None)
    except StopIteration:
        return True, None
    return False, yielded


class Continue:
    """``await Continue(coro, yielded)`` finishes a coroutine that :func:`step` started: it
    hands what the coroutine yielded (a future, or None for a bare yield) to the awaiting task
    and passes results, exceptions and cancellation back in, as ``yield from`` would."""

    __slots__ = ("_coro", "_yielded")

    def __init__(self, coro: Coroutine[Any, Any, Any], yielded: Any) -> None:
        self._coro = coro
        self._yielded = yielded

    def __await__(self) -> Generator[Any, Any, Any]:
        coro, yielded = self._coro, self._yielded
        while True:
            try:
                sent = yield yielded
            except GeneratorExit:
                coro.close()
                raise
            except BaseException as e:
                try:
                    yielded = coro.throw(e)
                except StopIteration as done:
                    return done.value
            else:
                try:
                    yielded = coro.send(sent)
                except StopIteration as done:
                    return done.value
