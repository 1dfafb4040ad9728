"""Remote access to a home: from the WAN side, a phone lists the home LAN's devices through
the relay and a gateway device (ControlPoint on the LAN; here the LAN is loopback)."""

from __future__ import annotations

import asyncio
import contextlib

from relay_helpers import World

from igrs import ControlPoint, Device
from igrs.relay.gateway import HomeGateway, list_home_devices

LO = ["lo"]


async def test_phone_lists_home_devices_through_gateway(world: World, free_udp_port: int
                                                        ) -> None:
    alice = await world.user("alice")
    phone = await world.connect(alice)
    gw = await world.owned_device(phone, "gateway")
    gw_client = await world.connect(gw)
    async with (
        Device(name="Living room TV", device_type="TV", interfaces=LO, port=free_udp_port,
               http_port=0) as tv,
        Device(name="Study PC", device_type="PC", interfaces=LO, port=free_udp_port,
               http_port=0) as pc,
        ControlPoint(interfaces=LO, port=free_udp_port) as cp,
    ):
        gateway = HomeGateway(gw_client, cp)
        task = asyncio.create_task(gateway.serve())
        try:
            await phone.send(gw.principal, "not for the gateway")  # other namespaces pass by
            devices = await list_home_devices(phone, gw.principal, search_timeout=1.0)
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    by_id = {d["device_id"]: d for d in devices}
    assert by_id[str(tv.device_id)]["name"] == "Living room TV"
    assert by_id[str(pc.device_id)]["device_type"].endswith("PC:1")
    assert by_id[str(tv.device_id)]["location"].startswith("http://127.0.0.1:")
    assert gateway.served == 1
