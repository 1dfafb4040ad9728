"""Fixtures for the XMPP binding tests: one throw-away Prosody and one ejabberd per test session.

``xmpp_server`` is parametrized over both servers (tests/xmpp/servers.py). Each kind is started
once, at first use, and shared by every module (an ejabberd costs ~3 s to start and ~3 s to
stop): accounts are created per test with unique names, and the component port is open with the
test secret (tests/xmpp/bindbed.py) so the bind component's tests use the same servers. A test
that restarts its server (test_xmpp_delivery) leaves it running with the same ports and data.
``prosody_server`` / ``ejabberd_server`` give one kind directly.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
from bindbed import SECRET
from servers import RESUME_WINDOW, Server, start_server
from support import closing
from xmpp_helpers import XWorld

KINDS = ["prosody", "ejabberd"]


def _serve(kind: str) -> Iterator[Server]:
    server = start_server(kind, component_secret=SECRET, resume_window=RESUME_WINDOW)
    try:
        yield server
    finally:
        server.close()


@pytest.fixture(scope="session")
def prosody_server() -> Iterator[Server]:
    yield from _serve("prosody")


@pytest.fixture(scope="session")
def ejabberd_server() -> Iterator[Server]:
    yield from _serve("ejabberd")


@pytest.fixture(scope="module", params=KINDS)
def xmpp_server(request: pytest.FixtureRequest) -> Server:
    server: Server = request.getfixturevalue(f"{request.param}_server")
    return server


@pytest.fixture
async def xw(xmpp_server: Server) -> AsyncIterator[XWorld]:
    """XmppClients on the module's server, closed at the end (tests may override it)."""
    async with closing(XWorld(xmpp_server)) as w:
        yield w
