"""Helpers any test may import (``from support import skip_or_fail``); ``tests/`` is on
sys.path (tests/conftest.py puts it there).

Shared helpers live in uniquely named modules like this one, never in a conftest.py: every
conftest.py is imported under the one name ``conftest``, so ``from conftest import ...``
gets whichever was imported last and breaks when folders are collected in another order.
"""

from __future__ import annotations

import os

import pytest

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def skip_or_fail(reason: str) -> None:
    """Skip with reason on a developer machine; fail under CI where it must not happen."""
    if IN_CI:
        pytest.fail(f"CI must have this: {reason}", pytrace=False)
    pytest.skip(reason)
