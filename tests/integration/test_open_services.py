"""Services shared openly (issue 11 item 4): a peer without any pipe opens a session and invokes
an open service in the clear; a sealed service (the default) refuses it with 401; open sessions
are capped per address and end when idle. Real sockets on loopback."""

from __future__ import annotations

import pytest

from igrs import ControlPoint, Device
from igrs.apps.sample_service import Volume
from igrs.constants import ReturnCode
from igrs.core.access import Access
from igrs.core.sessions import SessionTable
from igrs.errors import IGRSError, RemoteError
from igrs.net.http import IgrsHttpClient
from igrs.wire import isdp
from igrs.wire.bodies import services as sv
from igrs.wire.bodies import sessions as ss
from igrs.wire.ids import DeviceId

LO = ["lo"]


async def test_an_open_service_is_used_without_a_pipe_a_sealed_one_is_refused(free_udp_port: int) -> None:
    async with Device(name="TV", interfaces=LO, port=free_udp_port, http_port=0, watch_interfaces=False) as dev:
        open_sid = dev.add_service(Volume(), access="open")
        sealed_sid = dev.add_service(Volume())
        assert [s.service_id for s in dev.services.open_services] == [open_sid]
        async with ControlPoint(interfaces=LO, port=free_udp_port) as cp:
            record = await cp.connect(dev.location.split("//", 1)[1].split("/", 1)[0])  # by address
            assert record.device_id == dev.device_id
            async with cp.session(record, open_sid, open=True) as vol:  # no pairing, no pipe
                assert await vol.SetLevel(level=33) == 33
                assert await vol.get("level") == 33
                assert vol.session_id is not None
                with pytest.raises(RemoteError) as events:  # attribute events need a secure pipe
                    await vol.call("subscribe", location="http://127.0.0.1:9/IGRS")
                assert events.value.return_code == ReturnCode.PRECONDITION_FAILED
            assert cp._pipes == {}  # nothing paired, no pipe opened
            with pytest.raises(RemoteError) as refused:
                async with cp.session(record, sealed_sid, open=True):
                    pass
            assert refused.value.return_code == ReturnCode.NOT_AUTHENTICATED
        assert len(dev.services.sessions) == 0  # the open session was destroyed on leaving


async def test_the_access_rule_for_open_services(free_udp_port: int) -> None:
    """Only the service-addressed messages are admitted, and only for the open service; service
    search, session keys and device events stay sealed-only (401)."""
    async with Device(name="TV", interfaces=LO, port=free_udp_port, http_port=0, watch_interfaces=False) as dev:
        sid = dev.add_service(Volume(), access=Access.OPEN)
        client = IgrsHttpClient(DeviceId.new())
        try:
            async def code(message: object) -> int:
                try:
                    _, frame = await client.send(dev.location, message, dev.device_id)  # type: ignore[arg-type]
                except RemoteError as exc:
                    return int(exc.return_code)
                if frame is None:
                    return 200
                status = frame.message.status  # type: ignore[attr-defined]
                return int(status.return_code)

            assert await code(sv.GetServiceDescriptionRequest(sid)) == 200
            assert await code(sv.GetServiceDescriptionRequest(sid + 1)) == 401  # no such open service
            assert await code(sv.SearchServiceRequestOnDevice(isdp.SearchTarget.all())) == 401
            assert await code(ss.CreateSessionRequest(7, sid, 1)) == 200
            assert await code(ss.ApplySessionKeyRequest(7, sid, 1, 2, bytes(16))) == 401
            assert await code(ss.InvokeServiceRequest(7, sid, 3, "Mute", (("muted", True),))) == 200
            assert await code(ss.DestroySessionNotify(7, sid, None)) == 200
            dev.share_openly(sid, False)
            assert await code(ss.CreateSessionRequest(8, sid, 4)) == 401
        finally:
            await client.close()


async def test_a_paired_peers_session_is_not_reachable_in_the_clear(free_udp_port: int) -> None:
    """An open service's session made in a secure pipe cannot be used or ended unsealed by
    someone claiming that peer's id and client id (sessions.md §1)."""
    from igrs.node.service_host import PeerInfo, ServiceHost
    from igrs.wire import messages

    host = ServiceHost(require_secure=True)
    sid = host.add(Volume(), access="open")
    paired = PeerInfo(DeviceId.new(), "10.0.0.5")
    claimed = PeerInfo(paired.device_id, "10.0.0.66", secure=False)

    def frame(msg: messages.SoapMessage) -> messages.Frame:
        return messages.Frame(messages.Routing(msg.message_type, paired.device_id, None, 1), msg)

    made = await host.handle(frame(ss.CreateSessionRequest(9, sid, 1)), paired)
    assert isinstance(made, ss.CreateSessionResponse) and made.status.ok
    hijack = await host.handle(frame(ss.InvokeServiceRequest(9, sid, 2, "SetLevel", (("level", 1),))), claimed)
    assert getattr(hijack, "message", hijack).status.return_code == ReturnCode.NOT_FOUND  # type: ignore[union-attr]
    with pytest.raises(IGRSError) as ended:
        await host.handle(frame(ss.DestroySessionNotify(9, sid, None)), claimed)
    assert ended.value.return_code == ReturnCode.NOT_FOUND and len(host.sessions) == 1
    ok = await host.handle(frame(ss.InvokeServiceRequest(9, sid, 3, "SetLevel", (("level", 2),))), paired)
    assert getattr(ok, "message", ok).status.ok  # type: ignore[union-attr]


def test_open_sessions_are_capped_per_address_and_end_when_idle() -> None:
    table = SessionTable(max_open_per_address=2, max_open=3, open_idle_timeout=10.0)
    table.create("a", 1, 1, 0.0, open_from="10.0.0.1")
    table.create("b", 1, 1, 0.0, open_from="10.0.0.1")
    with pytest.raises(IGRSError) as per_address:
        table.create("c", 1, 1, 0.0, open_from="10.0.0.1")  # a third claimed id, same address
    assert per_address.value.return_code == ReturnCode.BUSY
    table.create("d", 1, 1, 0.0, open_from="10.0.0.2")
    with pytest.raises(IGRSError):
        table.create("e", 1, 1, 0.0, open_from="10.0.0.3")  # all open sessions taken ...
    table.create("paired", 1, 1, 0.0)  # ... the paired peers keep their room
    kept = table.lookup("a", 1, 1)
    kept.last_used = 8.0
    gone = table.expire_open(12.0)
    assert {s.peer for s in gone} == {"b", "d"} and len(table) == 2  # idle ones; paired sessions never
    table.create("c", 1, 1, 12.0, open_from="10.0.0.1")  # room again


async def test_the_open_agent_invokes_in_rpc_style(free_udp_port: int) -> None:
    """No ActionName: the operation is InvokeArguments' one child (services.md §3.1). Against a
    peer that answers like ezbox: tests/interop/test_ezbox_peer.py."""
    async with Device(name="TV", interfaces=LO, port=free_udp_port, http_port=0, watch_interfaces=False) as dev:
        sid = dev.add_service(Volume(), access="open")
        sent: list[ss.InvokeServiceRequest] = []
        handler = dev.handlers["InvokeServiceRequest"]

        async def spy(frame, ctx):  # type: ignore[no-untyped-def]
            sent.append(frame.message)
            return await handler(frame, ctx)

        dev.handlers["InvokeServiceRequest"] = spy
        async with ControlPoint(interfaces=LO, port=free_udp_port) as cp:
            record = await cp.connect(dev.location)
            async with cp.session(record, sid, open=True) as vol:
                assert await vol.Mute(muted=True) is True
        assert sent and sent[0].action == "" and sent[0].call is not None
        assert sent[0].call.operation == "Mute" and sent[0].call.operation_arguments == (("muted", True),)
