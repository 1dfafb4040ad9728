"""HTTP-shaped framing: HTTPU/HTTPMU datagrams and M-POST messages (RFC 2774 extensions).

Strict on size (every limit in igrs.constants), liberal on spelling: header names are
case-insensitive, bare LF line ends are accepted, extension prefixes are resolved from the
``MAN`` declarations rather than assumed.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from igrs.constants import (
    IGRS_EXT_URI,
    IGRS_EXT_URI_ALT,
    MAX_HEADER_LINE,
    MAX_HEADERS,
    MAX_HTTP_BODY,
)
from igrs.errors import LimitExceeded, ProtocolError

_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+\Z")
_MAN = re.compile(r'\s*"([^"]{1,256})"\s*(?:;\s*ns\s*=\s*([0-9]{2}))?\s*\Z', re.ASCII)
_REQUEST_LINE = re.compile(r"([A-Z][A-Z-]{0,15}) (\S{1,512}) HTTP/([0-9])\.([0-9])\Z", re.ASCII)
_STATUS_LINE = re.compile(r"HTTP/([0-9])\.([0-9]) ([0-9]{3})(?: (.{0,128}))?\Z", re.ASCII)
SOAP_EXT_PREFIX = "02"


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
        prefixes = self.extension_prefixes()
        return prefixes.get(IGRS_EXT_URI) or prefixes.get(IGRS_EXT_URI_ALT) or "01"

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


def parse_head(raw: bytes) -> tuple[str, Headers]:
    """Parse a start line and header block (no body); limits are counted in bytes."""
    raw_lines = raw.split(b"\n")
    if len(raw_lines) - 1 > MAX_HEADERS:
        raise LimitExceeded(f"more than {MAX_HEADERS} header lines")
    if max(map(len, raw_lines)) > MAX_HEADER_LINE:  # exact check (a CR does not count) only then
        lengths = [len(line) - line.endswith(b"\r") for line in raw_lines]
        if lengths[0] > MAX_HEADER_LINE:
            raise LimitExceeded("start line too long")
        if max(lengths) > MAX_HEADER_LINE:
            raise LimitExceeded(f"header line longer than {MAX_HEADER_LINE} bytes")
    lines = _decode(raw).replace("\r\n", "\n").split("\n")
    start = lines[0]
    items: list[tuple[str, str]] = []
    index: dict[str, list[str]] = {}
    token, ctl = _TOKEN.match, _CTL.search
    for line in lines[1:]:
        if not line:
            continue
        if line[0] in " \t":
            raise ProtocolError("obsolete header line folding")
        name, sep, value = line.partition(":")
        if not sep or not token(name):
            raise ProtocolError(f"malformed header line: {line[:40]!r}")
        if ctl(value):
            raise ProtocolError(f"control character in header {name}")
        value = value.strip()
        items.append((name, value))
        key = name.lower()
        if key in index:
            index[key].append(value)
        else:
            index[key] = [value]
    return start, Headers._built(items, index)


def parse_message(data: bytes, *, max_size: int, allow_body: bool) -> HttpMessage:
    """Parse one HTTP-shaped message from ``data``; raise ProtocolError with a reason."""
    if len(data) > max_size:
        raise LimitExceeded(f"message of {len(data)} bytes exceeds {max_size}")
    if not data:
        raise ProtocolError("empty message")
    raw_head, body = _split_head(data)
    start, headers = parse_head(raw_head)
    if m := _REQUEST_LINE.match(start):
        method, target, status, reason = m.group(1), m.group(2), None, ""
        version = f"{m.group(3)}.{m.group(4)}"
    elif m := _STATUS_LINE.match(start):
        method, target, reason = None, None, m.group(4) or ""
        status = int(m.group(3))
        version = f"{m.group(1)}.{m.group(2)}"
    else:
        raise ProtocolError(f"malformed start line: {start[:60]!r}")
    if version[0] != "1":
        raise ProtocolError(f"unsupported HTTP version {version}")
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
