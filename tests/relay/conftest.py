"""Fixtures for relay tests: a real node on 127.0.0.1 with TLS, and registered parties."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from relay_helpers import World, make_node
from support import closing

from igrs.relay import RelayNode


@pytest.fixture
async def node(tmp_path: Path) -> AsyncIterator[RelayNode]:
    async with make_node(tmp_path / "state") as n:
        yield n


@pytest.fixture
async def world(node: RelayNode) -> AsyncIterator[World]:
    async with closing(World(node)) as w:
        yield w
