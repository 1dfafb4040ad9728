"""Validated identifier types (specs/identifiers.md)."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field
from typing import Self

from igrs.constants import MAX_ID_LENGTH, MAX_NAME_LENGTH, ReturnCode
from igrs.errors import ProtocolError

DEVICE_ID_PREFIX = "urn:IGRS:Device:DeviceId:"  # public source: ezbox
SERVICE_SECURITY_PREFIX = "urn:IGRS:ServiceSecurity:"  # public source: ezbox
DEVICE_TYPE_PREFIX = "urn:IGRS:DeviceType:"  # project choice
SERVICE_TYPE_PREFIX = "urn:IGRS:ServiceType:"  # project choice
DEVICE_GROUP_PREFIX = "urn:IGRS:DeviceGroup:"  # project choice

_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_.-]{0,63}\Z")
UINT32_MAX = 0xFFFF_FFFF
_IGRS_VERSION = re.compile(r"IGRS/([0-9]{1,3})\.([0-9]{1,3})\Z")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def check_name(name: str) -> str:
    """A friendly name every peer can decode: 1..MAX_NAME_LENGTH characters, no control
    characters, no surrounding spaces (a header would not keep them). ValueError otherwise:
    encoders refuse to emit what decoders refuse to read."""
    if not name or len(name) > MAX_NAME_LENGTH:
        raise ValueError(f"a name has 1 to {MAX_NAME_LENGTH} characters: {name[:40]!r}")
    if name != name.strip() or _CONTROL.search(name):
        raise ValueError(f"a name has no control characters or surrounding spaces: {name[:40]!r}")
    return name


def is_digits(text: str) -> bool:
    """ASCII digits only (``str.isdigit`` also accepts other scripts' digits)."""
    return text.isascii() and text.isdigit()


def check_igrs_version(text: str) -> None:
    """Accept ``IGRS/1.x``; another major version is refused with 505."""
    m = _IGRS_VERSION.match(text.strip())
    if not m:
        raise ProtocolError(f"malformed IGRSVersion {text[:20]!r}")
    if m.group(1) != "1":
        raise ProtocolError(f"unsupported IGRS version {text[:20]}",
                            return_code=ReturnCode.VERSION_NOT_SUPPORTED)


# The canonical UUID text, which every stack sends: DeviceId.parse builds the UUID from it
# without uuid.UUID's general parser. uuid.UUID keeps ``int`` and ``is_safe`` in slots; setting
# them is how the stdlib's own ``UUID._from_int`` (3.14) makes a UUID of a known 128-bit value.
_CANONICAL_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\Z")
_UUID_SET_INT = vars(uuid.UUID)["int"].__set__
_UUID_SET_SAFE = vars(uuid.UUID)["is_safe"].__set__
_SAFE_UNKNOWN = uuid.SafeUUID.unknown  # an enum member: slow to look up on every call


@dataclass(frozen=True, slots=True, order=True)
class DeviceId:
    """``urn:IGRS:Device:DeviceId:<uuid>`` (RFC 4122 UUID, lower-case canonical form)."""

    uuid: uuid.UUID
    # The URN text, computed once: ids are formatted into every header and AEAD tag input.
    _text: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_text", f"{DEVICE_ID_PREFIX}{self.uuid}")

    @classmethod
    def new(cls) -> Self:
        return cls(uuid.uuid4())

    @classmethod
    def parse(cls, text: str) -> DeviceId:
        if not _CANONICAL_DEVICE_ID.match(text):  # the form every stack sends goes straight on
            text = text.strip()
            if len(text) > MAX_ID_LENGTH:
                raise ProtocolError("device id too long")
            # Accept the prefix case-insensitively (URNs' NID is case-insensitive).
            if not text.startswith(DEVICE_ID_PREFIX) and text[:_PREFIX_LENGTH].lower() != _DEVICE_ID_LOWER:
                raise ProtocolError(f"not a device id: {text[:60]!r}")
            rest = text[_PREFIX_LENGTH:]
            if not _CANONICAL_UUID.match(rest):
                try:
                    return cls(uuid.UUID(rest))
                except ValueError:
                    raise ProtocolError(f"device id has no valid UUID: {text[:60]!r}") from None
            text = DEVICE_ID_PREFIX + rest
        return canonical_device_id(text)

    def __str__(self) -> str:
        return self._text

    def __hash__(self) -> int:
        # uuid.UUID's own hash (of its int), without the generated hash((self.uuid,)) and the
        # Python-level UUID.__hash__ call behind it: ids are the keys of every registry (pipes,
        # sessions, discovery). Deterministic across runs, as before (not the text's hash).
        return hash(self.uuid.int)

    @property
    def short(self) -> str:
        return str(self.uuid)[:8]


def is_empty_device_id(text: str) -> bool:
    """An empty device-id header: nothing, or the bare prefix (``urn:IGRS:Device:DeviceId:``),
    as ezbox's InvokeServiceResponse writes it (ezbox-dialect.md). Only answers may carry it:
    the receiver then takes the id its request was sent to (messages.md §3)."""
    text = text.strip()
    return not text or text.lower() == _DEVICE_ID_LOWER


# The source of an answer that named no device (empty headers) to a request that named no target
# (sent by address only, e.g. to fetch the description of a peer found without discovery): the
# RFC 4122 nil UUID. Never a real device's id (DeviceId.new() draws version-4 UUIDs).
UNKNOWN_DEVICE = DeviceId(uuid.UUID(int=0))

def canonical_device_id(text: str) -> DeviceId:
    """The DeviceId of ``text``, known to be canonical (``DEVICE_ID_PREFIX`` and a lower-case
    UUID in its 8-4-4-4-12 form): the UUID of its 32 hex digits, without uuid.UUID's general
    parser nor the dataclass's __init__ (same objects: tests/unit/test_wire_fast_paths.py)."""
    u = _new(uuid.UUID)
    _UUID_SET_INT(u, int(text[_PREFIX_LENGTH:].replace("-", ""), 16))
    _UUID_SET_SAFE(u, _SAFE_UNKNOWN)
    parsed = _new(DeviceId)
    _DEVICE_ID_SET_UUID(parsed, u)
    _DEVICE_ID_SET_TEXT(parsed, text)  # = f"{DEVICE_ID_PREFIX}{u}"
    return parsed


_new = object.__new__
_DEVICE_ID_SET_UUID = vars(DeviceId)["uuid"].__set__  # frozen: __setattr__ refuses
_DEVICE_ID_SET_TEXT = vars(DeviceId)["_text"].__set__
_DEVICE_ID_LOWER = DEVICE_ID_PREFIX.lower()
_PREFIX_LENGTH = len(DEVICE_ID_PREFIX)
_CANONICAL_DEVICE_ID = re.compile(re.escape(DEVICE_ID_PREFIX) + _CANONICAL_UUID.pattern)


def _typed_urn(prefix: str, kind: str, text: str) -> tuple[str, int]:
    if len(text) > MAX_ID_LENGTH or not text.lower().startswith(prefix.lower()):
        raise ProtocolError(f"not a {kind} URN: {text[:60]!r}")
    rest = text[len(prefix) :]
    name, sep, version = rest.rpartition(":")
    if not sep or not _NAME.match(name) or not is_digits(version) or len(version) > 4:
        raise ProtocolError(f"malformed {kind} URN: {text[:60]!r}")
    return name, int(version)


@dataclass(frozen=True, slots=True)
class DeviceType:
    """``urn:IGRS:DeviceType:<Name>:<version>``, e.g. TV, PC, MobilePhone, MediaServer."""

    name: str
    version: int = 1

    @classmethod
    def parse(cls, text: str) -> Self:
        """Parse a URN, or accept a bare name such as ``TV`` (version 1)."""
        text = text.strip()
        if _NAME.match(text):
            return cls(text, 1)
        name, version = _typed_urn(DEVICE_TYPE_PREFIX, "device type", text)
        return cls(name, version)

    def __str__(self) -> str:
        return f"{DEVICE_TYPE_PREFIX}{self.name}:{self.version}"

    def satisfies(self, wanted: DeviceType) -> bool:
        """A device of version N also answers searches for versions below N."""
        return self.name == wanted.name and self.version >= wanted.version


@dataclass(frozen=True, slots=True)
class ServiceType:
    """``urn:IGRS:ServiceType:<Name>:<version>``."""

    name: str
    version: int = 1

    @classmethod
    def parse(cls, text: str) -> Self:
        name, version = _typed_urn(SERVICE_TYPE_PREFIX, "service type", text.strip())
        return cls(name, version)

    def __str__(self) -> str:
        return f"{SERVICE_TYPE_PREFIX}{self.name}:{self.version}"


def parse_uint32(text: str, field: str, *, allow_zero: bool = False) -> int:
    """Client, service, sequence and acknowledge ids: unsigned 32-bit, 0 reserved."""
    text = text.strip()
    if not is_digits(text) or len(text) > 10:
        raise ProtocolError(f"{field} is not an unsigned integer: {text[:20]!r}")
    value = int(text)
    if value > UINT32_MAX or (value == 0 and not allow_zero):
        raise ProtocolError(f"{field} out of range: {value}")
    return value
