"""A legacy reference peer: a small pipe-less IGRS peer that speaks exactly what ezbox's
libezcfg emits and accepts (/work/shared/reference/ezbox-dialect.md, which gives the bytes with
file and line of github.com/dijitalxyz/ezbox at 95d16890). Written from that description, not
from ezbox's code. It is the third-party IGRS the stack must talk to, in both roles:

* server: ``EzboxPeer`` on a TCP port. Its HTTP parser takes only ``M-POST``, strict CRLF,
  ``Name:value`` headers; ``01-IGRSVersion`` other than 1.0 -> a bare ``505``; anything it does
  not handle, and every error -> a bare ``HTTP/1.1 400 Bad Request`` (no headers, no body) and
  the connection closed. It answers ``CreateSessionRequest`` and ``InvokeServiceRequest`` in
  ezbox's form: ``200 OK``, ``Ext:``, ``Cache-Control:no-cache="Ext"``, the ``Man``/``01-``
  headers with *empty* device ids, no ``01-SequenceId``, a ``<Session>`` body with
  ``SourceServiceId``, ``TargetClientId``, ``AcknowledgeId``, ``ReturnCode`` (no ``SessionId``:
  by analogy with its InvokeServiceResponse). Of ``InvokeArguments`` it keeps only the text (as
  ezbox does) and answers ``InvokeArguments`` = ``on_invoke(text)``. ``GetDeviceDescriptionRequest``
  is the one addition (ezbox has no builder for it): answered in the same framing with a
  description made of the element names of ezbox's template (EZ-DDT), so that a peer found
  without discovery can be described.
* client: ``ezbox_request(...)`` builds a request byte for byte as the reference file shows
  (``Man:"...";ns=01`` without spaces, the 2002/12 SOAP namespace with ``encodingStyle``, no
  XML declaration, LF after end tags, ``<Session>`` body, no operation name in
  ``InvokeServiceRequest``); ``exchange`` sends it and reads the answer with the same strict
  rules: a standard reason phrase, CRLF; an ``ErrorResponse`` body is not understood (its
  message-type table has none) -- only the status line of an error counts.

XML is read by local name only (ezbox's parser is namespace- and prefix-blind).
"""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from xml.etree import ElementTree as ET

IGRS_URI = "http://www.igrs.org/spec1.0"
SOAP_DRAFT = "http://www.w3.org/2002/12/soap-envelope"
SOAP_ENCODING = "http://schemas.xmlsoap.org/soap/encoding/"
DEVICE_TEMPLATE = "http://www.igrs.org/igrs/DeviceTemplate"
EMPTY_ID = "urn:IGRS:Device:DeviceId:"
ACTIONS = {  # message type -> SOAP action, as ezcfg-igrs.h defines them
    "CreateSessionRequest": "IGRS-CreateSession-Request",
    "CreateSessionResponse": "IGRS-CreateSession-Response",
    "InvokeServiceRequest": "IGRS-InvokeService-Request",
    "InvokeServiceResponse": "IGRS-InvokeService-Response",
    "GetDeviceDescriptionRequest": "IGRS-GetDeviceDescription-Request",
    "GetDeviceDescriptionResponse": "IGRS-GetDeviceDescription-Response",
    "DestroySessionNotify": "IGRS-DestroySession-Notify",
}
BARE_400 = b"HTTP/1.1 400 Bad Request\r\n\r\n"
BARE_505 = b"HTTP/1.1 505 HTTP Version Not Supported\r\n\r\n"
_HEADER = re.compile(rb"([!#$%&'*+.^_`|~0-9A-Za-z-]+):[ \t]*(.*)\Z")


# --- the bytes ------------------------------------------------------------------------------
def envelope(body_child: str) -> bytes:
    """ezbox's envelope: draft SOAP 1.2 namespace, encodingStyle, no XML declaration, LF after
    the closing tags."""
    return (f'<SOAP-ENV:Envelope xmlns:SOAP-ENV="{SOAP_DRAFT}" SOAP-ENV:encodingStyle="{SOAP_ENCODING}">'
            f"<SOAP-ENV:Body>{body_child}\n</SOAP-ENV:Body>\n</SOAP-ENV:Envelope>\n").encode()


def session(*fields: tuple[str, str]) -> str:
    """A ``<Session>`` body element, each field followed by LF (ezbox's writer)."""
    inner = "".join(f"<{name}>{value}</{name}>\n" for name, value in fields)
    return f'<Session xmlns="{IGRS_URI}">{inner}</Session>'


def user_info(user: str = "igrs-tester") -> str:
    return (f"<SourceUserId>{user}</SourceUserId>\n<ServiceSecurityId>urn:IGRS:ServiceSecurity:NULL"
            "</ServiceSecurityId>\n<Token></Token>\n")


def ezbox_request(message_type: str, body: bytes, *, source: str, target: str, seq: int,
                  host: str = "192.168.1.1:3880", target_first: bool = True) -> bytes:
    """An M-POST exactly as the reference file shows it (``Host`` is ezbox's hard-coded one;
    ``target_first``: 01-TargetDeviceId before 01-SourceDeviceId, as in its CreateSession)."""
    ids = [f"01-TargetDeviceId:{target}", f"01-SourceDeviceId:{source}"]
    lines = ["M-POST /IGRS HTTP/1.1", f"Host:{host}", f'Man:"{IGRS_URI}";ns=01', "01-IGRSVersion:IGRS/1.0",
             f"01-IGRSMessageType:{message_type}", *(ids if target_first else ids[::-1]),
             f"01-SequenceId:{seq}", "Content-Type:text/xml; charset=UTF-8", f"Content-Length:{len(body)}",
             f'Man:"{SOAP_DRAFT}";ns=02', f'02-SoapAction:"{ACTIONS[message_type]}"']
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def ezbox_response(message_type: str, body: bytes) -> bytes:
    """ezbox's answer: 200, Ext, Cache-Control, empty device ids, no 01-SequenceId."""
    lines = ["HTTP/1.1 200 OK", "Ext:", 'Cache-Control:no-cache="Ext"', f'Man:"{IGRS_URI}";ns=01',
             "01-IGRSVersion:IGRS/1.0", f"01-IGRSMessageType:{message_type}", f"01-TargetDeviceId:{EMPTY_ID}",
             f"01-SourceDeviceId:{EMPTY_ID}", "Content-Type:text/xml;charset=utf-8",
             f"Content-Length:{len(body)}", f'Man:"{SOAP_DRAFT}";ns=02',
             f'02-SoapAction:"{ACTIONS[message_type]}"']
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def create_session_body(client_id: int, service_id: int, seq: int, user: str = "igrs-tester") -> bytes:
    inner = session(("SourceClientId", str(client_id)), ("TargetServiceId", str(service_id)),
                    ("SequenceId", str(seq)))
    return envelope(inner.replace("</Session>", f"<UserInfo>{user_info(user)}</UserInfo>\n</Session>"))


def invoke_body(client_id: int, service_id: int, seq: int, invoke_args: str) -> bytes:
    """InvokeServiceRequest: no operation name; ``invoke_args`` written unescaped (ezbox)."""
    return envelope(session(("SourceClientId", str(client_id)), ("TargetServiceId", str(service_id)),
                            ("SequenceId", str(seq)), ("InvokeArguments", invoke_args)))


def description_body(device_id: str, ack: int, services: dict[int, str]) -> bytes:
    service_list = "".join(
        f"<service><serviceType>urn:IGRS:ServiceType:{name}:1</serviceType><serviceId>{sid}</serviceId>"
        f"<serviceName>{name}</serviceName><serviceSecurityIdList/></service>"
        for sid, name in services.items())
    root = (f'<root xmlns="{DEVICE_TEMPLATE}"><deviceTemplateVersion><major>1</major><minor>0</minor>'
            "</deviceTemplateVersion><device><deviceType>urn:IGRS:DeviceType:PC:1</deviceType>"
            "<deviceName>ezbox</deviceName><manufacturer>ezbox-project</manufacturer><modelName>ezcfg</modelName>"
            f"<UDN>{device_id}</UDN><DeviceIconURL>http://192.168.1.1/icon.png</DeviceIconURL>"
            f"<deviceSecurityIdList/><serviceList>{service_list}</serviceList></device>"
            "<protocolVersion><major>1</major><minor>0</minor></protocolVersion></root>")
    return envelope(f'<GetDeviceDescriptionResponse xmlns="{IGRS_URI}"><AcknowledgeId>{ack}</AcknowledgeId>\n'
                    f"<ReturnCode>200</ReturnCode>\n{root}\n</GetDeviceDescriptionResponse>")


# --- the strict reader ----------------------------------------------------------------------
class Refused(Exception):
    """What ezbox's parser does not take (the server answers a bare 400)."""


@dataclass
class Message:
    start: str
    headers: dict[str, str]
    body: bytes
    fields: dict[str, str] = field(default_factory=dict)  # children of Body/Session by local name
    body_element: str = ""  # local name of the Body's child

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())

    def texts(self, local: str) -> list[str]:
        """The text of every element of the body with this local name, at any depth."""
        if not self.body.strip() or self.header("01-IGRSMessageType") == "ErrorResponse":
            return []
        return [(el.text or "").strip() for el in ET.fromstring(self.body).iter() if _local(el.tag) == local]


def _local(tag: str) -> str:
    return tag.rpartition("}")[2]


def parse_body(data: bytes) -> tuple[str, dict[str, str]]:
    """(local name of the Body's child, its children's text by local name; nested elements kept
    as their serialised XML, as ezbox would have kept only the InvokeArguments text)."""
    if not data.strip():
        return "", {}
    try:
        root = ET.fromstring(data)
    except ET.ParseError as exc:
        raise Refused(f"XML: {exc}") from None
    body = next((c for c in root if _local(c.tag) == "Body"), None)
    if _local(root.tag) != "Envelope" or body is None:
        raise Refused("not a SOAP envelope")
    child = next(iter(body), None)
    if child is None:
        return "", {}
    out = {}
    for el in child:
        if len(el):
            out[_local(el.tag)] = "".join(ET.tostring(c, encoding="unicode") for c in el).strip()
        else:
            out[_local(el.tag)] = (el.text or "").strip()
    return _local(child.tag), out


async def read_message(reader: asyncio.StreamReader, *, request: bool, limit: int = 256 * 1024) -> Message:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head[:-4].split(b"\r\n")
    if any(b"\n" in line or b"\r" in line for line in lines):
        raise Refused("line ends other than CRLF")
    start = lines[0].decode("ascii", "replace")
    if request:
        if not start.startswith("M-POST ") or not start.endswith(" HTTP/1.1"):
            raise Refused(f"request line {start!r}")
    else:
        m = re.fullmatch(r"HTTP/1\.1 (\d{3}) (.+)", start)
        if not m or HTTPStatus(int(m.group(1))).phrase != m.group(2):
            raise Refused(f"status line {start!r} (a standard reason phrase is expected)")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        m = _HEADER.match(line)
        if m is None:
            raise Refused(f"header line {line[:40]!r}")
        headers.setdefault(m.group(1).decode().lower(), m.group(2).decode().strip())
    length = int(headers.get("content-length", "0") or 0)
    if length > limit:
        raise Refused("body too large")
    body = await reader.readexactly(length) if length else b""
    return Message(start, headers, body)


# --- the server ------------------------------------------------------------------------------
class EzboxPeer:
    """The server role on 127.0.0.1 (or ``host``); ``received`` keeps every parsed request."""

    def __init__(self, *, host: str = "127.0.0.1", on_invoke: Callable[[str], str] | None = None,
                 services: dict[int, str] | None = None) -> None:
        self.host = host
        self.device_id = f"urn:IGRS:Device:DeviceId:{uuid.uuid4()}"
        self.on_invoke = on_invoke or (lambda text: text)  # ezbox echoes InvokeArguments
        self.services = services or {1: "Echo"}
        self.received: list[Message] = []
        self.refused: list[str] = []
        self.port = 0
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> EzboxPeer:
        self._server = await asyncio.start_server(self._serve, self.host, 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            writer.write(await self._answer(reader))
            await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        finally:
            writer.close()  # one request per connection, then closed

    async def _answer(self, reader: asyncio.StreamReader) -> bytes:
        try:
            msg = await read_message(reader, request=True)
            if msg.header("01-IGRSVersion") != "IGRS/1.0":
                return BARE_505 if msg.header("01-IGRSVersion") else BARE_400
            msg.body_element, msg.fields = parse_body(msg.body)
        except Refused as exc:
            self.refused.append(str(exc))
            return BARE_400
        self.received.append(msg)
        mtype = msg.header("01-IGRSMessageType")
        f = msg.fields
        try:
            if mtype == "GetDeviceDescriptionRequest":
                return ezbox_response("GetDeviceDescriptionResponse", description_body(
                    self.device_id, int(msg.header("01-SequenceId") or 0), self.services))
            if mtype not in ("CreateSessionRequest", "InvokeServiceRequest") or msg.body_element != "Session":
                raise Refused(f"{mtype} is not handled")
            fields = [("SourceServiceId", f["TargetServiceId"]), ("TargetClientId", f["SourceClientId"]),
                      ("AcknowledgeId", f["SequenceId"]), ("ReturnCode", "200")]
        except (Refused, KeyError, ValueError) as exc:
            self.refused.append(str(exc))
            return BARE_400
        if mtype == "CreateSessionRequest":
            return ezbox_response("CreateSessionResponse", envelope(session(*fields)))
        # Only the text of InvokeArguments (nested elements dropped), as ezbox keeps it.
        args = f.get("InvokeArguments", "")
        text = "" if args.startswith("<") else args
        return ezbox_response("InvokeServiceResponse",
                              envelope(session(*fields, ("InvokeArguments", self.on_invoke(text)))))


# --- the client -------------------------------------------------------------------------------
async def exchange(host: str, port: int, data: bytes, timeout: float = 5.0) -> Message:
    """Send one request; read the answer with ezbox's rules (an ErrorResponse body is ignored)."""
    reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
    try:
        writer.write(data)
        await writer.drain()
        answer = await asyncio.wait_for(read_message(reader, request=False), timeout)
    finally:
        writer.close()
    if answer.header("01-IGRSMessageType") != "ErrorResponse":  # not in its message-type table
        answer.body_element, answer.fields = parse_body(answer.body)
    return answer


def status_of(answer: Message) -> int:
    return int(answer.start.split(" ", 2)[1])
