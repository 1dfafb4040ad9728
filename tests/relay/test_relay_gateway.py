"""Remote access to a home over loopback (no namespaces): from the "WAN" side a phone lists
the home LAN's devices and their services through the relay and a gateway device (a paired
ControlPoint on the LAN), invokes an action and reads attributes; parties not related to
the gateway are refused."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest
from pairing import pair_with
from relay_helpers import World

from igrs import ControlPoint, Device
from igrs.apps.sample_service import Volume
from igrs.node.service import Service, action
from igrs.relay import RelayClient
from igrs.relay.errors import RelayCode, RelayError
from igrs.relay.gateway import (
    GatewayCode,
    GatewayError,
    HomeGateway,
    RemoteHome,
    decode_value,
    encode_value,
    list_home_devices,
)

LO = ["lo"]
VOLUME = "urn:IGRS:ServiceType:Volume:1"


class Blob(Service):
    service_type = "urn:IGRS:ServiceType:Blob:1"
    name = "Blob"

    @action
    async def Reverse(self, data: bytes, tags: dict[str, list[int]]) -> dict[str, bytes]:
        return {"data": data[::-1], "first": bytes(tags.get("a", [])[:1])}


@contextlib.asynccontextmanager
async def serving(gateway: HomeGateway) -> AsyncIterator[HomeGateway]:
    task = asyncio.create_task(gateway.serve())
    try:
        yield gateway
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


@contextlib.asynccontextmanager
async def home(port: int) -> AsyncIterator[tuple[Device, Device, ControlPoint]]:
    """A TV sharing Volume and Blob (paired with the gateway's control point), a PC that
    shares Volume but is not paired."""
    pins: list[str] = []
    async with (
        Device(name="Living room TV", device_type="TV", interfaces=LO, port=port, http_port=0,
               on_pin=pins.append, watch_interfaces=False) as tv,
        Device(name="Study PC", device_type="PC", interfaces=LO, port=port, http_port=0,
               watch_interfaces=False) as pc,
        ControlPoint(interfaces=LO, port=port, keepalive_interval=0) as cp,
    ):
        tv.add_service(Volume())
        tv.add_service(Blob())
        pc.add_service(Volume())
        await pair_with(cp, tv, pins)  # the owner pairs the gateway, locally
        yield tv, pc, cp


def test_typed_values_round_trip() -> None:
    value = {"a": [1, 2.5, True, "x", b"\x00\xff"], "b": {"c": b""}}
    encoded = encode_value(value)
    assert encoded["a"][4] == {"$bytes": "AP8="}
    assert decode_value(encoded) == value
    with pytest.raises(ValueError):
        decode_value({"$bytes": "not base64!"})


async def test_phone_lists_and_invokes_home_services_through_gateway(
        world: World, free_udp_port: int) -> None:
    alice = await world.user("alice")
    phone = await world.connect(alice)
    gw = await world.owned_device(phone, "gateway")
    gw_client = await world.connect(gw)
    async with home(free_udp_port) as (tv, pc, cp), serving(HomeGateway(gw_client, cp)) as gateway:
        await phone.send(gw.principal, "not for the gateway")  # other namespaces pass by
        devices = await list_home_devices(phone, gw.principal, search_timeout=1.0)
        by_id = {d["device_id"]: d for d in devices}
        tv_id, pc_id = str(tv.device_id), str(pc.device_id)
        assert by_id[tv_id]["name"] == "Living room TV"
        assert by_id[pc_id]["device_type"].endswith("PC:1")
        assert by_id[tv_id]["location"].startswith("http://127.0.0.1:")
        assert by_id[tv_id]["paired"] is True and by_id[pc_id]["paired"] is False
        assert {s["service_type"] for s in by_id[tv_id]["services"]} == {
            VOLUME, "urn:IGRS:ServiceType:Blob:1"}
        assert [s["name"] for s in by_id[pc_id]["services"]] == ["Volume"]

        remote = RemoteHome(phone, gw.principal)
        # invoke by device id and type URN; by exact name and short type name
        assert await remote.invoke(tv_id, VOLUME, "SetLevel", level=30) == 30
        assert await remote.invoke("Living room TV", "Volume", "Mute", muted=True) is True
        assert await remote.get(tv_id, "Volume", "level") == {"level": 30}
        assert await remote.get(tv_id, "Volume") == {"level": 30, "muted": True}
        assert await remote.invoke(tv_id, "Blob", "Reverse", data=b"\x01\x02",
                                   tags={"a": [7, 8]}) == {"data": b"\x02\x01", "first": b"\x07"}
        desc = await remote.describe(tv_id, "Volume")
        assert {a["name"]: a["result"] for a in desc["actions"]} == {
            "SetLevel": "int", "Mute": "bool"}
        assert {"name": "level", "type": "int", "mutability": "dynamic",
                "notifiable": True} in desc["attributes"]
        # concurrent calls are matched to their answers
        levels = await asyncio.gather(*(remote.invoke(tv_id, "Volume", "SetLevel", level=n)
                                        for n in (1, 2, 3, 4)))
        assert levels == [1, 2, 3, 4]

        # documented error codes
        async def code(coro: object) -> int:
            with pytest.raises(GatewayError) as ei:
                await coro  # type: ignore[misc]
            return ei.value.code

        assert await code(remote.invoke(tv_id, "Volume", "Louder")) == 404  # no such action
        assert await code(remote.invoke(tv_id, "Volume", "SetLevel", level="x")) == 400
        assert await code(remote.invoke(tv_id, "Volume", "SetLevel")) == 400  # missing arg
        assert await code(remote.invoke(tv_id, "Tuner", "Next")) == 404  # no such service
        assert await code(remote.invoke(tv_id, "Volume", "subscribe")) == 400  # standard op
        assert await code(remote.invoke(pc_id, "Volume", "SetLevel", level=5)) == \
            GatewayCode.NOT_PAIRED
        assert await code(remote.invoke("urn:IGRS:Device:DeviceId:"
                                        "00000000-0000-4000-8000-000000000000",
                                        "Volume", "SetLevel", level=5)) == 404
        assert await code(remote.call("reboot")) == GatewayCode.UNKNOWN_OP
        address = tv.location.split("//", 1)[1].split("/", 1)[0]  # never an address from afar
        assert await code(remote.invoke(address, "Volume", "SetLevel", level=5)) == 400
        assert await code(remote.describe(tv.location, "Volume")) == 400
        assert tv.services  # the TV is untouched by the failures
    assert gateway.refused == 0
    assert gateway.served >= 15


async def test_unrelated_and_linked_parties_are_refused(world: World, free_udp_port: int) -> None:
    alice, mallory = await world.user("alice"), await world.user("mallory")
    phone, stranger = await world.connect(alice), await world.connect(mallory)
    gw = await world.owned_device(phone, "gateway")
    car = await world.owned_device(phone, "car")
    await phone.request("link", a=str(gw.principal), b=str(car.principal))
    gw_client, car_client = await world.connect(gw), await world.connect(car)
    async with home(free_udp_port) as (tv, _pc, cp), \
            serving(HomeGateway(gw_client, cp, owners_only=True)) as gateway:
        tv_id = str(tv.device_id)
        # an unrelated user: the relay refuses the request, nothing reaches the gateway
        with pytest.raises(RelayError) as ei:
            await RemoteHome(stranger, gw.principal).invoke(tv_id, "Volume", "SetLevel", level=99)
        assert ei.value.code == RelayCode.FORBIDDEN
        # a linked device is related (the relay delivers) but this gateway serves owners only
        with pytest.raises(GatewayError) as gi:
            await RemoteHome(car_client, gw.principal).invoke(tv_id, "Volume", "SetLevel",
                                                              level=99)
        assert gi.value.code == GatewayCode.FORBIDDEN
        assert gateway.refused == 1
        # the owner is served; the level was never changed by the refused parties
        assert await RemoteHome(phone, gw.principal).get(tv_id, "Volume", "level") == {"level": 20}
        # the owner unbinds the gateway: from then on the owner is refused too
        await phone.request("unbind", device=str(gw.principal))
        with pytest.raises(RelayError) as ei:
            await RemoteHome(phone, gw.principal).get(tv_id, "Volume", "level")
        assert ei.value.code == RelayCode.FORBIDDEN
        # the gateway's own check, beyond the relay's: a stranger's request is refused
        answer = await gateway.handle(stranger.principal, {"op": "get", "device": tv_id,  # type: ignore[arg-type]
                                                           "service": VOLUME})
        assert answer == {"error": {"code": 403, "reason": "not related to this gateway"}}


async def test_gateway_offline_busy_and_stale(world: World, free_udp_port: int) -> None:
    alice = await world.user("alice")
    phone = await world.connect(alice)
    gw = await world.owned_device(phone, "gateway")
    remote = RemoteHome(phone, gw.principal, timeout=0.5)
    # the gateway is not connected: the relay says so at once
    with pytest.raises(RelayError) as ei:
        await remote.devices()
    assert ei.value.code == RelayCode.TARGET_OFFLINE
    # a request stored while the gateway was away is not executed when it comes back
    await phone.send(gw.principal, '{"op": "invoke", "req": 7, "device": "x", "service": "y",'
                     ' "action": "z"}', namespace="urn:IGRS:relay:gateway", durable=True)
    gw_client: RelayClient = await world.connect(gw)

    class NoLan:
        keystore = None

        async def search(self, timeout: float = 0, target: object = None) -> list[object]:
            await asyncio.sleep(timeout)
            return []

    async with serving(HomeGateway(gw_client, NoLan(), max_inflight=1)):
        stale = await asyncio.wait_for(phone.route("urn:IGRS:relay:gateway").get(), 5)
        assert stale.text == '{"req":7,"error":{"code":408,"reason":"stored request not executed"}}'
        # one request in flight at most: the second is answered 503 at once
        slow = asyncio.create_task(remote.call("list_devices", {"timeout": 1.0}, timeout=5))
        await asyncio.sleep(0.2)
        with pytest.raises(GatewayError) as gi:
            await remote.call("list_devices", {"timeout": 0}, timeout=5)
        assert gi.value.code == GatewayCode.BUSY
        assert (await slow)["devices"] == []


async def test_remote_watch_and_session_kept_across_calls(world: World, free_udp_port: int) -> None:
    """A phone watches the TV's evented Volume attributes through the gateway; the gateway's
    LAN session is opened once for many calls; a watch ends when its party stops being related."""
    alice = await world.user("alice")
    phone = await world.connect(alice)
    gw = await world.owned_device(phone, "gateway")
    gw_client = await world.connect(gw)
    async with home(free_udp_port) as (tv, _pc, cp), serving(HomeGateway(gw_client, cp)) as gateway:
        tv_id = str(tv.device_id)
        remote = RemoteHome(phone, gw.principal)
        for n in (1, 2, 3):
            assert await remote.invoke(tv_id, "Volume", "SetLevel", level=n) == n
        assert await remote.get(tv_id, "Volume", "level") == {"level": 3}
        assert gateway.sessions.opened == 1 and len(gateway.sessions) == 1
        async with remote.watch(tv_id, "Volume", "level") as changes:
            assert await changes.next(5) == ("level", 3)  # the current value first
            await remote.invoke(tv_id, "Volume", "SetLevel", level=42)
            assert await changes.next(5) == ("level", 42)
            assert gateway.watches.count(alice.principal) == 1
        for _ in range(100):  # unwatched when the context ended
            if gateway.watches.count() == 0:
                break
            await asyncio.sleep(0.02)
        assert gateway.watches.count() == 0
        with pytest.raises(GatewayError) as gi:
            async with remote.watch(tv_id, "Tuner", "channel"):
                pass
        assert gi.value.code == 404
        # unbound: the next event cannot be delivered (403), the gateway ends the watch
        async with remote.watch(tv_id, "Volume") as changes:
            assert dict([await changes.next(5), await changes.next(5)]) == {"level": 42, "muted": False}
            await phone.request("unbind", device=str(gw.principal))
            async with cp.session(tv.device_id, VOLUME) as svc:  # someone at home turns it down
                await svc.SetLevel(level=7)
            for _ in range(200):
                if gateway.watches.count() == 0:
                    break
                await asyncio.sleep(0.02)
            assert gateway.watches.count() == 0
