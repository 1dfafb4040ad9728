"""``Device``: one local IGRS device — announces itself, answers searches and serves its
description. Later layers (pipes, sessions, services) hang their message handlers here."""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import random
from collections.abc import Awaitable, Callable, Sequence
from types import TracebackType
from typing import Self

from igrs.constants import DEFAULT_MAX_AGE, IGRS_PATH, IGRS_PORT, ReturnCode
from igrs.core.discovery import Action, DeviceDiscovery, Interface
from igrs.errors import NotImplementedMessage
from igrs.net import interfaces as netifaces
from igrs.net.driver import TimerDriver
from igrs.net.http import IgrsHttpServer
from igrs.net.isdp import IsdpEndpoints
from igrs.wire import description as ddesc
from igrs.wire import messages
from igrs.wire.ids import DeviceId, DeviceType
from igrs.wire.messages import Frame, SoapMessage, Status

log = logging.getLogger(__name__)

MessageHandler = Callable[[Frame, str], Awaitable[SoapMessage]]
INTERFACE_WATCH_INTERVAL = 5.0  # s between checks for changed interface addresses


def location_url(address: str, port: int) -> str:
    host = f"[{address}]" if ipaddress.ip_address(address.partition("%")[0]).version == 6 else address
    return f"http://{host}:{port}{IGRS_PATH}"


class Device:
    """A local IGRS device.

    >>> async with Device(name="Living room TV", device_type="TV", interfaces=["lo"]) as tv:
    ...     await asyncio.sleep(60)
    """

    def __init__(
        self,
        name: str,
        device_type: str | DeviceType = "PC",
        *,
        device_id: DeviceId | str | None = None,
        interfaces: Sequence[str] | None = None,
        port: int = IGRS_PORT,
        http_port: int | None = None,
        max_age: int = DEFAULT_MAX_AGE,
        ipv6: bool = False,
        manufacturer: str = "igrs-python",
        model_name: str = "igrs-python device",
        watch_interfaces: bool = True,
        rng: random.Random | None = None,
    ) -> None:
        self.name = name
        self.device_type = device_type if isinstance(device_type, DeviceType) else DeviceType.parse(device_type)
        if isinstance(device_id, str):
            device_id = DeviceId.parse(device_id)
        self.device_id = device_id or DeviceId.new()
        self.port = port
        self.http_port = http_port
        self.max_age = max_age
        self.manufacturer = manufacturer
        self.model_name = model_name
        self._interface_specs = list(interfaces) if interfaces is not None else None
        self._ipv6 = ipv6
        self._watch = watch_interfaces
        self.discovery = DeviceDiscovery(self.device_id, self.device_type, name, max_age=max_age,
                                         port=port, rng=rng)
        self.handlers: dict[str, MessageHandler] = {
            "GetDeviceDescriptionRequest": self._on_get_description,
            "SearchDeviceRequestOnDevice": self._on_search_on_device,
        }
        self.http = IgrsHttpServer(self.device_id, self._dispatch, self.description_bytes)
        self._endpoints: IsdpEndpoints | None = None
        self._driver = TimerDriver(self.discovery.next_deadline, self._poll)
        self._watch_task: asyncio.Task[None] | None = None
        self._interfaces: list[Interface] = []
        self.locations: dict[str, str] = {}

    # --- lifecycle ---------------------------------------------------------------------------
    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.stop()

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._interfaces = netifaces.resolve(self._interface_specs, ipv6=self._ipv6)
        try:
            await self._open(self._interfaces)
            await self._execute(self.discovery.start(loop.time()))
        except BaseException:
            await self._close_io()
            raise
        self._driver.start()
        if self._watch:
            self._watch_task = asyncio.create_task(self._watch_interfaces())
        log.info("device %s (%s) up at %s", self.name, self.device_id, ", ".join(self.locations.values()))

    async def _open(self, interfaces: list[Interface]) -> list[Action]:
        port = await self.http.start([i.address if i.family == 4 else f"{i.address}%{i.scope_id}"
                                      for i in interfaces], self.http_port)
        self.locations = {i.name: location_url(i.address, port) for i in interfaces}
        self._endpoints = IsdpEndpoints(interfaces, self.port, self._on_datagram)
        await self._endpoints.start()
        return self.discovery.set_interfaces({i: self.locations[i.name] for i in interfaces},
                                             asyncio.get_running_loop().time())

    async def stop(self) -> None:
        """Say goodbye (DeviceOfflineAdvertisement, repeated) and release everything."""
        if self._watch_task is not None:
            self._watch_task.cancel()
            self._watch_task = None
        await self._driver.stop()
        if self._endpoints is not None:
            loop = asyncio.get_running_loop()
            await self._execute(self.discovery.stop(loop.time()))
            while (deadline := self.discovery.next_deadline()) is not None:
                await asyncio.sleep(max(0.0, deadline - loop.time()))
                await self._execute(self.discovery.poll(loop.time()))
        await self._close_io()

    async def _close_io(self) -> None:
        if self._endpoints is not None:
            await self._endpoints.close()
            self._endpoints = None
        await self.http.close()

    async def _watch_interfaces(self) -> None:
        """Re-announce with the new LOCATION when an interface address changes."""
        while True:
            await asyncio.sleep(INTERFACE_WATCH_INTERVAL)
            try:
                current = netifaces.resolve(self._interface_specs, ipv6=self._ipv6)
            except netifaces.InterfaceError as exc:
                log.warning("interfaces unavailable: %s", exc)
                continue
            if current != self._interfaces:
                await self.update_interfaces(current)

    async def update_interfaces(self, interfaces: list[Interface]) -> None:
        log.info("interfaces changed: %s", ", ".join(f"{i.name}={i.address}" for i in interfaces))
        await self._close_io()
        self._interfaces = interfaces
        # Byebyes for interfaces that disappeared have no socket left to leave by: a
        # control point there ages the entry out at max-age instead.
        await self._execute(await self._open(interfaces))
        self._driver.wake()

    # --- I/O glue ------------------------------------------------------------------------------
    def _on_datagram(self, data: bytes, source: tuple[str, int], interface: str) -> None:
        now = asyncio.get_running_loop().time()
        self.discovery.on_datagram(data, source, interface, now)
        self._driver.wake()

    async def _poll(self, now: float) -> None:
        await self._execute(self.discovery.poll(now))

    async def _execute(self, actions: list[Action]) -> None:
        if self._endpoints is not None:
            await self._endpoints.execute(actions)

    # --- description -----------------------------------------------------------------------------
    @property
    def description(self) -> ddesc.DeviceDescription:
        return ddesc.DeviceDescription(
            device_id=self.device_id, device_type=self.device_type, name=self.name,
            manufacturer=self.manufacturer, model_name=self.model_name,
        )

    def description_bytes(self) -> bytes:
        return ddesc.to_bytes(self.description)

    @property
    def interfaces(self) -> list[Interface]:
        return list(self._interfaces)

    @property
    def location(self) -> str:
        return next(iter(self.locations.values()), "")

    # --- unicast messages ------------------------------------------------------------------------
    async def _dispatch(self, frame: Frame, peer: str) -> SoapMessage:
        handler = self.handlers.get(frame.routing.message_type)
        if handler is None:
            raise NotImplementedMessage(f"{frame.routing.message_type} is not served by this device")
        return await handler(frame, peer)

    async def _on_get_description(self, frame: Frame, peer: str) -> SoapMessage:
        return messages.GetDeviceDescriptionResponse(Status(frame.routing.sequence_id), self.description)

    async def _on_search_on_device(self, frame: Frame, peer: str) -> SoapMessage:
        assert isinstance(frame.message, messages.SearchDeviceRequestOnDevice)
        matched = self.discovery.matches(frame.message.target)
        return messages.SearchDeviceResponseOnDevice(
            Status(frame.routing.sequence_id, ReturnCode.SUCCESS), matched, self.device_type, self.name)
