"""The home gateway over XMPP (Prosody and ejabberd): a phone invokes a home service, reads
it, and watches its evented attributes through the gateway; the LAN session is kept."""

from __future__ import annotations

import asyncio

import pytest
from pairing import pair_with
from xmpp_helpers import XWorld

from igrs import ControlPoint, Device
from igrs.apps.sample_service import Volume
from igrs.relay.errors import RelayError
from igrs.relay.gateway import GatewayCode, GatewayError, HomeGateway, RemoteHome

pytestmark = pytest.mark.timeout(60)
LO = ["lo"]


async def test_phone_invokes_and_watches_through_gateway(xw: XWorld, free_udp_port: int) -> None:
    phone, gw, stranger = await xw.client(), await xw.client(user=False), await xw.client()
    await xw.befriend(phone, gw)
    pins: list[str] = []
    async with (
        Device(name="Living room TV", device_type="TV", interfaces=LO, port=free_udp_port, http_port=0,
               on_pin=pins.append, watch_interfaces=False) as tv,
        ControlPoint(interfaces=LO, port=free_udp_port, keepalive_interval=0) as cp,
    ):
        tv.add_service(Volume())
        await pair_with(cp, tv, pins)
        gateway = HomeGateway(gw, cp)
        serving = asyncio.create_task(gateway.serve())
        try:
            tv_id = str(tv.device_id)
            remote = RemoteHome(phone, gw.principal)
            devices = await remote.devices(search_timeout=1.2)  # > the 1 s MX answer spread
            assert [d["name"] for d in devices] == ["Living room TV"]
            assert await remote.invoke(tv_id, "Volume", "SetLevel", level=30) == 30
            assert await remote.get(tv_id, "Volume", "level") == {"level": 30}
            assert gateway.sessions.opened == 1
            async with remote.watch(tv_id, "Volume", "level") as changes:
                assert await changes.next(5) == ("level", 30)
                await remote.invoke(tv_id, "Volume", "SetLevel", level=31)
                assert await changes.next(5) == ("level", 31)
            with pytest.raises(GatewayError) as gi:
                await remote.invoke(tv_id, "Volume", "Louder")
            assert gi.value.code == GatewayCode.NOT_FOUND
            with pytest.raises(RelayError) as ei:  # not related: refused before it leaves
                await RemoteHome(stranger, gw.principal).get(tv_id, "Volume")
            assert ei.value.code == 403
            answer = await gateway.handle(stranger.principal, {"op": "get", "device": tv_id,
                                                               "service": "Volume"})
            assert answer["error"]["code"] == 403  # and the gateway's own check
        finally:
            serving.cancel()
            await asyncio.gather(serving, return_exceptions=True)
