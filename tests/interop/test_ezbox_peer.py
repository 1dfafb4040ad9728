"""The legacy reference peer (ezbox_peer.py, ezbox's bytes and parser rules) and ``igrs`` talk,
both ways, over real sockets (issue 11 item 5):

* the peer as client against ``igrs device run --open-services``: GetDeviceDescription,
  CreateSession, InvokeService in RPC style and its errors; against a device whose service is
  sealed (the default): refused with 401 (pipes.md §1);
* ``igrs`` as client (``igrs describe``, ``igrs call --open``, the API) against the peer as
  server: the same exchanges, its answers without SessionId and with empty device ids, its bare
  400 as a RemoteError.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
from collections.abc import AsyncIterator
from typing import Any

import pytest
from ezbox_peer import (
    EzboxPeer,
    create_session_body,
    envelope,
    exchange,
    ezbox_request,
    invoke_body,
    status_of,
)

from igrs import ControlPoint
from igrs.constants import IGRS_NS, ReturnCode
from igrs.errors import RemoteError

pytestmark = pytest.mark.timeout(90)
IGRS = [sys.executable, "-m", "igrs"]
EZ_ID = "urn:IGRS:Device:DeviceId:0b9e4d33-71a2-4c6f-8e15-2f4a6c8d9e10"


def env() -> dict[str, str]:
    out = {**os.environ, "PYTHONUNBUFFERED": "1"}
    out.pop("IGRS_INTERFACES", None)
    return out


@contextlib.asynccontextmanager
async def igrs_device(port: int, *extra: str) -> AsyncIterator[dict[str, Any]]:
    """``igrs device run --sample-service`` on loopback; yields its ``ready`` JSON line."""
    proc = await asyncio.create_subprocess_exec(
        *IGRS, "device", "run", "--name", "Lab TV", "-i", "lo", "--port", str(port), "--http-port", "0",
        "--json", "--no-pairing", "--sample-service", *extra,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env())
    try:
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), 20)
        ready = json.loads(line)
        assert ready["event"] == "ready", line
        yield ready
    finally:
        if proc.returncode is None:
            proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), 10)
            except TimeoutError:
                proc.kill()
                await proc.wait()


def endpoint(ready: dict[str, Any]) -> tuple[str, int, str]:
    host, port = ready["location"].split("//", 1)[1].split("/", 1)[0].rsplit(":", 1)
    return host, int(port), ready["id"]


async def ezbox_call(host: str, port: int, target: str, mtype: str, body: bytes, seq: int) -> Any:
    return await exchange(host, port, ezbox_request(mtype, body, source=EZ_ID, target=target, seq=seq,
                                                    host=f"{host}:{port}"))


class Legacy:
    """The legacy client's calls to one device."""

    def __init__(self, ready: dict[str, Any]) -> None:
        self.host, self.port, self.target = endpoint(ready)

    async def describe(self, body: bytes, seq: int) -> Any:
        return await ezbox_call(self.host, self.port, self.target, "GetDeviceDescriptionRequest", body, seq)

    async def create(self, client: int, sid: int, seq: int) -> Any:
        body = create_session_body(client, sid, seq)
        return await ezbox_call(self.host, self.port, self.target, "CreateSessionRequest", body, seq)

    async def invoke(self, client: int, sid: int, seq: int, args: str) -> Any:
        body = invoke_body(client, sid, seq, args)
        return await ezbox_call(self.host, self.port, self.target, "InvokeServiceRequest", body, seq)


# --- the legacy peer as client ----------------------------------------------------------------
async def test_legacy_client_uses_an_open_service(free_udp_port: int) -> None:
    async with igrs_device(free_udp_port, "--open-services") as ready:
        peer = Legacy(ready)
        # GetDeviceDescription, its body an empty <Session> as ezbox writes every body
        desc = await peer.describe(envelope(f'<Session xmlns="{IGRS_NS}"></Session>'), 41)
        assert status_of(desc) == 200 and desc.body_element == "GetDeviceDescriptionResponse"
        assert desc.fields["AcknowledgeId"] == "41" and desc.texts("UDN") == [peer.target]
        (sid,) = ready["open_services"]
        assert desc.texts("serviceId") == [str(sid)]
        # CreateSession: answered in <Session> (the public form), AcknowledgeId = SequenceId
        created = await peer.create(77, sid, 42)
        assert status_of(created) == 200 and created.body_element == "Session", created.body
        f = created.fields
        assert (f["ReturnCode"], f["AcknowledgeId"], f["SourceServiceId"], f["TargetClientId"]) == (
            "200", "42", str(sid), "77")
        # InvokeService, RPC style: the operation as InvokeArguments' child, then by argument name
        for seq, args, level in ((43, "<SetLevel><level>30</level></SetLevel>", "30"),
                                 (44, "<level>31</level>", "31")):
            answer = await peer.invoke(77, sid, seq, args)
            assert status_of(answer) == 200 and answer.body_element == "Session"
            assert answer.fields["ReturnCode"] == "200" and answer.fields["AcknowledgeId"] == str(seq)
            assert answer.texts("Argument") == [level]
        # errors, as the typed answer's ReturnCode (an ezbox client reads Session/ReturnCode)
        for seq, args, code in ((45, "<NoSuchAction><x>1</x></NoSuchAction>", "404"), (46, "", "400"),
                                (47, "<level>loud</level>", "400")):
            answer = await peer.invoke(77, sid, seq, args)
            assert status_of(answer) == 200 and answer.fields["ReturnCode"] == code, (args, answer.fields)
        # and an HTTP error status where no typed answer exists (version 2.0: 505)
        data = ezbox_request("CreateSessionRequest", create_session_body(78, sid, 48), source=EZ_ID,
                             target=peer.target, seq=48).replace(b"IGRS/1.0", b"IGRS/2.0")
        assert status_of(await exchange(peer.host, peer.port, data)) == ReturnCode.VERSION_NOT_SUPPORTED


async def test_legacy_client_is_refused_by_a_sealed_service(free_udp_port: int) -> None:
    """The default: the sample service is for paired devices only; a pipe-less CreateSession
    and InvokeService are refused with the documented 401 (an ezbox client reads the status line;
    the ErrorResponse body is not in its message-type table)."""
    async with igrs_device(free_udp_port) as ready:
        peer = Legacy(ready)
        assert ready["open_services"] == []
        desc = await peer.describe(envelope(""), 51)
        assert status_of(desc) == 200  # the description stays readable without a pipe
        (sid,) = map(int, desc.texts("serviceId"))
        created = await peer.create(7, sid, 52)
        assert status_of(created) == ReturnCode.NOT_AUTHENTICATED
        assert created.start == "HTTP/1.1 401 Unauthorized" and created.fields == {}  # ErrorResponse: not read
        invoked = await peer.invoke(7, sid, 53, "<level>1</level>")
        assert status_of(invoked) == ReturnCode.NOT_AUTHENTICATED


# --- igrs as client of the legacy peer ----------------------------------------------------------
async def run_igrs(*argv: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(*IGRS, *argv, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.PIPE, env=env())
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_igrs_cli_describes_and_calls_the_legacy_peer(free_udp_port: int) -> None:
    async with EzboxPeer(on_invoke=lambda text: f"pong:{text}") as peer:
        rc, out, err = await run_igrs("describe", peer.address, "-i", "lo", "--port", str(free_udp_port))
        assert rc == 0, err
        assert "ezbox" in out and peer.device_id in out and "Echo (#1)" in out
        rc, out, err = await run_igrs("call", peer.address, "1", "Echo", "text=hi", "--open", "--json",
                                      "-i", "lo", "--port", str(free_udp_port))
        assert rc == 0, err
        assert json.loads(out) == "pong:"  # ezbox keeps only the text of InvokeArguments: none here
        kinds = [m.header("01-IGRSMessageType") for m in peer.received]
        assert "GetDeviceDescriptionRequest" in kinds  # the services of an open agent: its description
        session = [m for m in peer.received if m.header("01-IGRSMessageType") != "GetDeviceDescriptionRequest"]
        assert [m.header("01-IGRSMessageType") for m in session] == [
            "CreateSessionRequest", "InvokeServiceRequest", "DestroySessionNotify"]
        created, invoked = session[0], session[1]
        assert created.body_element == invoked.body_element == "Session"
        assert invoked.fields["SourceClientId"] == created.fields["SourceClientId"]
        assert "ActionName" not in invoked.fields  # RPC style: the operation is InvokeArguments' child
        assert invoked.texts("text") == ["hi"]  # InvokeArguments/Echo/text: the operation, its argument
        assert b"<Echo><text" in invoked.body
        assert any("DestroySessionNotify is not handled" in r for r in peer.refused)  # bare 400, ignored


async def test_igrs_api_against_the_legacy_peer_and_its_bare_400(free_udp_port: int) -> None:
    async with EzboxPeer(on_invoke=lambda text: f"PONG{text}") as peer, \
            ControlPoint(interfaces=["lo"], port=free_udp_port) as cp:
        record = await cp.connect(peer.address)
        assert str(record.device_id) == peer.device_id and record.name == "ezbox"
        async with cp.session(record, "urn:IGRS:ServiceType:Echo:1", open=True) as echo:
            assert echo.session_id is None  # its answer carries none: the id pair names the session
            assert await echo.call("Echo") == "PONG"  # its opaque InvokeArguments text is the result
        with pytest.raises(RemoteError) as bare:  # not in its table: a bare 400, no IGRS headers
            await cp.search_on_device(record)
        assert bare.value.return_code == ReturnCode.BAD_MESSAGE
        assert "missing header" not in bare.value.reason
        with pytest.raises(RemoteError) as refused:  # the sealed path needs a pipe it does not have
            await cp.http.send(record.url, _pipe_request(), record.device_id)
        assert refused.value.return_code == ReturnCode.BAD_MESSAGE


def _pipe_request() -> Any:
    from igrs.wire.bodies import pipes as pb

    return pb.CreatePipeRequest(True, b"\x01\x20" + bytes(40))
