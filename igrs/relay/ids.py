"""Relay principals: RA users and RA devices (IGRS 2.0 remote access).

Devices keep their IGRS device id (``urn:IGRS:Device:DeviceId:<uuid>``, igrs.wire.ids).
Users get ``urn:IGRS:User:UserId:<uuid>`` (project choice: the public record names RA users
but not the form of their identifier). On the wire both travel as the 16 raw UUID bytes;
the frame flags say which kind each one is (specs/relay.md, "Frame layout").
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from enum import Enum
from typing import Self
from uuid import UUID

from igrs.constants import MAX_ID_LENGTH
from igrs.errors import ProtocolError
from igrs.wire.ids import DEVICE_ID_PREFIX, DeviceId

USER_ID_PREFIX = "urn:IGRS:User:UserId:"  # project choice


class Kind(Enum):
    USER = "user"
    DEVICE = "device"


@dataclass(frozen=True, slots=True, order=True)
class Principal:
    """A party the relay knows: an RA user or an RA device."""

    kind: Kind
    uuid: UUID

    @classmethod
    def user(cls, u: UUID | None = None) -> Self:
        return cls(Kind.USER, u or uuid.uuid4())

    @classmethod
    def device(cls, d: DeviceId | UUID | None = None) -> Self:
        if isinstance(d, DeviceId):
            return cls(Kind.DEVICE, d.uuid)
        return cls(Kind.DEVICE, d or uuid.uuid4())

    @classmethod
    def parse(cls, text: str) -> Self:
        text = text.strip()
        if len(text) > MAX_ID_LENGTH:
            raise ProtocolError("principal id too long")
        low = text.lower()
        if low.startswith(USER_ID_PREFIX.lower()):
            try:
                return cls(Kind.USER, uuid.UUID(text[len(USER_ID_PREFIX) :]))
            except ValueError:
                raise ProtocolError(f"user id has no valid UUID: {text[:60]!r}") from None
        if low.startswith(DEVICE_ID_PREFIX.lower()):
            return cls(Kind.DEVICE, DeviceId.parse(text).uuid)
        raise ProtocolError(f"not a user or device id: {text[:60]!r}")

    @property
    def is_user(self) -> bool:
        return self.kind is Kind.USER

    @property
    def device_id(self) -> DeviceId:
        if self.kind is not Kind.DEVICE:
            raise ProtocolError(f"{self} is not a device")
        return DeviceId(self.uuid)

    @property
    def key(self) -> str:
        """Compact form used as a storage key / subject token (32 hex digits)."""
        return self.uuid.hex

    def __str__(self) -> str:
        if self.kind is Kind.USER:
            return f"{USER_ID_PREFIX}{self.uuid}"
        return f"{DEVICE_ID_PREFIX}{self.uuid}"
