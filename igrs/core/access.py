"""Which messages may arrive unsealed: the one table of specs/pipes.md §1.

A message arrives *sealed* (in a secure pipe, so from a paired device) or *unsealed* (outside
any pipe, or in a non-secure pipe). Discovery, the device description, pipe set-up and the
pairing extension are ``Access.OPEN``: served either way. Every other message is
``Access.PAIRED``: served only sealed; unsealed it is answered 401 (after the 501 check, so a
device still tells what it does not implement at all). The ``Device`` (every message it is
sent) and a ``ServiceHost`` used on its own apply this same table, so one request gets one
answer either way.

``Access`` is also the word for how a resource is shared: a later per-service opt-in
(``add_service(svc, access=Access.OPEN)`` for pipe-less legacy peers) would admit the
messages addressed to that one service as ``OPEN`` ones, without touching this table.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from types import MappingProxyType
from typing import Final

from igrs.constants import ReturnCode
from igrs.errors import SecurityError


class Access(StrEnum):
    OPEN = "open"  # served unsealed too: outside any pipe, in a non-secure pipe, in a secure one
    PAIRED = "paired"  # served only sealed in a secure pipe (so only to a paired device)


# Project choice (specs/pipes.md §1): what an unpaired peer needs to find, describe, pair and
# open a pipe; clause 9.4 serves the description over a non-secure pipe.
MESSAGE_ACCESS: Final[Mapping[str, Access]] = MappingProxyType(dict.fromkeys((
    "GetDeviceDescriptionRequest",  # 9.3 / 9.4
    "SearchDeviceRequestOnDevice",  # 9.6
    "CreatePipeRequest", "AuthenticateRequest", "AuthenticateResultRequest",  # 9.2 set-up
    "CreatePipeResultRequest",
    "DetachPipeNotify",  # 9.2: closes a non-secure pipe too
    "DeviceOnlineDetectionRequest",  # 9.2: the keep-alive of a non-secure pipe
    "PairingModeRequest", "PairingStartRequest", "PairingConfirmRequest",  # pairing extension
), Access.OPEN))


def access_of(message_type: str) -> Access:
    """How a message type may arrive: the table's entry, else ``Access.PAIRED``."""
    return MESSAGE_ACCESS.get(message_type, Access.PAIRED)


def check_access(message_type: str, *, sealed: bool) -> None:
    """Raise SecurityError 401 when ``message_type`` arrived unsealed and may not."""
    if not sealed and access_of(message_type) is not Access.OPEN:
        raise SecurityError(f"{message_type} needs a secure pipe", return_code=ReturnCode.NOT_AUTHENTICATED)


__all__ = ["MESSAGE_ACCESS", "Access", "access_of", "check_access"]
