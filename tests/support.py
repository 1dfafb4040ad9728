"""Helpers any test may import (``from support import skip_or_fail``); ``tests/`` is on
sys.path (tests/conftest.py puts it there).

Shared helpers live in uniquely named modules like this one, never in a conftest.py: every
conftest.py is imported under the one name ``conftest``, so ``from conftest import ...``
gets whichever was imported last and breaks when folders are collected in another order.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import AsyncIterator
from typing import Protocol, TypeVar

import pytest

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def skip_or_fail(reason: str) -> None:
    """Skip with reason on a developer machine; fail under CI where it must not happen."""
    if IN_CI:
        pytest.fail(f"CI must have this: {reason}", pytrace=False)
    pytest.skip(reason)


class _Closable(Protocol):
    async def close(self) -> None: ...


C = TypeVar("C", bound=_Closable)


@contextlib.asynccontextmanager
async def closing(obj: C) -> AsyncIterator[C]:
    """``obj``, closed (``await obj.close()``) on the way out: the body of the fixtures that
    yield a World, an XWorld or a group of clients."""
    try:
        yield obj
    finally:
        await obj.close()


def stop(proc: subprocess.Popen[str], timeout: float = 10) -> None:
    """Terminate proc and reap it; kill it if it has not ended within timeout seconds."""
    proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)
