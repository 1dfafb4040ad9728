"""PIN pairing, secure and non-secure pipes, replay refusal and keep-alive over loopback."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp
import pytest
from multidict import CIMultiDict

from igrs import ControlPoint, Device
from igrs.constants import ReturnCode
from igrs.errors import RemoteError, SecurityError
from igrs.wire import messages
from igrs.wire.bodies import pipes as pb
from igrs.wire.bodies import sessions as ss
from igrs.wire.httpu import Headers
from igrs.wire.messages import ErrorResponse

LO = ["lo"]


class PinBoard:
    """What the device 'shows' on its screen."""

    def __init__(self) -> None:
        self.pins: list[str] = []

    def show(self, pin: str) -> None:
        self.pins.append(pin)

    async def read(self, _digits: int) -> str:
        return self.pins[-1]


@pytest.fixture
def board() -> PinBoard:
    return PinBoard()


@pytest.fixture
async def tv(free_udp_port: int, board: PinBoard) -> AsyncIterator[Device]:
    async with Device(name="TV", device_type="TV", interfaces=LO, port=free_udp_port, http_port=0,
                      on_pin=board.show, watch_interfaces=False) as dev:
        yield dev


@pytest.fixture
async def cp(free_udp_port: int, tv: Device) -> AsyncIterator[ControlPoint]:
    async with ControlPoint(interfaces=LO, port=free_udp_port, keepalive_interval=0) as c:
        assert await c.search(timeout=1.2, mx=1)
        yield c


async def test_pairing_then_secure_pipe(tv: Device, cp: ControlPoint, board: PinBoard) -> None:
    paired = await cp.pair(tv.device_id, board.read)
    assert paired.device_id == tv.device_id
    assert paired.public_key == tv.identity.public_key
    assert [p.device_id for p in cp.paired()] == [tv.device_id]
    assert tv.keystore.get(cp.device_id) is not None  # both sides remember
    pipe = await cp.open_pipe(tv.device_id)
    assert pipe.secure and pipe.alive
    assert [r.pipe_id for r in tv.pipes.pipes] == [pipe.pipe_id]
    reply = await pipe.request(messages.GetDeviceDescriptionRequest(), messages.GetDeviceDescriptionResponse)
    assert reply.description == tv.description
    await pipe.close()
    assert tv.pipes.pipes == []


async def test_wrong_pin_is_refused_and_nothing_stored(tv: Device, cp: ControlPoint, board: PinBoard) -> None:
    async def mistyped(digits: int) -> str:
        shown = await board.read(digits)
        return ("1" if shown[0] != "1" else "2") + shown[1:]

    with pytest.raises(SecurityError, match="wrong PIN"):
        await cp.pair(tv.device_id, mistyped)
    assert cp.paired() == [] and tv.keystore.peers() == []
    # The PIN was single-use: the right one, typed after the failure, no longer works either.
    first = board.pins[-1]
    with pytest.raises(SecurityError):
        await cp.pair(tv.device_id, first)
    assert board.pins[-1] != first  # a new PIN was shown for the new attempt


async def test_unpaired_peer_gets_no_secure_pipe(tv: Device, cp: ControlPoint, board: PinBoard) -> None:
    with pytest.raises(SecurityError):  # refused locally: we hold no key for it
        await cp.open_pipe(tv.device_id)
    await cp.pair(tv.device_id, board.read)
    assert tv.unpair(cp.device_id)  # the device forgets us; we still think we are paired
    with pytest.raises(RemoteError) as err:
        await cp.open_pipe(tv.device_id)
    assert err.value.return_code == ReturnCode.FORBIDDEN


async def test_non_secure_pipe_serves_the_description_and_nothing_more(tv: Device, cp: ControlPoint) -> None:
    pipe = await cp.open_pipe(tv.device_id, secure=False)
    assert not pipe.secure
    reply = await pipe.request(messages.GetDeviceDescriptionRequest(), messages.GetDeviceDescriptionResponse)
    assert reply.status.ok
    _, frame = await pipe.exchange(ss.CreateSessionRequest(client_id=1, service_id=1, sequence_id=1))
    assert frame is not None and isinstance(frame.message, ErrorResponse)
    assert frame.message.status.return_code == ReturnCode.NOT_AUTHENTICATED


async def test_replayed_secure_request_is_rejected(tv: Device, cp: ControlPoint, board: PinBoard) -> None:
    await cp.pair(tv.device_id, board.read)
    pipe = await cp.open_pipe(tv.device_id)
    sealer = pipe._sealer()
    assert sealer is not None
    seq = cp.http.next_sequence()
    wire = sealer(messages.GetDeviceDescriptionRequest(), seq)
    headers, body = messages.encode(wire, source=cp.device_id, target=tv.device_id, sequence_id=seq)
    answers = []
    async with aiohttp.ClientSession() as s:
        for _ in range(2):  # the original, then a recorded copy of it
            async with s.request("M-POST", tv.location, data=body, headers=CIMultiDict(headers)) as resp:
                answers.append((resp.status, messages.decode(Headers(resp.headers.items()), await resp.read())))
    assert answers[0][0] == 200 and isinstance(answers[0][1].message, pb.SecureMessage)
    status, frame = answers[1]
    assert status != 200 and isinstance(frame.message, ErrorResponse)


async def test_tampered_secure_request_is_rejected(tv: Device, cp: ControlPoint, board: PinBoard) -> None:
    await cp.pair(tv.device_id, board.read)
    pipe = await cp.open_pipe(tv.device_id)
    sealer = pipe._sealer()
    assert sealer is not None
    seq = cp.http.next_sequence()
    wire = sealer(messages.GetDeviceDescriptionRequest(), seq)
    # Re-label the sealed body as another message type: the AEAD binds the header.
    headers, body = messages.encode(wire, source=cp.device_id, target=tv.device_id, sequence_id=seq)
    headers = [(k, "SearchDeviceRequestOnDevice" if k == "01-IGRSMessageType" else
                '"IGRS-SearchDevice-Request-OnDevice"' if k == "02-SoapAction" else v) for k, v in headers]
    async with aiohttp.ClientSession() as s, s.request(
            "M-POST", tv.location, data=body, headers=CIMultiDict(headers)) as resp:
        assert resp.status in (400, 401, 403)


async def test_keepalive_declares_a_silent_device_gone(free_udp_port: int, board: PinBoard) -> None:
    dev = Device(name="PC", interfaces=LO, port=free_udp_port, http_port=0, on_pin=board.show,
                 watch_interfaces=False)
    await dev.start()
    async with ControlPoint(interfaces=LO, port=free_udp_port, keepalive_interval=0.2) as cp:
        await cp.locate(dev.device_id, mx=1)  # ends at its first answer (tests/pairing.py)
        await cp.pair(dev.device_id, board.read)
        pipe = await cp.open_pipe(dev.device_id)
        await asyncio.sleep(0.7)
        assert pipe.alive  # probes answered
        await dev.stop()
        for _ in range(50):
            if not pipe.alive:
                break
            await asyncio.sleep(0.1)
        assert not pipe.alive and "keep-alive" in (pipe.closed_reason or "")


async def test_pairing_needs_a_screen(free_udp_port: int) -> None:
    async with (
        Device(name="Headless", interfaces=LO, port=free_udp_port, http_port=0) as dev,
        ControlPoint(interfaces=LO, port=free_udp_port) as cp,
    ):
        await cp.locate(dev.device_id, mx=1)
        with pytest.raises(RemoteError) as err:
            await cp.pair(dev.device_id, "123456")
        assert err.value.return_code == ReturnCode.FORBIDDEN
