"""Which messages may arrive unsealed: the one table of specs/pipes.md §1.

A message arrives *sealed* (in a secure pipe, so from a paired device) or *unsealed* (outside
any pipe, or in a non-secure pipe). Discovery, the device description, pipe set-up and the
pairing extension are ``Access.OPEN``: served either way. Every other message is
``Access.PAIRED``: served only sealed; unsealed it is answered 401 (after the 501 check, so a
device still tells what it does not implement at all). The ``Device`` (every message it is
sent) and a ``ServiceHost`` used on its own apply this same table, so one request gets one
answer either way.

``Access`` is also the word for how a service is shared: by default ``PAIRED``; a device owner
may share one ``OPEN`` (``Device.add_service(svc, access="open")``, for pipe-less legacy peers,
which can never pair). The messages addressed to one service -- ``SERVICE_ADDRESSED``, each
naming it by its service id -- then arrive unsealed for that service only; everything else
keeps this table's entry. The same ``check_access`` decides both (specs/pipes.md §1).
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


# Project choice (specs/pipes.md §1): the messages addressed to one service by its id, all a
# pipe-less peer needs to use it -- open and end a session, invoke, read the WSDL. Not the
# session-key messages (they need a secure pipe's key material) nor the events (delivered
# sealed only), nor service search (the description already lists the services).
SERVICE_ADDRESSED: Final[frozenset[str]] = frozenset({
    "CreateSessionRequest", "DestroySessionNotify",  # 10.5
    "InvokeServiceRequest",  # 10.6
    "GetServiceDescriptionRequest",  # 10.4
})


def access_of(message_type: str) -> Access:
    """How a message type may arrive: the table's entry, else ``Access.PAIRED``."""
    return MESSAGE_ACCESS.get(message_type, Access.PAIRED)


def check_access(message_type: str, *, sealed: bool, service: Access = Access.PAIRED) -> None:
    """Raise SecurityError 401 when ``message_type`` arrived unsealed and may not: neither the
    table admits it, nor is it addressed to a service shared ``OPEN`` (``service``: the access
    of the service it names, for the ``SERVICE_ADDRESSED`` types)."""
    if sealed or access_of(message_type) is Access.OPEN:
        return
    if service is Access.OPEN and message_type in SERVICE_ADDRESSED:
        return
    raise SecurityError(f"{message_type} needs a secure pipe", return_code=ReturnCode.NOT_AUTHENTICATED)


__all__ = ["MESSAGE_ACCESS", "SERVICE_ADDRESSED", "Access", "access_of", "check_access"]
