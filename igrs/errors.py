"""One exception hierarchy for the whole stack; each error carries an IGRS return code."""

from __future__ import annotations

from igrs.constants import ReturnCode


class IGRSError(Exception):
    """Base of every error the stack raises on purpose."""

    # A ReturnCode, or a plain int for a code defined by a profile (e.g. the File profile's).
    return_code: int = ReturnCode.INTERNAL_ERROR

    def __init__(self, reason: str, *, return_code: int | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        if return_code is not None:
            self.return_code = return_code


class ProtocolError(IGRSError):
    """Bytes or a message that do not follow the wire protocol (specs/)."""

    return_code = ReturnCode.BAD_MESSAGE


class LimitExceeded(ProtocolError):
    """Input larger or more numerous than a documented cap allows."""

    return_code = ReturnCode.BAD_MESSAGE


class UnknownMessage(ProtocolError):
    """A message type that is not in the catalogue."""


class NotImplementedMessage(IGRSError):
    """A catalogued message type this device does not serve."""

    return_code = ReturnCode.NOT_IMPLEMENTED


class SecurityError(IGRSError):
    return_code = ReturnCode.NOT_AUTHENTICATED


class IGRSTimeoutError(IGRSError, TimeoutError):
    return_code = ReturnCode.BUSY


class DeviceNotFound(IGRSError):
    return_code = ReturnCode.NOT_FOUND


class RemoteError(IGRSError):
    """The peer answered with a non-success return code."""
