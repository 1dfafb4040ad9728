"""M-POST exchanges: HTTP messages read from reassembled TCP streams, paired request ->
response, and the rules checked on them (specs/conformance/passive.md §4)."""

from __future__ import annotations

import os
import re
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from http import HTTPStatus
from typing import Final, Protocol

from lxml import etree

from igrs.conformance.capture import Endpoint, FlowKey
from igrs.conformance.cases import SCHEMA_DIRS
from igrs.conformance.passive.description_check import check_description
from igrs.conformance.passive.limits import HEAD_LIMIT, MAX_PENDING_REQUESTS
from igrs.conformance.passive.violations import Problem, endpoint_text
from igrs.constants import DESCRIPTION_PATH, IGRS_NS, IGRS_PATH, MAX_HEADER_LINE, MAX_HTTP_BODY
from igrs.wire import messages
from igrs.wire.catalogue import Kind, spec_for
from igrs.wire.httpu import Headers, parse_head
from igrs.wire.soap import parse_envelope
from igrs.wire.xml import Element, qname

_REQUEST_LINE: Final = re.compile(rb"[A-Z][A-Z-]{0,15} \S{1,2048} HTTP/\d\.\d\Z")
_STATUS_LINE: Final = re.compile(rb"HTTP/\d\.\d \d{3}(?: .*)?\Z")
_HEAD_END: Final = re.compile(rb"\r?\n\r?\n")
_SECURE_MESSAGE: Final = qname(IGRS_NS, "SecureMessage")


@dataclass(slots=True)
class HttpHead:
    start: str
    method: str | None
    target: str | None
    status: int | None
    version: str
    headers: Headers
    raw: bytes

    @property
    def igrs_type(self) -> str | None:
        """The ``NN-IGRSMessageType`` value, when the message carries the IGRS routing headers."""
        for name, value in self.headers:
            if name.lower().endswith("-igrsmessagetype"):
                return value
        return None

    def what(self) -> str:
        return self.igrs_type or self.start[:60]


def parse_http_head(raw: bytes) -> HttpHead | None:
    """Start line and headers, leniently (only framing depends on them); None if not HTTP."""
    lines = raw.split(b"\n")
    first = lines[0].rstrip(b"\r")
    request = _REQUEST_LINE.match(first)
    if not request and not _STATUS_LINE.match(first):
        return None
    items = []
    for line in lines[1:]:
        name, sep, value = line.rstrip(b"\r").partition(b":")
        if sep and name and not name[:1].isspace():
            items.append((name.decode("latin-1").strip(), value.decode("latin-1").strip()))
    words = first.decode("latin-1").split(" ", 2)
    if request:
        return HttpHead(first.decode("latin-1"), words[0], words[1], None, words[2][5:], Headers(items), raw)
    return HttpHead(first.decode("latin-1"), None, None, int(words[1]), words[0][5:], Headers(items), raw)


@dataclass(slots=True)
class _Request:
    head: HttpHead
    kind: str  # "igrs" (M-POST / routing headers), "description", "endpoint" (other method on /IGRS), "other"
    frame: messages.Frame | None = None
    error: str | None = None  # why it does not decode
    seq: int = 0  # its SequenceId, if readable


def _classify(head: HttpHead) -> str:
    path = head.target or ""
    if (head.method in ("M-POST", "POST") and path == IGRS_PATH) or head.igrs_type is not None:
        return "igrs"
    if head.method in ("GET", "HEAD") and path == DESCRIPTION_PATH:
        return "description"
    return "endpoint" if path == IGRS_PATH else "other"


@lru_cache(maxsize=1)
def body_schemas() -> dict[str, tuple[str, etree.XMLSchema]]:
    """Body element tag -> (schema file, schema), from every igrs-*.xsd."""
    out: dict[str, tuple[str, etree.XMLSchema]] = {}
    directory = next(d for d in SCHEMA_DIRS if os.path.isfile(os.path.join(d, "igrs-messages.xsd")))
    for name in sorted(os.listdir(directory)):
        if not (name.startswith("igrs-") and name.endswith(".xsd")):
            continue
        doc = etree.parse(os.path.join(directory, name))
        schema = etree.XMLSchema(doc)
        target = doc.getroot().get("targetNamespace", "")
        for el in doc.getroot().findall("{http://www.w3.org/2001/XMLSchema}element"):
            out.setdefault(qname(target, el.get("name", "")), (name, schema))
    return out


def _schema_problems(el: Element, message_type: str) -> list[Problem]:
    """The body against the schema that declares it; a ``Session`` body (10.5/10.6) against the
    declaration of its ``01-IGRSMessageType`` (messages.md §5)."""
    el = messages.body_for_schema(el, message_type)
    found = body_schemas().get(str(el.tag))
    if found is None:
        return []
    name, schema = found
    if schema.validate(el):
        return []
    errors = "; ".join(f"line {e.line}: {e.message}" for e in list(schema.error_log)[:3])
    return [(f"body not valid against {name}: {errors}", "messages.md §5")]


def _readable_sequence(headers: Headers) -> int:
    try:
        text = headers.optional_one(f"{headers.igrs_prefix()}-SequenceId") or ""
    except Exception:
        return 0
    return int(text) if text.isascii() and text.isdigit() and len(text) <= 10 else 0


def check_request(req: _Request, body: bytes) -> list[Problem]:
    """An IGRS request or notify (fills ``req.frame`` / ``req.error`` for its response)."""
    head = req.head
    out: list[Problem] = []
    if head.start != f"M-POST {IGRS_PATH} HTTP/1.1":
        out.append((f"request line {head.start[:60]!r} is not 'M-POST {IGRS_PATH} HTTP/1.1'", "messages.md §2"))
    req.seq = _readable_sequence(head.headers)
    try:
        frame = messages.decode(parse_head(head.raw)[1], body)
        el = parse_envelope(body)
    except Exception as exc:  # ProtocolError from the codec; anything else still "does not decode"
        req.error = str(exc)
        return [*out, (f"does not decode: {exc}", "messages.md §2-§5")]
    req.frame = frame
    spec = spec_for(frame.routing.message_type)
    if spec is None or spec.kind not in (Kind.REQUEST, Kind.NOTIFY):
        out.append((f"{frame.routing.message_type} is not a request or notify a client sends",
                    "messages.md §7"))
    return out + _schema_problems(el, frame.routing.message_type)


def check_response(req: _Request | None, head: HttpHead, body: bytes) -> list[Problem]:
    """An answer on the IGRS endpoint, judged against its request when that is known."""
    if req is not None and req.kind == "description":
        return check_description(head.status, head.headers, body, with_body=req.head.method != "HEAD")
    if req is not None and req.kind == "endpoint":
        allow = head.headers.get("Allow") or ""
        if head.status != 405 or "M-POST" not in allow:
            return [(f"{req.head.method} {IGRS_PATH} answered {head.status} (Allow {allow!r}), not 405 with "
                     "Allow: M-POST, POST", "messages.md §7")]
        return []
    if head.igrs_type is None:
        return _bare_answer(req, head, body)
    try:
        frame = messages.decode(parse_head(head.raw)[1], body)
        el = parse_envelope(body)
    except Exception as exc:
        return [(f"does not decode: {exc}", "messages.md §2-§5")]
    out = _response_framing(head, frame)
    if req is not None and req.frame is not None:
        out += _matches_request(req, frame, el)
    elif req is not None and req.error is not None:
        if frame.routing.message_type != messages.ErrorResponse.message_type:
            out.append((f"a request that does not decode ({req.error[:80]}) answered with "
                        f"{frame.routing.message_type}, not an ErrorResponse", "messages.md §7"))
        else:
            ack = _acknowledge_id(el)
            if ack not in (None, 0, req.seq):
                out.append((f"AcknowledgeId {ack} is neither the request's SequenceId {req.seq} nor 0",
                            "messages.md §6"))
    return out + _schema_problems(el, frame.routing.message_type)


def _bare_answer(req: _Request | None, head: HttpHead, body: bytes) -> list[Problem]:
    """An answer without IGRS headers: only a notify's bare 200 may look like that."""
    if req is None or req.kind != "igrs":
        return []
    spec = spec_for(req.frame.routing.message_type) if req.frame is not None else None
    if spec is not None and spec.kind is Kind.NOTIFY and head.status == 200 and not body:
        if "Ext" not in head.headers or "no-cache" not in (head.headers.get("Cache-Control") or ""):
            return [("a notify's 200 answer lacks Ext / Cache-Control: no-cache=\"Ext\"", "messages.md §3")]
        return []
    if req.error is not None:
        return [(f"a request that does not decode ({req.error[:80]}) answered {head.status} without an "
                 "ErrorResponse", "messages.md §7")]
    expected = spec.response if spec is not None else None
    wanted = f" ({expected} expected)" if expected else ""
    return [(f"answered {head.status} without an IGRS message{wanted}", "messages.md §3")]


def _response_framing(head: HttpHead, frame: messages.Frame) -> list[Problem]:
    out: list[Problem] = []
    mtype = frame.routing.message_type
    if "Ext" not in head.headers or "no-cache" not in (head.headers.get("Cache-Control") or ""):
        out.append(('no Ext / Cache-Control: no-cache="Ext" on a response', "messages.md §3"))
    if isinstance(frame.message, messages.ErrorResponse):
        code = frame.message.status.return_code
        if head.status != code:
            out.append((f"ErrorResponse sent with HTTP status {head.status}, not its ReturnCode {code}",
                        "return-codes.md"))
        elif code in HTTPStatus._value2member_map_ and head.start.split(" ", 2)[2:] != [
                HTTPStatus(code).phrase]:
            out.append((f"status line {head.start!r} lacks the standard reason phrase", "messages.md §6"))
        return out
    spec = spec_for(mtype)
    if spec is None or spec.kind is not Kind.RESPONSE:
        out.append((f"{mtype} is not a response type", "messages.md §1"))
    if head.status != 200:
        out.append((f"typed response sent with HTTP status {head.status}, not 200", "return-codes.md"))
    return out


def _acknowledge_id(el: Element) -> int | None:
    """The body's AcknowledgeId (None when sealed or absent, -1 when not a number)."""
    if el.tag == _SECURE_MESSAGE:
        return None
    ack = el.find(qname(IGRS_NS, "AcknowledgeId"))
    if ack is None:
        return None
    text = (ack.text or "").strip()
    return int(text) if text.isascii() and text.isdigit() and len(text) <= 10 else -1


def _matches_request(req: _Request, frame: messages.Frame, el: Element) -> list[Problem]:
    assert req.frame is not None
    out: list[Problem] = []
    asked, mtype = req.frame.routing, frame.routing.message_type
    spec = spec_for(asked.message_type)
    expected = spec.response if spec is not None else None
    resolved = spec_for(mtype)
    if (mtype != messages.ErrorResponse.message_type and expected
            and (resolved.name if resolved else mtype) != expected):
        out.append((f"{asked.message_type} answered with {mtype}, not {expected}", "messages.md §1"))
    if frame.routing.target != asked.source:
        out.append((f"01-TargetDeviceId {frame.routing.target} is not the requester {asked.source}",
                    "messages.md §3"))
    if asked.target is not None and frame.routing.source != asked.target:
        out.append((f"01-SourceDeviceId {frame.routing.source} is not the request's target {asked.target}",
                    "messages.md §3"))
    ack = _acknowledge_id(el)
    if ack is None and el.tag != _SECURE_MESSAGE:
        out.append(("response without AcknowledgeId", "messages.md §5.1"))
    elif ack is not None and ack != asked.sequence_id:
        out.append((f"AcknowledgeId {ack} != the request's SequenceId {asked.sequence_id}", "messages.md §3"))
    return out



class _Reader:
    """One direction of an HTTP connection, split into messages; buffers at most one head and
    (only for messages that are checked) one body of at most MAX_HTTP_BODY bytes."""

    def __init__(self) -> None:
        self.buf = bytearray()
        self.head: HttpHead | None = None
        self.req: _Request | None = None  # the request being read, or the one a response answers
        self.mode = ""  # "length" | "chunk-size" | "chunk-data" | "chunk-crlf" | "trailer" | "close"
        self.scanned = 0  # bytes of ``buf`` known to hold no end of head
        self.left = 0
        self.keep = False
        self.body = bytearray()
        self.too_big = False

    def start_body(self, mode: str, left: int, keep: bool) -> None:
        self.mode, self.left, self.keep = mode, left, keep
        self.body, self.too_big = bytearray(), False

    def reset(self) -> None:
        self.head, self.req, self.mode, self.scanned = None, None, "", 0

    def _append(self, data: bytes | bytearray) -> None:
        if not self.keep:
            return
        if len(self.body) + len(data) > MAX_HTTP_BODY:
            self.keep, self.too_big, self.body = False, True, bytearray()
        else:
            self.body += data

    def body_done(self) -> bool:
        """Consume body bytes; True when the message is complete. ValueError: bad chunking."""
        while True:
            if self.mode == "":
                return True
            if self.mode == "close":
                self._append(self.buf)
                self.buf.clear()
                return False
            if self.mode in ("length", "chunk-data"):
                take = min(self.left, len(self.buf))
                self._append(self.buf[:take])
                del self.buf[:take]
                self.left -= take
                if self.left:
                    return False
                self.mode = "" if self.mode == "length" else "chunk-crlf"
                continue
            end = self.buf.find(b"\n")
            if end < 0:
                if len(self.buf) > MAX_HEADER_LINE:
                    raise ValueError("chunk line too long")
                return False
            line = bytes(self.buf[:end]).strip()
            del self.buf[:end + 1]
            self._chunk_line(line)

    def _chunk_line(self, line: bytes) -> None:
        if self.mode == "chunk-crlf":
            if line:
                raise ValueError("chunk not followed by CRLF")
            self.mode = "chunk-size"
        elif self.mode == "chunk-size":
            size = line.split(b";", 1)[0].strip()
            if not size or len(size) > 8 or any(c not in b"0123456789abcdefABCDEF" for c in size):
                raise ValueError(f"malformed chunk size {size[:20]!r}")
            self.left = int(size, 16)
            self.mode = "chunk-data" if self.left else "trailer"
        elif not line:  # the empty line that ends the trailers
            self.mode = ""


class Reporter(Protocol):
    """Where a connection reports what it checked (the PassiveChecker)."""

    def report(self, ts: float, where: str, what: str, problems: Iterable[Problem], kind: str = "") -> None: ...

    def note(self, text: str) -> None: ...


class HttpConnection:
    """The HTTP messages of one TCP connection, paired request -> response in order."""

    def __init__(self, checker: Reporter, synced: bool) -> None:
        self.checker = checker
        self.synced = synced  # both directions seen from their SYN: requests and responses pair up
        self.readers: dict[Endpoint, _Reader] = {}
        self.client: Endpoint | None = None
        self.pending: deque[_Request] = deque()
        self.state = "new"  # "new" | "http" | "ignored" | "done"
        self.closed: set[Endpoint] = set()

    def feed(self, ts: float, flow: FlowKey, data: bytes) -> None:
        if self.state in ("ignored", "done"):
            return
        r = self.readers.setdefault(flow[0], _Reader())
        r.buf += data
        try:
            while self.state not in ("ignored", "done"):
                if r.head is None and not self._head(flow, r):
                    return
                if not r.body_done():
                    return
                self._complete(ts, flow, r)
        except ValueError as exc:
            self._stop(f"{self._where(flow)}: {exc}: the rest of this connection is not checked")

    def close(self, ts: float, flow: FlowKey) -> None:
        r = self.readers.get(flow[0])
        self.closed.add(flow[0])
        if r is not None and self.state == "http" and r.head is not None:
            if r.mode == "close":
                r.mode = ""
                self._complete(ts, flow, r)
            elif r.head.igrs_type is not None or (r.req is not None and r.req.kind != "other"):
                self.checker.note(f"{self._where(flow)}: closed inside an HTTP message ({r.head.what()})")

    def gap(self, flow: FlowKey) -> None:
        if self.state not in ("ignored", "done"):
            self._stop(f"TCP stream {self._where(flow)} has a gap, not checked from there on")

    def _stop(self, note: str, state: str = "done") -> None:
        """Stop reading this connection (``note`` says why, if it was HTTP)."""
        if self.state == "http":
            self.checker.note(note)
        self.state = state
        self.readers.clear()
        self.pending.clear()

    @staticmethod
    def _where(flow: FlowKey) -> str:
        return f"{endpoint_text(*flow[0])} -> {endpoint_text(*flow[1])} (tcp)"

    def _head(self, flow: FlowKey, r: _Reader) -> bool:
        if r.buf[:1] in (b"\r", b"\n"):  # empty lines between messages
            del r.buf[:len(r.buf) - len(r.buf.lstrip(b"\r\n"))]
            r.scanned = 0
        match = _HEAD_END.search(r.buf, max(0, r.scanned - 3))
        if match is None:
            r.scanned = len(r.buf)
            line_end = r.buf.find(b"\n")
            if self.state == "new" and (line_end >= 0 or len(r.buf) > MAX_HEADER_LINE):
                first = bytes(r.buf[:line_end if line_end >= 0 else MAX_HEADER_LINE]).rstrip(b"\r")
                if not (_REQUEST_LINE.match(first) or _STATUS_LINE.match(first)):
                    self._stop("", "ignored")  # not HTTP at all
                    return False
                self.state = "http"
            if len(r.buf) > HEAD_LIMIT:
                raise ValueError(f"HTTP head longer than {HEAD_LIMIT} bytes")
            return False
        raw = bytes(r.buf[:match.start()])
        del r.buf[:match.end()]
        r.scanned = 0
        head = parse_http_head(raw)
        if head is None:
            if self.state == "new":
                self._stop("", "ignored")
                return False
            raise ValueError(f"malformed HTTP start line {raw[:40]!r}")
        self.state = "http"
        r.head = head
        self._framing(flow, r, head)
        return True

    def _framing(self, flow: FlowKey, r: _Reader, head: HttpHead) -> None:
        h = head.headers
        chunked = "chunked" in (h.get("Transfer-Encoding") or "").lower()
        length_text = h.get("Content-Length")
        if length_text is not None and not (length_text.isascii() and length_text.isdigit()):
            raise ValueError(f"malformed Content-Length {length_text[:20]!r}")
        length = int(length_text) if length_text is not None else None
        if head.method is not None:
            if self.client is None:
                self.client = flow[0]
            r.req = _Request(head, _classify(head))
            if len(self.pending) >= MAX_PENDING_REQUESTS:
                raise ValueError(f"more than {MAX_PENDING_REQUESTS} requests awaiting answers")
            self.pending.append(r.req)
            keep = r.req.kind == "igrs"
            mode = "chunk-size" if chunked else "length" if length else ""
        else:
            r.req = self.pending[0] if self.pending and self.synced else None
            keep = head.igrs_type is not None or (r.req is None or r.req.kind in ("igrs", "description"))
            no_body = (r.req is not None and r.req.head.method == "HEAD") or head.status in (204, 304) or (
                head.status is not None and 100 <= head.status < 200)
            mode = "" if no_body else "chunk-size" if chunked else "length" if length else (
                "" if length == 0 else "close")
        r.start_body(mode, length or 0, keep)

    def _complete(self, ts: float, flow: FlowKey, r: _Reader) -> None:
        head, req, body = r.head, r.req, bytes(r.body)
        assert head is not None
        too_big = r.too_big
        r.reset()
        if head.method is not None:
            if req is not None and req.kind == "igrs":
                problems = [("body over MAX_HTTP_BODY, not checked", "timers-and-limits.md MAX_HTTP_BODY")] \
                    if too_big else check_request(req, body)
                kind = req.frame.routing.message_type if req.frame is not None else "undecodable"
                self.checker.report(ts, self._where(flow), head.what(), problems, kind)
            return
        if head.status is not None and 100 <= head.status < 200:
            return  # an interim answer: the request still waits for its final one
        if req is not None and self.pending and self.pending[0] is req:
            self.pending.popleft()
        if head.igrs_type is None and (req is None or req.kind == "other"):
            return
        problems = [("body over MAX_HTTP_BODY, not checked", "timers-and-limits.md MAX_HTTP_BODY")] \
            if too_big else check_response(req, head, body)
        if req is None or req.kind == "igrs":
            what, kind = head.what(), head.igrs_type or f"HTTP {head.status}"
        else:
            what, kind = f"{head.start[:40]} ({req.head.start[:40]})", req.kind
        self.checker.report(ts, self._where(flow), what, problems, kind)
