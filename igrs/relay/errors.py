"""Relay error codes (specs/relay.md, "Error codes") and the exception that carries them.

The codes follow the project's HTTP-like IGRS return codes (igrs.constants.ReturnCode);
the relay adds a few of its own in the same numbering style.
"""

from __future__ import annotations

from enum import IntEnum

from igrs.constants import ReturnCode
from igrs.errors import IGRSError


class RelayCode(IntEnum):
    OK = 200
    BAD_FRAME = 400  # malformed, truncated, unknown type, wrong direction, bad payload
    NOT_AUTHENTICATED = 401  # no/invalid token, or frame before AUTH
    FORBIDDEN = 403  # parties not related; bind refused (unknown device or wrong code)
    NOT_FOUND = 404  # unknown principal / item
    TARGET_OFFLINE = 410  # target not connected and the message was not durable
    CONFLICT = 409  # already registered / already bound
    TIMEOUT = 408  # AUTH or keep-alive not received in time
    TOO_LARGE = 413  # frame payload above max_frame_payload
    RATE_LIMITED = 429  # message rate, registration rate, or bind locked after failures
    FLOOD = 430  # per-connection frame flood: connection closed
    INTERNAL = 500
    SERVER_FULL = 503  # max connections (global or per principal) reached
    TARGET_BUSY = 504  # target's send buffer full (slow reader); not durable
    VERSION = 505  # unsupported frame version
    STORAGE_FULL = 507  # stored-message / item cap for the party, or the account cap
    NODE_STORAGE_FULL = 509  # node-wide cap on stored-message bytes reached
    GOING_AWAY = 600  # node shutting down: reconnect (elsewhere)


_RETURN_CODES = {c.value for c in ReturnCode}


class RelayError(IGRSError):
    """An error with a relay code; raised locally and sent as ERROR / GOAWAY frames."""

    def __init__(self, code: RelayCode | int, reason: str) -> None:
        rc = ReturnCode(code) if int(code) in _RETURN_CODES else ReturnCode.INTERNAL_ERROR
        super().__init__(reason, return_code=rc)
        try:
            self.code: RelayCode | int = RelayCode(code)
        except ValueError:
            self.code = int(code)

    def __str__(self) -> str:
        name = self.code.name if isinstance(self.code, RelayCode) else str(self.code)
        return f"{int(self.code)} {name}: {self.reason}"


class ConnectionClosed(RelayError):
    """The relay closed the connection (GOAWAY) or the transport was lost."""
