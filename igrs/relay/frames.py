"""The relay frame: the one binary format of the project, declared once with ``construct``.

Layout (big-endian, 48-byte header; specs/relay.md "Frame layout")::

    version u8 | type u8 | flags u16 | id u64 | source 16B | target 16B | length u32 | payload

Sans-IO: :class:`FrameDecoder` is fed bytes and yields frames, or raises :class:`FrameError`
naming what was wrong, before buffering more than one header plus ``max_payload`` bytes.
"""

from __future__ import annotations

import struct
import uuid
from dataclasses import dataclass, field
from enum import IntEnum, IntFlag

import construct as c

from igrs.relay.errors import RelayCode, RelayError
from igrs.wire.memo import Memo

VERSION = 1
HEADER_SIZE = 48
NIL = uuid.UUID(int=0)


class FrameType(IntEnum):
    AUTH = 0x01  # c->s  JSON {id, token}
    AUTH_OK = 0x02  # s->c  JSON {id, node, limits}
    REQUEST = 0x03  # c->s  JSON {op, ...}
    RESPONSE = 0x04  # s->c  JSON result, id = request id
    ERROR = 0x05  # s->c  code u16 + reason, id = request id (0: none)
    GOAWAY = 0x06  # s->c  code u16 + reason; the relay closes after it
    PING = 0x07  # both
    PONG = 0x08  # both
    BYE = 0x09  # c->s  clean goodbye (presence goes offline at once)
    MESSAGE = 0x10  # c->s  point-to-point: target in header, payload namespace + body
    MULTICAST = 0x11  # c->s  point-to-multipoint: payload targets + namespace + body
    DELIVER = 0x12  # s->c  a message for you: source in header, id = stored id (durable)
    ACK = 0x13  # c->s  id = the DELIVER id of a durable message
    RECEIPT = 0x14  # s->c  JSON {status}, id = MESSAGE id (when ACK_REQUESTED)
    PRESENCE = 0x20  # s->c  JSON {id, online}
    NOTIFY = 0x21  # s->c  JSON relationship event {event, from, ...}


class Flags(IntFlag):
    NONE = 0
    DURABLE = 0x0001  # store until acknowledged (offline storage, at-least-once)
    ACK_REQUESTED = 0x0002  # sender wants a RECEIPT
    STORED = 0x0004  # on DELIVER: was stored (sender may be offline now); ACK it
    SOURCE_USER = 0x0100  # source uuid is a user (else a device, or nil)
    TARGET_USER = 0x0200  # target uuid is a user


# The flag bits as plain ints, for hot paths: ``IntFlag`` arithmetic runs Python-level
# ``__and__``/``__or__`` and makes a new member each time (a plain int on either side does
# not help: ``int & Flags.X`` calls ``Flags.__rand__``). Frames carry their flags as ints.
DURABLE = int(Flags.DURABLE)
ACK_REQUESTED = int(Flags.ACK_REQUESTED)
STORED = int(Flags.STORED)
SOURCE_USER = int(Flags.SOURCE_USER)
TARGET_USER = int(Flags.TARGET_USER)

_TYPES = frozenset(int(t) for t in FrameType)
CLIENT_TYPES = frozenset(
    {
        FrameType.AUTH,
        FrameType.REQUEST,
        FrameType.PING,
        FrameType.PONG,
        FrameType.BYE,
        FrameType.MESSAGE,
        FrameType.MULTICAST,
        FrameType.ACK,
    }
)
SERVER_TYPES = frozenset(
    {
        FrameType.AUTH_OK,
        FrameType.RESPONSE,
        FrameType.ERROR,
        FrameType.GOAWAY,
        FrameType.PING,
        FrameType.PONG,
        FrameType.DELIVER,
        FrameType.RECEIPT,
        FrameType.PRESENCE,
        FrameType.NOTIFY,
    }
)

Uuid: c.ExprAdapter[bytes, bytes, uuid.UUID, uuid.UUID] = c.ExprAdapter(
    c.Bytes(16),
    decoder=lambda obj, ctx: uuid.UUID(bytes=bytes(obj)),
    encoder=lambda obj, ctx: obj.bytes,
)

HEADER = c.Struct(
    "version" / c.Int8ub,
    "type" / c.Int8ub,
    "flags" / c.Int16ub,
    "id" / c.Int64ub,
    "source" / Uuid,
    "target" / Uuid,
    "length" / c.Int32ub,
)
FRAME = c.Struct("header" / HEADER, "payload" / c.Bytes(c.this.header.length))
assert HEADER.sizeof() == HEADER_SIZE


def _struct_format(decl: c.Struct) -> str:
    """The ``struct`` format equivalent to a flat construct Struct of fixed-size fields.

    The hot path packs and unpacks with it (0.2 us instead of ~30 us per header); it is
    derived from the one declaration above, so the two cannot drift apart (tests check it).
    """
    fmt = ">"
    for sub in decl.subcons:
        sc = sub.subcon if isinstance(sub, c.Renamed) else sub  # "name" / field
        while isinstance(sc, c.Adapter):
            sc = sc.subcon
        if isinstance(sc, c.FormatField):
            fmt += sc.fmtstr.lstrip("<>=!")
        elif isinstance(sc, c.Bytes) and isinstance(sc.length, int):
            fmt += f"{sc.length}s"
        else:  # pragma: no cover - the declaration is fixed
            raise TypeError(f"no struct equivalent for {sub.name}")
    return fmt


_HEADER_STRUCT = struct.Struct(_struct_format(HEADER))
assert _HEADER_STRUCT.size == HEADER_SIZE


class FrameError(RelayError):
    """Bytes that are not a valid frame: the connection that sent them is closed."""


@dataclass(slots=True)
class Frame:
    """One frame. Treat it as immutable; it is not ``frozen`` because a frozen dataclass
    sets each field through ``object.__setattr__`` in Python code, and the decoder makes one
    of these per received frame."""

    type: FrameType
    id: int = 0
    flags: int = 0  # Flags bits (a plain int when decoded)
    source: uuid.UUID = NIL
    target: uuid.UUID = NIL
    payload: bytes = field(default=b"", repr=False)
    version: int = VERSION

    def encode(self) -> bytes:
        return encode(self)


_pack = pack_header = _HEADER_STRUCT.pack  # (version, type, flags, id, source, target, length)
_pack_length = struct.Struct(">I").pack
TEMPLATE_SIZE = HEADER_SIZE - 4  # a header up to its length field


def encode(frame: Frame) -> bytes:
    return _pack(
        frame.version, frame.type, frame.flags, frame.id, frame.source.bytes,
        frame.target.bytes, len(frame.payload),
    ) + frame.payload


def template(ftype: FrameType, flags: int, source: uuid.UUID, target: uuid.UUID,
             fid: int = 0) -> bytes:
    """A frame header without its length: a frame that repeats (every message between the
    same two parties) is then ``template + length + payload``, see :func:`from_template`."""
    return _pack(VERSION, ftype, flags, fid, source.bytes, target.bytes, 0)[:TEMPLATE_SIZE]


def from_template(head: bytes, payload: bytes) -> bytes:
    return head + _pack_length(len(payload)) + payload


def decode(data: bytes, *, max_payload: int) -> Frame:
    """Decode exactly one frame (used by tests and tools); see :class:`FrameDecoder`."""
    dec = FrameDecoder(max_payload=max_payload)
    frames = list(dec.feed(data))
    if len(frames) != 1 or dec.buffered:
        raise FrameError(RelayCode.BAD_FRAME, "not exactly one frame")
    return frames[0]


# Hot-path lookups: a frame's type by code, and a memo of UUIDs (the same few principals
# repeat on a connection; a full memo empties itself, igrs.wire.memo).
_TYPE_BY_CODE: list[FrameType | None] = [None] * 256
for _t in FrameType:
    _TYPE_BY_CODE[_t] = _t
_UUIDS: Memo[bytes, uuid.UUID] = Memo(8192)
_uuid_get = _UUIDS.get
_unpack_from = _HEADER_STRUCT.unpack_from


def _uuid(raw: bytes) -> uuid.UUID:
    return _UUIDS.remember(raw, uuid.UUID(bytes=raw))


class FrameDecoder:
    """Incremental decoder. ``feed`` returns the whole frames; raises FrameError on bad input.

    Frames are cut straight out of the received chunk (one copy: the payload); only an
    incomplete tail is kept, and it is joined with the next chunks once they complete it
    (``_need``), so a large frame arriving in many chunks is copied once, not once per chunk.
    """

    __slots__ = ("_buf", "_need", "max_payload")

    def __init__(self, *, max_payload: int) -> None:
        self.max_payload = max_payload
        self._buf = bytearray()
        self._need = HEADER_SIZE  # bytes needed in _buf before the next frame can progress

    @property
    def buffered(self) -> int:
        return len(self._buf)

    def feed(self, data: bytes) -> list[Frame]:
        buf = self._buf
        if buf:
            buf += data
            if len(buf) < self._need:
                return []
            data = bytes(buf)
            self._buf = bytearray()
        out: list[Frame] = []
        off, end = 0, len(data)
        need = HEADER_SIZE
        while end - off >= HEADER_SIZE:
            if data[off] != VERSION:
                raise FrameError(RelayCode.VERSION, f"unsupported frame version {data[off]}")
            version, code, flags, fid, source, target, length = _unpack_from(data, off)
            ftype = _TYPE_BY_CODE[code]
            if ftype is None:
                raise FrameError(RelayCode.BAD_FRAME, f"unknown frame type 0x{code:02x}")
            if length > self.max_payload:
                raise FrameError(
                    RelayCode.TOO_LARGE,
                    f"frame payload {length} bytes exceeds the cap of {self.max_payload}",
                )
            start = off + HEADER_SIZE
            if end - start < length:
                need = HEADER_SIZE + length
                break
            off = start + length
            out.append(Frame(ftype, fid, flags, _uuid_get(source) or _uuid(source),
                             _uuid_get(target) or _uuid(target), data[start:off], version))
        if off < end:
            self._buf = bytearray(memoryview(data)[off:])
            self._need = need
        return out

    def at_eof(self) -> None:
        """Call when the peer closed: a partial frame left over is a truncation."""
        if self._buf:
            raise FrameError(RelayCode.BAD_FRAME, "truncated frame at end of stream")
