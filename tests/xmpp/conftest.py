"""Fixtures for the XMPP binding tests: a throw-away Prosody or ejabberd per test module.

``xmpp_server`` is parametrized over both servers (tests/xmpp/servers.py); accounts are
created per test with unique names, so one server serves a whole module.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from servers import RESUME_WINDOW, Server, start_server

KINDS = ["prosody", "ejabberd"]


@pytest.fixture(scope="module", params=KINDS)
def xmpp_server(request: pytest.FixtureRequest) -> Iterator[Server]:
    server = start_server(request.param, resume_window=RESUME_WINDOW)
    try:
        yield server
    finally:
        server.close()
