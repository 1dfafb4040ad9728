"""Every pipe and pairing body (9.2 + the pairing extension): round trip through the real
codec, valid against specs/schemas/igrs-pipes.xsd, and a malformed variant refused."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
import xmlschema
from lxml import etree

from igrs.errors import ProtocolError
from igrs.wire import messages
from igrs.wire.bodies import pipes as pb
from igrs.wire.httpu import Headers
from igrs.wire.ids import DeviceId
from igrs.wire.messages import Status

XSD = xmlschema.XMLSchema(str(Path(__file__).parents[2] / "specs" / "schemas" / "igrs-pipes.xsd"))
A = DeviceId(uuid.UUID(int=1))
B = DeviceId(uuid.UUID(int=2))
DATA = bytes(range(64))

BODIES = [
    pb.CreatePipeRequest(True, DATA),
    pb.CreatePipeRequest(False, b"x"),
    pb.CreatePipeResponse(Status(7), DATA, handshake_id=99),
    pb.AuthenticateRequest(99, DATA),
    pb.AuthenticateResponse(Status(8), DATA),
    pb.AuthenticateResultRequest(99, DATA),
    pb.AuthenticateResultResponse(Status(9), DATA, pipe_id=1234),
    pb.CreatePipeResultRequest(99, DATA),
    pb.CreatePipeResultResponse(Status(10), DATA, pipe_id=1234),
    pb.DetachPipeNotify(1234, "bye"),
    pb.DeviceOnlineDetectionRequest(1234),
    pb.DeviceOnlineDetectionResponse(Status(11)),
    pb.PairingModeRequest(),
    pb.PairingModeResponse(Status(12), 6, 300),
    pb.PairingStartRequest(0, DATA),
    pb.PairingStartResponse(Status(13), DATA, handshake_id=5),
    pb.PairingConfirmRequest(5, DATA),
    pb.PairingConfirmResponse(Status(14), DATA),
]


@pytest.mark.parametrize("body", BODIES, ids=lambda b: type(b).__name__)
def test_round_trip_and_schema(body: messages.SoapMessage) -> None:
    headers, payload = messages.encode(body, source=A, target=B, sequence_id=3)
    frame = messages.decode(Headers(headers), payload)
    assert frame.message == body
    assert XSD.is_valid(etree.tostring(body.body()))


MALFORMED = {
    "CreatePipeRequest": b"<Secure>maybe</Secure><HandshakeData>AAAA</HandshakeData>",
    "AuthenticateRequest": b"<HandshakeId>1</HandshakeId><HandshakeData>not base64!</HandshakeData>",
    "AuthenticateResultResponse": b"<AcknowledgeId>1</AcknowledgeId><ReturnCode>2000</ReturnCode>",
    "DetachPipeNotify": b"<PipeId>0</PipeId>",
    "DeviceOnlineDetectionRequest": b"<PipeId>99999999999</PipeId>",
    "PairingModeResponse": b"<AcknowledgeId>x</AcknowledgeId><ReturnCode>200</ReturnCode>",
    "PairingStartRequest": b"<HandshakeData>AAAA</HandshakeData>",
}


@pytest.mark.parametrize("name", sorted(MALFORMED))
def test_malformed_bodies_are_refused(name: str) -> None:
    inner = f'<{name} xmlns="http://www.igrs.org/spec1.0">'.encode() + MALFORMED[name] + f"</{name}>".encode()
    with pytest.raises(ProtocolError):
        messages.parse_body(name, etree.fromstring(inner))


def test_secure_message_wraps_any_type() -> None:
    sealed = pb.SecureMessage(77, b"\x01" * 40, "InvokeServiceRequest")
    headers, payload = messages.encode(sealed, source=A, target=B, sequence_id=4)
    frame = messages.decode(Headers(headers), payload)
    assert frame.routing.message_type == "InvokeServiceRequest"
    assert frame.message == sealed
    assert XSD.is_valid(etree.tostring(sealed.body()))


@pytest.mark.parametrize("message, ext", [
    (pb.PairingModeResponse(Status(3), 6, 120), True),  # a pairing extension response
    (messages.GetDeviceDescriptionResponse(Status(3), None), True),  # a catalogue response
    (messages.ErrorResponse(Status(3, 400, "bad")), True),
    (pb.PairingModeRequest(), False),
    (pb.DeviceOnlineDetectionRequest(7), False),
], ids=lambda v: type(v).__name__ if not isinstance(v, bool) else str(v))
def test_responses_carry_ext(message: messages.SoapMessage, ext: bool) -> None:
    """messages.md §3: every response (the pairing extensions' too) carries Ext with
    Cache-Control: no-cache="Ext"; requests do not. Found by the passive checker."""
    headers, _ = messages.encode(message, source=DeviceId.new(), target=DeviceId.new(), sequence_id=9)
    names = {k.lower(): v for k, v in headers}
    assert ("ext" in names and names.get("cache-control") == 'no-cache="Ext"') is ext
