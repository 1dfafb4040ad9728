"""HTTP-shaped framing: HTTPU/HTTPMU datagrams and M-POST messages (RFC 2774 extensions).

Strict on size (every limit in igrs.constants), liberal on spelling: header names are
case-insensitive, bare LF line ends are accepted, extension prefixes are resolved from the
``MAN`` declarations rather than assumed.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import NoReturn

from igrs.constants import (
    IGRS_EXT_URI,
    IGRS_EXT_URI_ALT,
    MAX_HEADER_LINE,
    MAX_HEADERS,
    MAX_HTTP_BODY,
)
from igrs.errors import LimitExceeded, ProtocolError
from igrs.wire.memo import Memo

_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+\Z")
_MAN = re.compile(r'\s*"([^"]{1,256})"\s*(?:;\s*ns\s*=\s*([0-9]{2}))?\s*\Z', re.ASCII)
_REQUEST_LINE = re.compile(r"([A-Z][A-Z-]{0,15}) (\S{1,512}) HTTP/([0-9])\.([0-9])\Z", re.ASCII)
_STATUS_LINE = re.compile(r"HTTP/([0-9])\.([0-9]) ([0-9]{3})(?: (.{0,128}))?\Z", re.ASCII)
SOAP_EXT_PREFIX = "02"
_MEMO_MAX = 64  # entries of each small memo below
_IGRS_PREFIXES: Memo[tuple[str, ...], str] = Memo(_MEMO_MAX)  # MAN values -> IGRS extension prefix
_igrs_prefix_of = _IGRS_PREFIXES.get  # bound once: as fast as a plain dict's get


class Headers:
    """An ordered, case-insensitive multi-map of header fields."""

    __slots__ = ("_index", "_items")

    def __init__(self, items: Iterable[tuple[str, str]] = ()) -> None:
        self._items: list[tuple[str, str]] = []
        self._index: dict[str, list[str]] = {}
        for name, value in items:
            self.add(name, value)

    @classmethod
    def _built(cls, items: list[tuple[str, str]], index: dict[str, list[str]]) -> Headers:
        """From already-split fields (the parser's fast path)."""
        headers = cls.__new__(cls)
        headers._items, headers._index = items, index
        return headers

    def add(self, name: str, value: str) -> None:
        self._items.append((name, value))
        self._index.setdefault(name.lower(), []).append(value)

    def get(self, name: str, default: str | None = None) -> str | None:
        values = self._index.get(name.lower())
        return values[0] if values else default

    def get_all(self, name: str) -> list[str]:
        return list(self._index.get(name.lower(), ()))

    def one(self, name: str) -> str:
        """The single value of a header that must appear exactly once."""
        values = self._index.get(name.lower())
        if not values:
            raise ProtocolError(f"missing header {name}")
        if len(values) > 1:
            raise ProtocolError(f"header {name} repeated")
        return values[0]

    def optional_one(self, name: str) -> str | None:
        values = self._index.get(name.lower())
        if values and len(values) > 1:
            raise ProtocolError(f"header {name} repeated")
        return values[0] if values else None

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._index

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        return f"Headers({self._items!r})"

    # --- RFC 2774 extension declarations -------------------------------------------------
    def extension_prefixes(self) -> dict[str, str]:
        """Map declared extension URI -> two-digit prefix, from every ``MAN`` header."""
        prefixes: dict[str, str] = {}
        for value in self.get_all("MAN"):
            m = _MAN.match(value)
            if m and m.group(2):
                prefixes[m.group(1)] = m.group(2)
        return prefixes

    def igrs_prefix(self) -> str:
        """The prefix the sender declared for the IGRS extension ("01" if undeclared)."""
        mans = self._index.get("man")
        if not mans:
            return "01"
        key = tuple(mans)  # peers repeat the same declarations: remember the answer
        prefix = _igrs_prefix_of(key)
        if prefix is None:
            prefixes = self.extension_prefixes()
            found = prefixes.get(IGRS_EXT_URI) or prefixes.get(IGRS_EXT_URI_ALT) or "01"
            prefix = _IGRS_PREFIXES.remember(key, found)
        return prefix

    def soap_prefix(self) -> str:
        prefixes = self.extension_prefixes()
        for uri, prefix in prefixes.items():
            if "soap-envelope" in uri:
                return prefix
        return SOAP_EXT_PREFIX


@dataclass(frozen=True, slots=True)
class HttpMessage:
    """A parsed request (``method`` set) or response (``status`` set)."""

    method: str | None
    target: str | None
    status: int | None
    reason: str
    headers: Headers
    body: bytes = b""
    version: str = "1.1"
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def is_request(self) -> bool:
        return self.method is not None


def _decode(data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ProtocolError(f"not UTF-8 at byte {exc.start}") from None


def _split_head(data: bytes) -> tuple[bytes, bytes]:
    for sep in (b"\r\n\r\n", b"\n\n"):
        idx = data.find(sep)
        if idx >= 0:
            return data[:idx], data[idx + len(sep) :]
    return data, b""


_CTL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
# The bytes _CTL finds in a header line, plus CR (allowed only in CRLF): none in the whole head
# (their count equals the number of CRLFs) lets parse_head skip the per-line control check.
_CTL_BYTES = bytes([*range(0x09), *range(0x0B, 0x20), 0x7F])
# One well-formed header line: token, colon, a value without control characters (tab allowed).
# Lines it does not match go through _refuse_line, which names the problem.
_FIELD = re.compile(r"([!#$%&'*+\-.^_`|~0-9A-Za-z]+):([^\x00-\x08\x0a-\x1f\x7f]*)\Z")
# Header names already found to be tokens -> their lower-case key. Peers send a few dozen.
_NAME_KEYS: Memo[str, str] = Memo(512)
_name_key_of = _NAME_KEYS.get


def _refuse_line(line: str) -> NoReturn:
    """Raise the reason a non-empty header line is refused (it did not match _FIELD)."""
    if line[0] in " \t":
        raise ProtocolError("obsolete header line folding")
    name, sep, value = line.partition(":")
    if sep and _TOKEN.match(name) and _CTL.search(value):
        raise ProtocolError(f"control character in header {name}")
    raise ProtocolError(f"malformed header line: {line[:40]!r}")


def _name_key(line: str, name: str, sep: str) -> str:
    """The key of a header name not seen before; refuse the line if there is no token name."""
    if not sep or not _TOKEN.match(name):
        _refuse_line(line)
    return _NAME_KEYS.remember(name, name.lower())


def parse_head(raw: bytes) -> tuple[str, Headers]:
    """Parse a start line and header block (no body); limits are counted in bytes."""
    newlines = raw.count(b"\n")
    if newlines > MAX_HEADERS:
        raise LimitExceeded(f"more than {MAX_HEADERS} header lines")
    if len(raw) > MAX_HEADER_LINE:  # else no line can be too long
        lengths = [len(line) - line.endswith(b"\r") for line in raw.split(b"\n")]  # a CR does not count
        if lengths[0] > MAX_HEADER_LINE:
            raise LimitExceeded("start line too long")
        if max(lengths) > MAX_HEADER_LINE:
            raise LimitExceeded(f"header line longer than {MAX_HEADER_LINE} bytes")
    crlfs = raw.count(b"\r\n")
    text = _decode(raw)
    lines = text.split("\r\n") if crlfs == newlines else text.replace("\r\n", "\n").split("\n")
    items: list[tuple[str, str]] = []
    index: dict[str, list[str]] = {}
    if len(raw) - len(raw.translate(None, _CTL_BYTES)) != crlfs:
        # A control character (or a bare CR) somewhere: check line by line, as _refuse_line says.
        field = _FIELD.match
        for line in lines[1:]:
            m = field(line)
            if m is None:
                if not line:
                    continue
                _refuse_line(line)
            name, value = m.groups()
            value = value.strip()
            items.append((name, value))
            index.setdefault(name.lower(), []).append(value)
        return lines[0], Headers._built(items, index)
    known = _name_key_of
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        key = known(name)
        if key is None or not sep:
            if not line:
                continue
            key = _name_key(line, name, sep)
        value = value.strip()
        items.append((name, value))
        index.setdefault(key, []).append(value)
    return lines[0], Headers._built(items, index)


# start line -> (method, target, status, reason, version); a handful of distinct lines in practice.
_START_LINES: Memo[str, tuple[str | None, str | None, int | None, str, str]] = Memo(_MEMO_MAX)
_start_line_of = _START_LINES.get


def _parse_start(start: str) -> tuple[str | None, str | None, int | None, str, str]:
    parsed = _start_line_of(start)
    if parsed is not None:
        return parsed
    if m := _REQUEST_LINE.match(start):
        parsed = (m.group(1), m.group(2), None, "", f"{m.group(3)}.{m.group(4)}")
    elif m := _STATUS_LINE.match(start):
        parsed = (None, None, int(m.group(3)), m.group(4) or "", f"{m.group(1)}.{m.group(2)}")
    else:
        raise ProtocolError(f"malformed start line: {start[:60]!r}")
    if parsed[4][0] != "1":
        raise ProtocolError(f"unsupported HTTP version {parsed[4]}")
    return _START_LINES.remember(start, parsed)


def parse_parts(
    data: bytes, *, max_size: int, allow_body: bool
) -> tuple[str | None, str | None, int | None, str, str, Headers, bytes]:
    """``parse_message`` as a tuple (method, target, status, reason, version, headers, body),
    for callers that take the message apart at once (the ISDP decoder)."""
    if len(data) > max_size:
        raise LimitExceeded(f"message of {len(data)} bytes exceeds {max_size}")
    if not data:
        raise ProtocolError("empty message")
    raw_head, body = _split_head(data)
    start, headers = parse_head(raw_head)
    method, target, status, reason, version = _parse_start(start)
    length_text = headers.optional_one("Content-Length")
    if length_text is not None:
        if not (length_text.isascii() and length_text.isdigit()) or len(length_text) > 9:
            raise ProtocolError("malformed Content-Length")
        length = int(length_text)
        if length > MAX_HTTP_BODY:
            raise LimitExceeded(f"body of {length} bytes exceeds {MAX_HTTP_BODY}")
        if len(body) < length:
            raise ProtocolError("truncated body")
        body = body[:length]
    if body and not allow_body:
        raise ProtocolError("unexpected body in datagram")
    return method, target, status, reason, version, headers, body


def parse_message(data: bytes, *, max_size: int, allow_body: bool) -> HttpMessage:
    """Parse one HTTP-shaped message from ``data``; raise ProtocolError with a reason."""
    method, target, status, reason, version, headers, body = parse_parts(
        data, max_size=max_size, allow_body=allow_body
    )
    return HttpMessage(method, target, status, reason, headers, body, version)


def build_message(
    start_line: str, headers: Iterable[tuple[str, str]], body: bytes = b""
) -> bytes:
    """Serialise a message; ``Content-Length`` is added when there is a body."""
    parts = [start_line]
    for name, value in headers:
        if "\r" in value or "\n" in value:
            raise ValueError(f"line break in header {name}")
        parts.append(f"{name}: {value}")
    if body:
        parts.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(parts) + "\r\n\r\n").encode("utf-8") + body


def man_header(uri: str, prefix: str) -> tuple[str, str]:
    return ("MAN", f'"{uri}"; ns={prefix}')
