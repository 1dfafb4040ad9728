"""The M-POST /IGRS endpoint over real TCP: answers, and the documented codes for bad input."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest
from multidict import CIMultiDict

from igrs import Device
from igrs.constants import DESCRIPTION_PATH, ReturnCode
from igrs.wire import description as ddesc
from igrs.wire import messages
from igrs.wire.httpu import Headers
from igrs.wire.ids import DeviceId
from igrs.wire.messages import ErrorResponse


@pytest.fixture
async def device(free_udp_port: int) -> AsyncIterator[Device]:
    async with Device(
        name="TV", device_type="TV", interfaces=["lo"], port=free_udp_port, http_port=0, watch_interfaces=False
    ) as dev:
        yield dev


async def post(
    url: str, headers: list[tuple[str, str]], body: bytes, method: str = "M-POST"
) -> tuple[int, messages.Frame | None, bytes]:
    async with (
        aiohttp.ClientSession() as s,
        s.request(method, url, data=body, headers=CIMultiDict(headers)) as resp,
    ):
        data = await resp.read()
        try:
            frame = messages.decode(Headers(resp.headers.items()), data)
        except Exception:
            frame = None
        return resp.status, frame, data


def request(msg: messages.SoapMessage, target: DeviceId | None) -> tuple[list[tuple[str, str]], bytes]:
    return messages.encode(msg, source=DeviceId.new(), target=target, sequence_id=42)


def error_code(frame: messages.Frame | None) -> int:
    assert frame is not None and isinstance(frame.message, ErrorResponse)
    return frame.message.status.return_code


async def test_get_device_description_over_m_post_and_post(device: Device) -> None:
    for method in ("M-POST", "POST"):
        headers, body = request(messages.GetDeviceDescriptionRequest(), device.device_id)
        status, frame, _ = await post(device.location, headers, body, method)
        assert status == 200 and frame is not None
        reply = frame.message
        assert isinstance(reply, messages.GetDeviceDescriptionResponse)
        assert reply.status.ok and reply.status.acknowledge_id == 42
        assert reply.description == device.description
        assert frame.routing.source == device.device_id


async def test_plain_get_of_the_description(device: Device) -> None:
    url = device.location.replace("/IGRS", DESCRIPTION_PATH)
    async with aiohttp.ClientSession() as s, s.get(url) as resp:
        assert resp.status == 200
        assert ddesc.from_bytes(await resp.read()) == device.description


async def test_malformed_xml_gets_400(device: Device) -> None:
    headers, _ = request(messages.GetDeviceDescriptionRequest(), device.device_id)
    status, frame, _ = await post(device.location, headers, b"<not-closed")
    assert status == 400 and error_code(frame) == ReturnCode.BAD_MESSAGE


async def test_xml_bomb_gets_400_fast(device: Device) -> None:
    bomb = (
        b'<?xml version="1.0"?><!DOCTYPE l [<!ENTITY a "aaaaaaaaaa">'
        + b"".join(f'<!ENTITY {chr(98 + i)} "{("&" + chr(97 + i) + ";") * 10}">'.encode() for i in range(8))
        + b"]><x>&i;</x>"
    )
    headers, _ = request(messages.GetDeviceDescriptionRequest(), device.device_id)
    status, frame, _ = await post(device.location, headers, bomb)
    assert status == 400 and error_code(frame) == ReturnCode.BAD_MESSAGE


async def test_unknown_message_type_gets_400(device: Device) -> None:
    headers, body = request(messages.GetDeviceDescriptionRequest(), device.device_id)
    headers = [(k, "NoSuchMessage" if k == "01-IGRSMessageType" else v) for k, v in headers]
    status, frame, _ = await post(device.location, headers, body)
    assert status == 400 and error_code(frame) == ReturnCode.BAD_MESSAGE
    assert frame is not None and "unknown message type" in frame.message.status.reason  # type: ignore[union-attr]


async def test_catalogued_but_unserved_message_gets_501(device: Device) -> None:
    del device.handlers["SearchDeviceRequestOnDevice"]  # a device that does not serve it
    message = messages.SearchDeviceRequestOnDevice(messages.SearchTarget.all())
    headers, envelope = request(message, device.device_id)
    status, frame, _ = await post(device.location, headers, envelope)
    assert status == 501 and error_code(frame) == ReturnCode.NOT_IMPLEMENTED
    assert frame is not None and frame.message.status.acknowledge_id == 42  # type: ignore[union-attr]


async def test_wrong_target_device_gets_404(device: Device) -> None:
    headers, body = request(messages.GetDeviceDescriptionRequest(), DeviceId.new())
    status, frame, _ = await post(device.location, headers, body)
    assert status == 404 and error_code(frame) == ReturnCode.NOT_FOUND


async def test_other_igrs_major_version_gets_505(device: Device) -> None:
    headers, body = request(messages.GetDeviceDescriptionRequest(), device.device_id)
    headers = [(k, "IGRS/2.0" if k == "01-IGRSVersion" else v) for k, v in headers]
    status, frame, _ = await post(device.location, headers, body)
    assert status == 505 and error_code(frame) == ReturnCode.VERSION_NOT_SUPPORTED


async def test_oversized_body_gets_413(device: Device) -> None:
    headers, _ = request(messages.GetDeviceDescriptionRequest(), device.device_id)
    status, frame, _ = await post(device.location, headers, b"<a>" + b"x" * 400_000 + b"</a>")
    assert status == 413 and error_code(frame) == ReturnCode.PAYLOAD_TOO_LARGE


async def test_missing_headers_get_400(device: Device) -> None:
    status, frame, _ = await post(device.location, [("Content-Type", "text/xml")], b"<a/>")
    assert status == 400 and error_code(frame) == ReturnCode.BAD_MESSAGE


async def test_other_methods_and_paths(device: Device) -> None:
    async with aiohttp.ClientSession() as s:
        async with s.get(device.location) as resp:
            assert resp.status == 405
        async with s.post(device.location.replace("/IGRS", "/elsewhere"), data=b"") as resp:
            assert resp.status == 404


async def test_device_keeps_serving_after_bad_requests(device: Device) -> None:
    for _ in range(20):
        await post(device.location, [], b"\x00\xff" * 50)
    headers, body = request(messages.GetDeviceDescriptionRequest(), device.device_id)
    status, frame, _ = await post(device.location, headers, body)
    assert status == 200 and frame is not None
    assert device.http.errors[ReturnCode.BAD_MESSAGE] >= 20
