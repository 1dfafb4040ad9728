"""HTTP/1.1 for the device's own server and client (sans-IO).

Server side: request heads in, answers out (igrs/net/httpserver.py); the rules (limits, which
fault gets which status) are in specs/transport.md, "HTTP server"; every fault raises
HttpError, nothing else. Client side: requests out, answers in pieces (ResponseReader, for
igrs/net/httpclient.py); every fault raises BadResponse, or LimitExceeded for a body over
the cap. Header bytes are read as ISO-8859-1: any byte sequence decodes, and the IGRS headers
are ASCII anyway.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from http import HTTPStatus
from typing import NoReturn
from urllib.parse import unquote, urlsplit

from igrs.constants import HTTP_MAX_HEAD, HTTP_MAX_HEADER_FIELDS, HTTP_MAX_LINE
from igrs.errors import LimitExceeded, ProtocolError
from igrs.wire.httpu import Headers
from igrs.wire.memo import Memo

_REQUEST_LINE = re.compile(
    r"([!#$%&'*+\-.^_`|~0-9A-Za-z]+) ([^\x00-\x20\x7f]+) HTTP/([0-9])\.([0-9])\Z", re.ASCII)
# token ":" value; a value holds no control character but HTAB (obs-text bytes are allowed)
_FIELD = r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+:[^\x00-\x08\x0a-\x1f\x7f]*"
_FIELDS = re.compile(rf"(?:{_FIELD}\r?\n)*")  # a whole header block, checked in one pass
_ONE_FIELD = re.compile(rf"{_FIELD}\Z")
_STATUS_LINE = re.compile(r"HTTP/([0-9])\.([0-9]) ([0-9]{3})(?: [^\x00-\x08\x0a-\x1f\x7f]*)?\Z")
_REASONS: dict[int, str] = {s.value: s.phrase for s in HTTPStatus}
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


class HttpError(ProtocolError):
    """A request the server refuses with ``status`` before any handler sees it; the
    connection is closed after that answer (its framing can no longer be trusted)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason, return_code=status)
        self.status = status


# Not frozen, for speed: made for every message (issue 15); never mutated, hashed as before.
@dataclass(slots=True, unsafe_hash=True)
class RequestHead:
    """A parsed request line and header block."""

    method: str
    target: str
    minor: int  # HTTP/1.<minor>
    headers: Headers
    content_length: int  # 0 when absent; not capped here (a mounted upload may be large)
    transfer_encoding: str | None
    keep_alive: bool
    expect_continue: bool

    @property
    def path(self) -> str:
        return request_path(self.target)


def find_head_end(buf: bytes | bytearray, scanned: int = 0) -> int:
    """The index just past the empty line that ends the request head at the start of
    ``buf`` (which starts with the request line), or -1 while the head is incomplete.
    ``scanned``: bytes an earlier call already searched (the search resumes there, so a
    head that trickles in costs linear time). HttpError 400 once the head outgrows
    HTTP_MAX_HEAD or its request line HTTP_MAX_LINE."""
    since = max(0, scanned - 2)
    crlf = buf.find(b"\n\r\n", since, HTTP_MAX_HEAD + 3)
    lf = buf.find(b"\n\n", since, HTTP_MAX_HEAD + 2 if crlf < 0 else crlf + 2)
    if lf >= 0:
        end = lf + 2
    elif crlf >= 0:
        end = crlf + 3
    elif len(buf) > HTTP_MAX_HEAD:
        raise HttpError(400, f"request head longer than {HTTP_MAX_HEAD} bytes")
    elif len(buf) > HTTP_MAX_LINE + 1 and buf.find(b"\n", 0, HTTP_MAX_LINE + 2) < 0:
        raise HttpError(400, f"request line longer than {HTTP_MAX_LINE} bytes")
    else:
        return -1
    if end > HTTP_MAX_HEAD:
        raise HttpError(400, f"request head longer than {HTTP_MAX_HEAD} bytes")
    return end


# The header names the stack itself writes (igrs/wire/messages.py, this module, the server's
# Date and Server lines), as it spells them -> their key in Headers' index.
_COMMON_NAMES: dict[str, str] = {name: name.lower() for name in (
    "Host", "MAN", "01-IGRSVersion", "01-IGRSMessageType", "01-SourceDeviceId", "01-TargetDeviceId",
    "01-SequenceId", "Content-Type", "02-SoapAction", "Content-Length", "Ext", "Cache-Control", "Date",
    "Server", "Connection")}


def _split_head(raw: bytes) -> tuple[str, Headers]:
    """The start line and header fields of a head, within the line and header caps."""
    common = _split_common(raw)
    return common if common is not None else _split_general(raw)


def _split_common(raw: bytes) -> tuple[str, Headers] | None:
    """_split_head of a head in the form the stack writes, else None (the general parser then
    accepts or refuses it): ASCII, every line ended by CRLF, no other control character (no
    HTAB), shorter than one line's cap, ``Name: value`` lines with names from _COMMON_NAMES.
    Such a head passes every check of the general parser, which would split it alike
    (tests/unit/test_http11_fast_paths.py). No control character but the CRLFs: the start
    line and each header line are printable ASCII (``str.isprintable``; a line remembered in
    _LINES was checked when it was first split), so the head's only controls are the CRLFs
    it was split at."""
    if len(raw) > HTTP_MAX_LINE or not raw.isascii() or not raw.endswith(b"\r\n\r\n"):
        return None
    parts = raw.decode("ascii").split("\r\n")  # the start line, the header lines, "", ""
    if len(parts) - 3 > HTTP_MAX_HEADER_FIELDS or not parts[0].isprintable():
        return None
    items: list[tuple[str, str]] = []
    index: dict[str, list[str]] = {}
    for line in parts[1:-2]:
        split = _line_of(line)  # most lines repeat from message to message: split once
        if split is None:
            split = _split_line(line)
            if split is None:
                return None
        item, key = split
        items.append(item)
        if key in index:
            index[key].append(item[1])
        else:
            index[key] = [item[1]]
    return parts[0], Headers._built(items, index)


_Line = tuple[tuple[str, str], str]  # (name, value), index key
_LINES: Memo[str, _Line] = Memo(256)  # header line -> its split (lines of _COMMON_NAMES only)
_line_of = _LINES.get
_EVERY_TIME_NEW = frozenset(("01-sequenceid", "content-length", "date"))  # not worth remembering


def _split_line(line: str) -> _Line | None:
    """``Name: value`` with a name of _COMMON_NAMES, the value stripped of spaces, else None
    (also for a control character: printable ASCII only)."""
    name, _, value = line.partition(": ")
    key = _COMMON_NAMES.get(name)
    if key is None or not line.isprintable():
        return None
    split = (name, value.strip(" ")), key
    return split if key in _EVERY_TIME_NEW else _LINES.remember(line, split)


def _split_general(raw: bytes) -> tuple[str, Headers]:
    text = raw.rstrip(b"\r\n").decode("latin-1") + "\n"
    if text.count("\n") - 1 > HTTP_MAX_HEADER_FIELDS:
        raise HttpError(400, f"more than {HTTP_MAX_HEADER_FIELDS} header lines")
    if len(raw) > HTTP_MAX_LINE and max(len(ln.removesuffix("\r")) for ln in text.split("\n")) > HTTP_MAX_LINE:
        raise HttpError(400, f"request or header line longer than {HTTP_MAX_LINE} bytes")
    first = text.index("\n") + 1
    if _FIELDS.match(text, first).end() != len(text):  # type: ignore[union-attr]
        _refuse_fields(text[first:])
    items: list[tuple[str, str]] = []
    index: dict[str, list[str]] = {}
    for line in text[first:-1].split("\n") if first < len(text) else ():
        name, _, value = line.partition(":")
        value = value.strip(" \t\r")  # the block check let a CR through only before the LF
        items.append((name, value))
        key = name.lower()
        if key in index:
            index[key].append(value)
        else:
            index[key] = [value]
    return text[:first - 1].removesuffix("\r"), Headers._built(items, index)


def _refuse_fields(block: str) -> NoReturn:
    """Raise the reason a header block is refused (it did not match _FIELDS)."""
    for line in block.split("\n"):
        if not _ONE_FIELD.match(line.removesuffix("\r")):
            if line[:1] in (" ", "\t"):
                raise HttpError(400, "obsolete header line folding")
            raise HttpError(400, f"malformed header line: {line[:40]!r}")
    raise HttpError(400, "malformed header block")


def _connection_tokens(index: dict[str, list[str]]) -> set[str]:
    values = index.get("connection")
    return {t.strip(" \t").lower() for v in values for t in v.split(",")} if values else set()


def parse_request_head(raw: bytes) -> RequestHead:
    """Parse a request head as delimited by find_head_end. HttpError 505 for an HTTP major
    version other than 1, 417 for an expectation other than 100-continue, 400 otherwise."""
    start, headers = _split_head(raw)
    m = _REQUEST_LINE.match(start)
    if m is None:
        raise HttpError(400, f"malformed request line: {start[:60]!r}")
    method, target, major, minor = m.groups()
    if major != "1":
        raise HttpError(505, f"HTTP/{major}.{minor} is not supported")
    index = headers._index
    tokens = _connection_tokens(index)
    expect = index.get("expect")
    if expect is not None and [e.lower() for e in expect] != ["100-continue"]:
        raise HttpError(417, "only the expectation 100-continue is supported")
    te = index.get("transfer-encoding")
    return RequestHead(
        method, target, int(minor), headers, _content_length(index.get("content-length")),
        ", ".join(te) if te else None, "close" not in tokens and (minor != "0" or "keep-alive" in tokens),
        expect is not None,
    )


def _content_length(values: list[str] | None) -> int:
    if not values:
        return 0
    text = values[0]
    if values.count(text) != len(values) or not (text.isascii() and text.isdigit()) or len(text) > 18:
        raise HttpError(400, "malformed Content-Length")
    return int(text)


def request_path(target: str) -> str:
    """The decoded path of a request target (origin form, or absolute form from a proxy)."""
    if target.startswith("/"):
        path = target.partition("?")[0]
    elif target[:7].lower() == "http://" or target[:8].lower() == "https://":
        try:
            path = urlsplit(target).path or "/"
        except ValueError:
            return target
    else:
        return target  # "*" or nonsense: matches no route
    return unquote(path) if "%" in path else path


def response_bytes(status: int, headers: Iterable[tuple[str, str]], body: bytes, *,
                   head_only: bool = False, extra: str = "") -> bytes:
    """An HTTP/1.1 answer: status line, ``headers``, ``Content-Length`` (added here), the
    preformatted header lines ``extra`` (each ending CRLF), then ``body`` unless ``head_only``.
    ValueError for a line break in a header value."""
    lines = [f"HTTP/1.1 {status} {_REASONS.get(status, '')}"]
    for name, value in headers:
        if "\r" in value or "\n" in value:
            raise ValueError(f"line break in header {name}")
        lines.append(f"{name}: {value}")
    lines.append(f"Content-Length: {len(body)}\r\n{extra}")
    head = "\r\n".join(lines).encode("utf-8")
    return head + b"\r\n" if head_only else head + b"\r\n" + body


# --- client side -----------------------------------------------------------------------------
class BadResponse(ProtocolError):
    """An answer that cannot be framed or parsed (the connection is unusable after it)."""


# Not frozen, for speed: made for every message (issue 15); never mutated, hashed as before.
@dataclass(slots=True, unsafe_hash=True)
class Response:
    status: int
    headers: Headers
    body: bytes
    keep_alive: bool  # the connection may carry another request


def request_bytes(method: str, target: str, host: str, headers: Iterable[tuple[str, str]],
                  body: bytes) -> bytes:
    """An HTTP/1.1 request with ``Host`` and ``Content-Length``; ValueError for a line break
    in a header value."""
    lines = [f"{method} {target} HTTP/1.1", f"Host: {host}"]
    for name, value in headers:
        if "\r" in value or "\n" in value:
            raise ValueError(f"line break in header {name}")
        lines.append(f"{name}: {value}")
    lines.append(f"Content-Length: {len(body)}\r\n\r\n")
    return "\r\n".join(lines).encode("utf-8") + body


_HEAD, _LENGTH, _CHUNK_SIZE, _CHUNK_DATA, _TRAILER, _UNTIL_CLOSE, _DONE = range(7)


class ResponseReader:
    """Reads the answer to one request from bytes fed as they arrive: a head (interim 1xx
    answers skipped), then a body framed by Content-Length, chunked coding, or the close."""

    __slots__ = ("_body", "_buf", "_head", "_max_body", "_need", "_scanned", "_size", "_state")

    def __init__(self, max_body: int) -> None:
        self._max_body = max_body
        self._buf = bytearray()
        self._scanned = 0
        self._state = _HEAD
        self._head: tuple[int, Headers, bool] | None = None  # status, headers, keep-alive
        self._body: list[bytes] = []
        self._size = 0  # bytes of body so far
        self._need = 0  # bytes of body (or of the current chunk) still to come

    def feed(self, data: bytes) -> Response | None:
        """The answer once complete, else None (feed more). BadResponse / LimitExceeded."""
        if self._state == _HEAD and not self._buf:
            whole = self._read_whole(data)
            if whole is not None:
                return whole
        self._buf += data
        while True:
            state = self._state
            if state == _DONE:
                raise BadResponse("bytes after the end of the answer")
            if state == _HEAD:
                if not self._read_head():
                    return None
            elif state == _LENGTH:
                if len(self._buf) < self._need:
                    return None
                self._take(self._need)
                return self._done(keep_alive=not self._buf)
            elif state == _UNTIL_CLOSE:
                self._take(len(self._buf))
                return None
            elif not self._read_chunked():
                return None
            elif self._state == _DONE:
                return self._done(keep_alive=not self._buf)

    def feed_eof(self) -> Response:
        """The answer at the end of the stream: complete only for a body framed by the close."""
        if self._state != _UNTIL_CLOSE:
            raise BadResponse("connection closed before the end of the answer")
        return self._done(keep_alive=False)

    def _read_whole(self, data: bytes) -> Response | None:
        """The answer if ``data`` is exactly one whole final answer framed by Content-Length,
        as the stack's server sends it in one write, else None (nothing changed: the piece
        takes the general path, which reads it alike or says why not)."""
        if data[:1] in (b"\r", b"\n"):
            return None
        try:
            end = find_head_end(data)
            if end < 0:
                return None
            status, headers, keep_alive = _parse_response_head(data[:end])
            index = headers._index
            if status < 200 or "transfer-encoding" in index:
                return None
            need = _content_length(index.get("content-length"))
        except HttpError:
            return None
        if need != len(data) - end or need > self._max_body or "content-length" not in index:
            return None
        self._state = _DONE
        return Response(status, headers, data[end:], keep_alive)

    def _read_head(self) -> bool:
        buf = self._buf
        if buf[:1] in (b"\r", b"\n"):
            del buf[: len(buf) - len(buf.lstrip(b"\r\n"))]
        try:
            end = find_head_end(buf, self._scanned)
            if end < 0:
                self._scanned = len(buf)
                return False
            status, headers, keep_alive = _parse_response_head(bytes(buf[:end]))
        except HttpError as exc:
            raise BadResponse(exc.reason) from None
        del buf[:end]
        self._scanned = 0
        if 100 <= status < 200:
            return True  # interim: the final answer follows
        self._head = (status, headers, keep_alive)
        index = headers._index
        te = index.get("transfer-encoding")
        if te:
            if te[-1].rsplit(",", 1)[-1].strip(" \t").lower() != "chunked":
                raise BadResponse(f"transfer coding {te[-1][:40]!r} is not supported")
            self._state = _CHUNK_SIZE
        elif index.get("content-length"):
            try:
                self._need = _content_length(index["content-length"])
            except HttpError as exc:
                raise BadResponse(exc.reason) from None
            self._check_size(self._need)
            self._state = _LENGTH
        elif status in (204, 304):
            self._state, self._need = _LENGTH, 0
        else:
            self._state = _UNTIL_CLOSE
        return True

    def _read_chunked(self) -> bool:
        """Advance through chunked coding; False when more bytes are needed."""
        buf = self._buf
        while self._state != _DONE:
            if self._state == _CHUNK_DATA:
                if len(buf) < self._need + 2:
                    return False
                if buf[self._need:self._need + 2] != b"\r\n":
                    raise BadResponse("chunk not followed by CRLF")
                self._take(self._need)
                del buf[:2]
                self._state = _CHUNK_SIZE
                continue
            end = buf.find(b"\n", 0, HTTP_MAX_LINE + 2)
            if end < 0:
                if len(buf) > HTTP_MAX_LINE + 1:
                    raise BadResponse("chunk line too long")
                return False
            line = bytes(buf[:end]).rstrip(b"\r")
            del buf[:end + 1]
            if self._state == _TRAILER:
                self._need += end + 1
                if self._need > HTTP_MAX_HEAD:
                    raise BadResponse("trailer section too long")
                if not line:
                    self._state = _DONE
                continue
            size = line.split(b";", 1)[0].strip(b" \t")
            if not size or len(size) > 16 or size.strip(b"0123456789abcdefABCDEF"):
                raise BadResponse(f"malformed chunk size {size[:20]!r}")
            self._need = int(size, 16)
            self._check_size(self._need)
            self._state = _CHUNK_DATA if self._need else _TRAILER
        return True

    def _check_size(self, more: int) -> None:
        if self._size + more > self._max_body:
            raise LimitExceeded(f"answer body over {self._max_body} bytes")

    def _take(self, n: int) -> None:
        if self._state == _UNTIL_CLOSE:
            self._check_size(n)
        self._size += n
        self._body.append(bytes(self._buf[:n]))
        del self._buf[:n]

    def _done(self, *, keep_alive: bool) -> Response:
        assert self._head is not None
        status, headers, head_keep_alive = self._head
        self._state = _DONE
        return Response(status, headers, b"".join(self._body), keep_alive and head_keep_alive)


def _parse_response_head(raw: bytes) -> tuple[int, Headers, bool]:
    start, headers = _split_head(raw)
    m = _STATUS_LINE.match(start)
    if m is None:
        raise HttpError(400, f"malformed status line: {start[:60]!r}")
    major, minor, status = m.groups()
    if major != "1":
        raise HttpError(400, f"HTTP/{major}.{minor} answer")
    tokens = _connection_tokens(headers._index)
    return int(status), headers, "close" not in tokens and (minor != "0" or "keep-alive" in tokens)
