"""``ControlPoint``: find IGRS devices, follow them coming and going, and describe them."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from types import TracebackType
from typing import Self
from urllib.parse import urlsplit

from igrs.constants import (
    DEFAULT_MAX_AGE,
    IGRS_PATH,
    IGRS_PORT,
    KEEPALIVE_INTERVAL,
    REGISTRY_MAX_DEVICES,
    ReturnCode,
)
from igrs.core import pipes as core_pipes
from igrs.core.discovery import (
    Action,
    ControlPointDiscovery,
    DeviceGone,
    DeviceRecord,
    DiscoveryEvent,
    Interface,
    ServiceRecord,
)
from igrs.errors import DeviceNotFound, IGRSError, ProtocolError, SecurityError
from igrs.net import interfaces as netifaces
from igrs.net.driver import TimerDriver
from igrs.net.fanout import EventReader, FanOut
from igrs.net.http import IgrsHttpClient, IgrsHttpServer, Reply
from igrs.net.isdp import IsdpEndpoints
from igrs.node.extensions import DiscoverySource
from igrs.node.keystore import PairedDevice, open_keystore
from igrs.node.pipe import PinProvider, Pipe, open_pipe
from igrs.node.pipe import pair as pair_device
from igrs.node.service_agent import ServiceAgent, ServiceProxy
from igrs.wire import description as ddesc
from igrs.wire import messages
from igrs.wire.answers import expect_success
from igrs.wire.bodies import pipes as pb
from igrs.wire.bodies import services as sv
from igrs.wire.ids import DeviceId, DeviceType, ServiceType
from igrs.wire.isdp import SearchTarget
from igrs.wire.messages import Frame

log = logging.getLogger(__name__)

DEFAULT_SEARCH_TIMEOUT = 1.5
DEFAULT_SEARCH_MX = 1
# Why a device left the registry, as a DeviceLost reason says it (specs/events.md §8).
GONE_REASONS = {"byebye": "it said goodbye (byebye)", "expired": "its announcements stopped (max-age)"}

Target = str | SearchTarget | DeviceType | DeviceId | None


def _target(target: Target) -> SearchTarget:
    if target is None:
        return SearchTarget.all()
    if isinstance(target, SearchTarget):
        return target
    if isinstance(target, DeviceType):
        return SearchTarget("device_type", device_type=target)
    if isinstance(target, DeviceId):
        return SearchTarget("device", device_id=target)
    if target.lower().startswith("urn:"):
        return SearchTarget.parse(target)
    return SearchTarget("device_type", device_type=DeviceType.parse(target))


def record_matches(record: DeviceRecord, target: SearchTarget) -> bool:
    if target.kind == "device":
        return record.device_id == target.device_id
    if target.kind == "device_type":
        assert target.device_type is not None
        return record.device_type.satisfies(target.device_type)
    return target.kind == "all"


class ControlPoint:
    """Discovers devices on the chosen interfaces.

    >>> async with ControlPoint(interfaces=["lo"]) as cp:
    ...     for dev in await cp.search(timeout=1.5):
    ...         print(dev.name, (await cp.describe(dev.device_id)).device_type)
    """

    def __init__(
        self,
        *,
        interfaces: Sequence[str] | None = None,
        port: int = IGRS_PORT,
        ipv6: bool = False,
        device_id: DeviceId | None = None,
        max_devices: int = REGISTRY_MAX_DEVICES,
        state_dir: str | os.PathLike[str] | None = None,
        name: str = "igrs control point",
        keepalive_interval: float = KEEPALIVE_INTERVAL,
        rng: random.Random | None = None,
        isdp_search: bool = True,
    ) -> None:
        # False: search() sends no ISDP M-SEARCH and leaves finding devices to the discovery
        # sources plugged in (igrs.node.extensions, e.g. igrs.bridges.dnssd.attach_dnssd).
        self.isdp_search = isdp_search
        self._sources: list[DiscoverySource] = []
        self._running_sources: list[DiscoverySource] = []
        self.keystore = open_keystore(state_dir)
        self.identity = self.keystore.load_or_create_identity(device_id)
        self.device_id = self.identity.device_id
        self.name = name
        self.keepalive_interval = keepalive_interval
        self._pipes: dict[DeviceId, Pipe] = {}
        self._agents: dict[DeviceId, ServiceAgent] = {}
        self._open_agents: dict[DeviceId, ServiceAgent] = {}  # without a pipe (agent(open=True))
        self._callbacks: IgrsHttpServer | None = None
        self.port = port
        self._interface_specs = list(interfaces) if interfaces is not None else None
        self._ipv6 = ipv6
        self.discovery = ControlPointDiscovery(self.device_id, port=port, max_devices=max_devices, rng=rng)
        self.http = IgrsHttpClient(self.device_id)
        self._endpoints: IsdpEndpoints | None = None
        self._driver = TimerDriver(self.discovery.next_deadline, self._poll)
        self._events: FanOut[DiscoveryEvent] = FanOut()
        self._interfaces: list[Interface] = []

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.stop()

    async def start(self) -> None:
        self._interfaces = netifaces.resolve(self._interface_specs, ipv6=self._ipv6)
        self.discovery.set_interfaces(self._interfaces)
        self._endpoints = IsdpEndpoints(self._interfaces, self.port, self._on_datagram)
        await self._endpoints.start()
        self._driver.start()
        try:
            for source in list(self._sources):
                if source not in self._running_sources:
                    await source.start()
                    self._running_sources.append(source)
        except BaseException:
            await self.stop()
            raise

    async def stop(self) -> None:
        for agent in [*self._agents.values(), *self._open_agents.values()]:
            with contextlib.suppress(Exception):
                await agent.aclose()
        self._agents.clear()
        self._open_agents.clear()
        for pipe in list(self._pipes.values()):
            await pipe.close("control point stopping")
        self._pipes.clear()
        if self._callbacks is not None:
            await self._callbacks.close()
            self._callbacks = None
        while self._running_sources:
            source = self._running_sources.pop()
            try:
                await source.stop()
            except Exception:
                log.exception("discovery source %r failed to stop", source)
        await self._driver.stop()
        if self._endpoints is not None:
            await self._endpoints.close()
            self._endpoints = None
        await self.http.close()
        self._events.close()

    @property
    def interfaces(self) -> list[Interface]:
        return list(self._interfaces)

    @property
    def devices(self) -> list[DeviceRecord]:
        return self.discovery.devices

    # --- events ------------------------------------------------------------------------------
    def events(self) -> EventReader[DiscoveryEvent]:
        """DeviceAppeared / DeviceUpdated / DeviceGone from the moment of this call (not of the
        first read) until the control point stops; ``aclose()`` the reader when done. A slow
        reader loses its oldest events (igrs.net.fanout, specs/events.md §9)."""
        return self._events.subscribe()

    @property
    def events_dropped(self) -> int:
        """Events slow ``events()`` readers lost (all readers together)."""
        return self._events.dropped

    def _publish(self, events: list[DiscoveryEvent]) -> None:
        for event in events:
            if isinstance(event, DeviceGone):
                why = GONE_REASONS.get(event.reason, event.reason)
                self._device_lost(event.device.device_id, f"device {event.device.name!r} is gone: {why}")
        self._events.publish_all(events)

    def _device_lost(self, device_id: DeviceId, reason: str) -> None:
        """Its subscriptions end with DeviceLost (specs/events.md §8)."""
        agent = self._agents.get(device_id)
        if agent is not None:
            log.info("%s", reason)
            agent.device_lost(reason)

    def _pipe_lost(self, pipe: Pipe, reason: str) -> None:
        if self._pipes.get(pipe.peer) is pipe:
            record = self.discovery.get(pipe.peer)
            name = repr(record.name) if record is not None else str(pipe.peer)
            self._device_lost(pipe.peer, f"device {name} is gone: {reason}")

    # --- other discovery sources (igrs.node.extensions) -------------------------------------------
    @property
    def running(self) -> bool:
        """Between start() and stop()."""
        return self._endpoints is not None

    async def add_discovery_source(self, source: DiscoverySource) -> None:
        """Find devices through ``source`` too: started now if the control point runs, else by
        ``start()``; told of every search; stopped by ``stop()`` (igrs.node.extensions)."""
        if source in self._sources:
            return
        self._sources.append(source)
        if self.running:
            try:
                await source.start()
            except BaseException:
                self._sources.remove(source)
                raise
            self._running_sources.append(source)

    async def remove_discovery_source(self, source: DiscoverySource) -> None:
        """Stop finding devices through ``source`` (stopped now if it runs); what it offered
        stays in the registry until it expires or is withdrawn."""
        if source in self._sources:
            self._sources.remove(source)
        if source in self._running_sources:
            self._running_sources.remove(source)
            await source.stop()

    def offer(self, record: DeviceRecord) -> None:
        """A device seen by another discovery source, now: merged into the registry like an ISDP
        sighting of the same id (the first address stays primary), kept for ``record.max_age``;
        DeviceAppeared / DeviceUpdated go to ``events()`` readers."""
        self._publish(self.discovery.offer(record, asyncio.get_running_loop().time()))
        self._driver.wake()

    def withdraw(self, device_id: DeviceId, address: str, reason: str = "byebye") -> None:
        """Another discovery source says the device at ``address`` is gone: forgotten (and
        DeviceGone published) only if it had been seen at that address, as an ISDP byebye."""
        self._publish(self.discovery.withdraw(device_id, address, reason))
        self._driver.wake()

    # --- search --------------------------------------------------------------------------------
    async def search(self, timeout: float = DEFAULT_SEARCH_TIMEOUT, target: Target = None,
                     mx: int = DEFAULT_SEARCH_MX) -> list[DeviceRecord]:
        """Multicast a search; after ``timeout`` return the matching devices heard meanwhile."""
        loop = asyncio.get_running_loop()
        wanted = _target(target)
        started = loop.time()
        for source in self._running_sources:
            source.searching(wanted)  # what each source holds counts as seen by this search
        if self.isdp_search:
            await self._execute(self.discovery.search(started, wanted, mx))
        self._driver.wake()
        await asyncio.sleep(timeout)
        return sorted(
            (r for r in self.discovery.devices if r.last_seen >= started and record_matches(r, wanted)),
            key=lambda r: (r.name, str(r.device_id)),
        )

    async def search_services(self, service_type: str | ServiceType, timeout: float = DEFAULT_SEARCH_TIMEOUT,
                              mx: int = DEFAULT_SEARCH_MX) -> list[ServiceRecord]:
        """SearchServiceRequest (10.2) by multicast: the services of a type shared on the LAN."""
        loop = asyncio.get_running_loop()
        stype = service_type if isinstance(service_type, ServiceType) else (
            ServiceType.parse(service_type) if service_type.lower().startswith("urn:")
            else ServiceType(service_type))
        started = loop.time()
        target = SearchTarget("service_type", service_type=stype)
        await self._execute(self.discovery.search(started, target, mx))
        self._driver.wake()
        await asyncio.sleep(timeout)
        return sorted((s for s in self.discovery.services
                       if s.last_seen >= started and s.service_type.name == stype.name
                       and s.service_type.version >= stype.version),
                      key=lambda s: (s.name, str(s.device_id), s.service_id))

    def find(self, device: DeviceId | str | DeviceRecord) -> DeviceRecord:
        """Look a known device up by record, id, id prefix (of the UUID) or exact name."""
        if isinstance(device, DeviceRecord):
            return device
        if isinstance(device, DeviceId):
            record = self.discovery.get(device)
            if record is None:
                raise DeviceNotFound(f"unknown device {device}")
            return record
        text = device.strip()
        matches = [r for r in self.discovery.devices
                   if text in (str(r.device_id), r.name) or str(r.device_id.uuid).startswith(text.lower())]
        if len(matches) != 1:
            raise DeviceNotFound(f"{'no' if not matches else 'more than one'} device matches {text!r}")
        return matches[0]

    async def connect(self, address: str) -> DeviceRecord:
        """A device known by the address of its ``/IGRS`` endpoint only (``host:port`` or an
        ``http://`` URL) -- a legacy peer that speaks no discovery: its description is fetched
        (GetDeviceDescriptionRequest, naming no target) and the device is added to the registry
        as if it had announced itself (for DEFAULT_MAX_AGE), so it can be described and used."""
        url = address if "://" in address else f"http://{address}{IGRS_PATH}"
        parts = urlsplit(url)
        if parts.scheme != "http" or not parts.hostname or parts.port is None:
            raise DeviceNotFound(f"not an address of an IGRS endpoint: {address!r} (host:port or http://...)")
        seq, frame = await self.http.send(url, messages.GetDeviceDescriptionRequest(), None)
        reply = expect_success(frame, messages.GetDeviceDescriptionResponse, seq)
        if reply.description is None:
            raise ProtocolError(f"{url} answered no description")
        desc = reply.description
        self.offer(DeviceRecord(desc.device_id, desc.device_type, desc.name, url, parts.hostname,
                                DEFAULT_MAX_AGE, 0.0, 0.0, frozenset()))
        return self.find(desc.device_id)

    async def describe(self, device: DeviceId | str | DeviceRecord) -> ddesc.DeviceDescription:
        """Fetch the device description document (GetDeviceDescriptionRequest, clause 9.3)."""
        record = self.find(device)
        seq, frame = await self.http.send(record.url, messages.GetDeviceDescriptionRequest(),
                                          record.device_id)
        reply = expect_success(frame, messages.GetDeviceDescriptionResponse, seq)
        if reply.description is None or reply.description.device_id != record.device_id:
            raise ProtocolError("the description is missing or of another device")
        return reply.description

    async def search_on_device(self, device: DeviceId | str | DeviceRecord, target: Target = None) -> bool:
        """Ask one device directly whether it matches ``target`` (SearchDeviceRequestOnDevice)."""
        record = self.find(device)
        seq, frame = await self.http.send(record.url,
                                          messages.SearchDeviceRequestOnDevice(_target(target)),
                                          record.device_id)
        return expect_success(frame, messages.SearchDeviceResponseOnDevice, seq).matched

    # --- pairing and pipes (9.2) -------------------------------------------------------------------
    async def pair(self, device: DeviceId | str | DeviceRecord, pin: str | PinProvider) -> PairedDevice:
        """Pair with a device by the PIN it shows; the pairing is stored in the keystore."""
        record = self.find(device)

        async def typed(_digits: int) -> str:
            return pin if isinstance(pin, str) else await pin(_digits)

        provider = typed if isinstance(pin, str) else pin
        paired = await pair_device(self.http, record.url, self.identity, record.device_id,
                                   provider, name=record.name, now=time.time)
        self.keystore.add(paired)
        return paired

    def paired(self) -> list[PairedDevice]:
        return self.keystore.peers()

    async def unpair(self, device_id: DeviceId) -> bool:
        pipe = self._pipes.pop(device_id, None)
        if pipe is not None:
            await pipe.close("unpaired")
        return self.keystore.remove(device_id)

    async def open_pipe(self, device: DeviceId | str | DeviceRecord, *, secure: bool = True) -> Pipe:
        """A pipe to ``device`` (an open one is reused). A secure pipe needs a pairing."""
        record = self.find(device)
        pipe = self._pipes.get(record.device_id)
        if pipe is not None and pipe.alive and pipe.secure == secure:
            return pipe
        pipe = await open_pipe(self.http, record.url, self.identity, record.device_id,
                               self.keystore.peer_key, secure=secure,
                               keepalive_interval=self.keepalive_interval, on_lost=self._pipe_lost)
        self._pipes[record.device_id] = pipe
        return pipe

    # --- services: sessions, invocation, events (10.x) ------------------------------------------
    async def agent(self, device: DeviceId | str | DeviceRecord, *, open: bool = False) -> ServiceAgent:
        """The client agent for ``device``'s services, over a secure pipe (pair first).

        ``open``: without any pipe, in the clear, for services a device shares openly (a
        legacy peer that has no pipes, such as ezbox): the services are those its description
        lists, invocations go out in RPC style (no ActionName, services.md §3.1), and there are
        no attribute events (they need a secure pipe). Nothing is authenticated or hidden."""
        record = self.find(device)
        if open:
            return self._open_agent(record)
        agent = self._agents.get(record.device_id)
        if agent is not None:
            return agent
        await self.open_pipe(record)
        await self._start_callbacks()

        async def request(message: messages.SoapMessage) -> Frame | None:
            pipe = await self.open_pipe(record)  # the record: it may not be in the registry
            _, frame = await pipe.exchange(message)
            return frame

        agent = ServiceAgent(request, location=lambda: self._callback_url(record.device_id),
                             device=record.device_id)
        self._agents[record.device_id] = agent
        return agent

    def _open_agent(self, record: DeviceRecord) -> ServiceAgent:
        agent = self._open_agents.get(record.device_id)
        if agent is None:
            async def request(message: messages.SoapMessage) -> Frame | None:
                return (await self.http.send(record.url, message, record.device_id))[1]

            async def listed() -> list[sv.ServiceInfo]:  # the description: served without a pipe
                desc = await self.describe(record)
                return [sv.ServiceInfo(s.service_id, s.service_type, s.name, s.security_ids)
                        for s in desc.services]

            agent = ServiceAgent(request, device=record.device_id, rpc_style=True, listing=listed)
            self._open_agents[record.device_id] = agent
        return agent

    @asynccontextmanager
    async def session(self, device: DeviceId | str | DeviceRecord, service: str | int, *,
                      open: bool = False) -> AsyncIterator[ServiceProxy]:
        """``async with cp.session(tv, "urn:IGRS:ServiceType:X:1") as svc: await svc.Action(...)``;
        ``open``: a service shared openly, without a pipe (``agent(open=True)``)."""
        agent = await self.agent(device, open=open)
        async with agent.session(service) as proxy:
            yield proxy

    async def _start_callbacks(self) -> None:
        if self._callbacks is None:
            server = IgrsHttpServer(self.device_id, self._on_callback, lambda: b"")
            await server.start([i.address if i.family == 4 else f"{i.address}%{i.scope_id}"
                                for i in self._interfaces], 0)
            self._callbacks = server

    def _callback_url(self, device_id: DeviceId) -> str:
        """Our event endpoint, on the interface the device was heard on."""
        assert self._callbacks is not None
        record = self.discovery.get(device_id)
        by_name = {i.name: i for i in self._interfaces}
        iface = next((by_name[n] for n, a in sorted(record.seen_on) if a == record.address and n in by_name),
                     None) if record else None
        iface = iface or self._interfaces[0]
        host = iface.address if iface.family == 4 else f"[{iface.address}]"
        return f"http://{host}:{self._callbacks.port}{IGRS_PATH}"

    async def _on_callback(self, frame: Frame, address: str) -> Reply:
        """Notifications from devices: accepted only sealed in a secure pipe we created."""
        sealed = frame.message
        if not isinstance(sealed, pb.SecureMessage):
            raise SecurityError("notifications must come sealed in a secure pipe",
                                return_code=ReturnCode.NOT_AUTHENTICATED)
        pipe = self._pipes.get(frame.routing.source)
        channel = pipe.established.channel if pipe is not None else None
        if pipe is None or channel is None or pipe.pipe_id != sealed.pipe_id:
            raise SecurityError("no such pipe with this device", return_code=ReturnCode.NOT_AUTHENTICATED)
        inner = core_pipes.unseal(channel, frame)
        agent = self._agents.get(frame.routing.source)
        if agent is None:
            raise IGRSError("no subscriptions with this device", return_code=ReturnCode.NOT_FOUND)
        agent.deliver(inner)
        return None

    # --- I/O glue ------------------------------------------------------------------------------
    def _on_datagram(self, data: bytes, source: tuple[str, int], interface: str) -> None:
        now = asyncio.get_running_loop().time()
        self._publish(self.discovery.on_datagram(data, source, interface, now))
        self._driver.wake()

    async def _poll(self, now: float) -> None:
        actions, events = self.discovery.poll(now)
        self._publish(events)
        await self._execute(actions)

    async def _execute(self, actions: list[Action]) -> None:
        if self._endpoints is not None:
            await self._endpoints.execute(actions)


async def discover(timeout: float = DEFAULT_SEARCH_TIMEOUT, **kwargs: object) -> list[DeviceRecord]:
    """One-shot search: ``await igrs.discover(interfaces=["lo"])``."""
    async with ControlPoint(**kwargs) as cp:  # type: ignore[arg-type]
        return await cp.search(timeout=timeout)

