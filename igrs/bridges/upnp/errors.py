"""UPnP error codes <-> IGRS return codes (specs/upnp-bridge.md §5). Public source: UPnP Device
Architecture 1.0 §3.2.2 (401, 402, 501), ContentDirectory:1 §2.5.4 (701-720),
AVTransport:1 §2.4 (701-718), RenderingControl:1 §2.4 (701, 702), ConnectionManager:1 §2.4 (706)."""

from __future__ import annotations

from async_upnp_client.exceptions import UpnpActionError

from igrs.constants import ReturnCode

INVALID_ACTION = 401
INVALID_ARGS = 402
ACTION_FAILED = 501
# ContentDirectory:1
NO_SUCH_OBJECT = 701
BAD_SEARCH_CRITERIA = 708
BAD_SORT_CRITERIA = 709
NO_SUCH_CONTAINER = 710
CANNOT_PROCESS = 720
# AVTransport:1
TRANSITION_NOT_AVAILABLE = 701
NO_CONTENTS = 702
SEEK_MODE_NOT_SUPPORTED = 710
ILLEGAL_SEEK_TARGET = 711
ILLEGAL_MIME_TYPE = 714
RESOURCE_NOT_FOUND = 716
PLAY_SPEED_NOT_SUPPORTED = 717
INVALID_INSTANCE_ID = 718
# ConnectionManager:1
INVALID_CONNECTION = 706
# RenderingControl:1
RCS_INVALID_INSTANCE_ID = 702


def fault(code: int, reason: str = "") -> UpnpActionError:
    """The exception an exposed action raises to answer with a SOAP fault of ``code``."""
    return UpnpActionError(error_code=code, error_desc=reason[:200] or None)


def cds_return_code(upnp_code: int | None) -> int:
    """The IGRS return code of a ContentDirectory error from a DLNA server."""
    if upnp_code in (NO_SUCH_OBJECT, NO_SUCH_CONTAINER):
        return ReturnCode.NOT_FOUND
    if upnp_code in (INVALID_ARGS, BAD_SEARCH_CRITERIA, BAD_SORT_CRITERIA, 600, 601):
        return ReturnCode.BAD_MESSAGE
    if upnp_code == INVALID_ACTION:
        return ReturnCode.NOT_FOUND
    return ReturnCode.INTERNAL_ERROR


def avt_return_code(upnp_code: int | None) -> int:
    """The IGRS return code of an AVTransport/RenderingControl error from a DLNA renderer."""
    if upnp_code in (TRANSITION_NOT_AVAILABLE, NO_CONTENTS):
        return ReturnCode.PRECONDITION_FAILED
    if upnp_code in (INVALID_ARGS, ILLEGAL_SEEK_TARGET, ILLEGAL_MIME_TYPE, SEEK_MODE_NOT_SUPPORTED, 600, 601):
        return ReturnCode.BAD_MESSAGE
    if upnp_code in (RESOURCE_NOT_FOUND, INVALID_ACTION):
        return ReturnCode.NOT_FOUND
    return ReturnCode.INTERNAL_ERROR
