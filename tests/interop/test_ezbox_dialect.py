"""Every public dialect is accepted (issue 11 item 1): each case is built from the exact bytes
of /work/shared/reference/ezbox-dialect.md (tests/interop/ezbox_peer.py writes them), decoded by
the codec, answered by a ServiceHost, and sent to a Device's HTTP endpoint over real TCP."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from ezbox_peer import (
    EMPTY_ID,
    create_session_body,
    envelope,
    ezbox_request,
    ezbox_response,
    invoke_body,
    session,
)

from igrs import Device
from igrs.constants import IGRS_NS, ReturnCode
from igrs.errors import ProtocolError
from igrs.node.service import Service, action
from igrs.node.service_host import PeerInfo, ServiceHost
from igrs.wire import messages
from igrs.wire.bodies import sessions as ss
from igrs.wire.ids import UNKNOWN_DEVICE, DeviceId

TV = DeviceId(uuid.UUID("6f1c2a9e-3b7d-4e25-9a41-0c8d5e7f1b22"))
EZ = DeviceId(uuid.UUID("0b9e4d33-71a2-4c6f-8e15-2f4a6c8d9e10"))


def request(mtype: str, body: bytes, *, seq: int = 42, target_first: bool = True) -> bytes:
    return ezbox_request(mtype, body, source=str(EZ), target=str(TV), seq=seq, target_first=target_first)


# --- the codec ---------------------------------------------------------------------------------
@pytest.mark.parametrize("target_first", [True, False], ids=["target-then-source", "source-then-target"])
def test_create_session_request_as_ezbox_writes_it(target_first: bool) -> None:
    """Man: without spaces, both device-id orders, 2002/12 namespace with encodingStyle, no XML
    declaration, LF after end tags, <Session> body, ezbox's NULL security id."""
    frame = messages.parse_http(request("CreateSessionRequest", create_session_body(1234567, 1, 42),
                                        target_first=target_first))
    assert frame.routing == messages.Routing("CreateSessionRequest", EZ, TV, 42)
    assert frame.message == ss.CreateSessionRequest(1234567, 1, 42, ss.UserInfo("igrs-tester"))


def test_man_headers_in_either_order() -> None:
    data = request("CreateSessionRequest", create_session_body(5, 1, 7))
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    mans = [line for line in lines if line.startswith(b"Man:")]
    swapped = [mans[1] if line == mans[0] else mans[0] if line == mans[1] else line for line in lines]
    frame = messages.parse_http(b"\r\n".join(swapped) + b"\r\n\r\n" + body)
    assert isinstance(frame.message, ss.CreateSessionRequest) and frame.message.client_id == 5


def test_invoke_service_request_without_an_operation_name() -> None:
    body = invoke_body(1234567, 1, 43, "<SetLevel><level>40</level></SetLevel>")
    msg = messages.parse_http(request("InvokeServiceRequest", body, seq=43, target_first=False)).message
    assert isinstance(msg, ss.InvokeServiceRequest) and msg.action == "" and msg.call is not None
    assert msg.call.operation == "SetLevel" and msg.call.operation_arguments == (("level", "40"),)
    assert isinstance(msg.call.operation_arguments[0][1], ss.BareText)
    text = messages.parse_http(request("InvokeServiceRequest", invoke_body(1, 1, 44, "hello"))).message
    assert isinstance(text, ss.InvokeServiceRequest) and text.call == ss.RpcCall(arguments=(), text="hello")


def test_ezbox_answer_with_empty_device_ids_and_no_sequence_id() -> None:
    """InvokeServiceResponse / CreateSessionResponse as ezbox answers: empty 01-Source/Target
    DeviceId, no 01-SequenceId, no SessionId; the source is the device the request went to."""
    fields = (("SourceServiceId", "1"), ("TargetClientId", "1234567"), ("AcknowledgeId", "42"),
              ("ReturnCode", "200"))
    for mtype, reply in (("CreateSessionResponse", ss.CreateSessionResponse(messages.Status(42), 1, 1234567)),
                         ("InvokeServiceResponse", ss.InvokeServiceResponse(messages.Status(42), 1, 1234567,
                                                                           (("result", "echo"),)))):
        extra = (("InvokeArguments", "echo"),) if mtype == "InvokeServiceResponse" else ()
        data = ezbox_response(mtype, envelope(session(*fields, *extra)))
        assert f"01-SourceDeviceId:{EMPTY_ID}\r\n".encode() in data and b"01-SequenceId" not in data
        msg = messages.parse_message(data, max_size=1 << 20, allow_body=True)
        frame = messages.decode(msg.headers, msg.body, answering=TV)
        assert frame.routing.source == TV and frame.routing.target is None and frame.message == reply
        assert messages.decode(msg.headers, msg.body).routing.source == UNKNOWN_DEVICE  # no target known


def test_empty_device_ids_are_refused_in_a_request() -> None:
    data = request("CreateSessionRequest", create_session_body(5, 1, 7)).replace(
        f"01-SourceDeviceId:{EZ}".encode(), f"01-SourceDeviceId:{EMPTY_ID}".encode())
    with pytest.raises(ProtocolError):
        messages.parse_http(data)


@pytest.mark.parametrize("body", [
    envelope(""),  # an empty SOAP Body
    envelope(f'<Session xmlns="{IGRS_NS}"></Session>'),  # an empty body element (ezbox's)
    envelope(f'<Session xmlns="{IGRS_NS}">\n</Session>'),
    envelope(f'<GetDeviceDescriptionRequest xmlns="{IGRS_NS}"/>'),
], ids=["empty-Body", "empty-Session", "Session-with-LF", "own-form"])
def test_a_request_without_fields(body: bytes) -> None:
    data = ezbox_request("GetDeviceDescriptionRequest", body, source=str(EZ), target=str(TV), seq=3)
    assert messages.parse_http(data).message == messages.GetDeviceDescriptionRequest()


def test_an_empty_body_is_refused_where_fields_are_needed() -> None:
    with pytest.raises(ProtocolError):
        messages.parse_http(request("CreateSessionRequest", envelope("")))
    with pytest.raises(ProtocolError):
        messages.parse_http(request("CreateSessionRequest", envelope(f'<Session xmlns="{IGRS_NS}"/>')))


# --- RPC-style invocation at a ServiceHost -------------------------------------------------------
class Lamp(Service):
    service_type = "urn:IGRS:ServiceType:Lamp:1"

    @action
    async def SetLevel(self, level: int) -> int:
        return level

    @action
    async def SetColour(self, colour: str, level: int = 100) -> str:
        return f"{colour}@{level}"

    @action
    async def Blink(self, times: int) -> int:
        return times


class Bell(Service):
    service_type = "urn:IGRS:ServiceType:Bell:1"

    @action
    async def Ring(self, tune: str) -> str:
        return f"ring {tune}"


async def _open(host: ServiceHost, sid: int, client: int = 1234567, seq: int = 1) -> None:
    created = await host.handle(messages.parse_http(request(
        "CreateSessionRequest", create_session_body(client, sid, seq))), PeerInfo(EZ, "127.0.0.1"))
    assert isinstance(created, ss.CreateSessionResponse) and created.status.ok


async def _invoke(host: ServiceHost, sid: int, invoke_args: str, seq: int) -> ss.InvokeServiceResponse:
    peer = PeerInfo(EZ, "127.0.0.1")
    frame = messages.parse_http(request("InvokeServiceRequest", invoke_body(1234567, sid, seq, invoke_args),
                                        seq=seq))
    reply = await host.handle(frame, peer)
    reply = getattr(reply, "message", reply)  # BuiltMessage
    assert isinstance(reply, ss.InvokeServiceResponse)
    return reply


async def test_rpc_style_invocations_are_resolved() -> None:
    host = ServiceHost(require_secure=False)
    lamp, bell = host.add(Lamp()), host.add(Bell())
    for sid in (lamp, bell):
        await _open(host, sid)
    cases = [
        (lamp, "<SetColour><colour>red</colour></SetColour>", 200, "red@100"),  # 1: the one child names it
        (lamp, "<findServiceAttribute/>", 200, None),  # ... a standard operation too
        (bell, "<tune>bim</tune>", 200, "ring bim"),  # 2: the service's only action
        (bell, "bam", 200, "ring bam"),  # ... its bare text as the one argument (ezbox's opaque text)
        (lamp, "<level>7</level>", 200, 7),  # 3: the one action taking these argument names
        (lamp, '<Argument name="times" type="int">3</Argument>', 200, 3),  # typed arguments too
        (lamp, "<level>x</level>", 400, None),  # bare text that is no int
        (lamp, "<NoSuchAction><a>1</a></NoSuchAction>", 404, None),
        (lamp, "<hue>1</hue>", 400, None),  # no action takes it
    ]
    for seq, (sid, args, code, result) in enumerate(cases, 10):
        reply = await _invoke(host, sid, args, seq)
        assert reply.status.return_code == code, (args, reply.status)
        assert reply.status.acknowledge_id == seq
        if result is not None:
            assert dict(reply.results)["result"] == result, args


async def test_ambiguous_rpc_invocation_is_a_400_naming_the_candidates() -> None:
    host = ServiceHost(require_secure=False)
    lamp = host.add(Lamp())
    await _open(host, lamp)
    reply = await _invoke(host, lamp, "", 2)  # no argument: nothing tells the actions apart
    assert reply.status.return_code == ReturnCode.BAD_MESSAGE
    reply = await _invoke(host, lamp, "<colour>x</colour>", 3)
    assert reply.status.return_code == 200  # only SetColour takes colour
    two = await _invoke(host, lamp, "<level>1</level><colour>x</colour>", 4)
    assert two.status.return_code == 200 and dict(two.results)["result"] == "x@1"

    class Twins(Service):
        service_type = "urn:IGRS:ServiceType:Twins:1"

        @action
        async def Up(self, step: int) -> int:
            return step

        @action
        async def Down(self, step: int) -> int:
            return -step

    twins = host.add(Twins())
    await _open(host, twins, seq=5)
    reply = await _invoke(host, twins, "<step>1</step>", 6)
    assert reply.status.return_code == ReturnCode.BAD_MESSAGE
    assert "Down" in reply.status.reason and "Up" in reply.status.reason


async def test_a_session_known_by_its_id_pair_is_destroyed_by_it() -> None:
    host = ServiceHost(require_secure=False)
    sid = host.add(Bell())
    peer = PeerInfo(EZ, "127.0.0.1")
    await _open(host, sid, client=99)
    notify = ezbox_request("DestroySessionNotify", envelope(session(("SourceClientId", "99"),
                                                                    ("TargetServiceId", str(sid)))),
                           source=str(EZ), target=str(TV), seq=2)
    assert await host.handle(messages.parse_http(notify), peer) is None
    assert len(host.sessions) == 0


# --- the HTTP endpoint of a Device, over TCP --------------------------------------------------------
async def _post_raw(location: str, data: bytes) -> tuple[int, bytes, bytes]:
    host, port = location.split("//", 1)[1].split("/", 1)[0].rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(data)
        await writer.drain()
        head = await reader.readuntil(b"\r\n\r\n")
        length = next(int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                      if line.lower().startswith(b"content-length:"))
        body = await reader.readexactly(length)
    finally:
        writer.close()
    return int(head.split(b" ", 2)[1]), head, body


async def test_device_endpoint_takes_ezbox_bytes(free_udp_port: int) -> None:
    async with Device(name="TV", interfaces=["lo"], port=free_udp_port, http_port=0,
                      watch_interfaces=False) as dev:
        sid = dev.add_service(Bell())
        target = str(dev.device_id)
        for body in (envelope(""), envelope(f'<Session xmlns="{IGRS_NS}"></Session>')):
            data = ezbox_request("GetDeviceDescriptionRequest", body, source=str(EZ), target=target, seq=8)
            status, _, answer = await _post_raw(dev.location, data)
            assert status == 200 and b"GetDeviceDescriptionResponse" in answer
        # a sealed service: the request is understood and refused for want of a pipe (401, not 400)
        data = ezbox_request("CreateSessionRequest", create_session_body(1234567, sid, 9), source=str(EZ),
                             target=target, seq=9)
        status, head, _ = await _post_raw(dev.location, data)
        assert status == ReturnCode.NOT_AUTHENTICATED, head
