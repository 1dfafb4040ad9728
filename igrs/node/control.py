"""``ControlPoint``: find IGRS devices, follow them coming and going, and describe them."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import os
import random
import socket
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import replace
from types import TracebackType
from typing import TYPE_CHECKING, Self, TypeVar

from igrs.constants import (
    DEFAULT_MAX_AGE,
    IGRS_PATH,
    IGRS_PORT,
    KEEPALIVE_INTERVAL,
    LOCATION_CHECK_TIMEOUT,
    REGISTRY_MAX_DEVICES,
    ReturnCode,
)
from igrs.core import pipes as core_pipes
from igrs.core.datagram_schedule import earliest
from igrs.core.discovery import (
    Action,
    ControlPointDiscovery,
    DeviceGone,
    DeviceRecord,
    DiscoveryEvent,
    Interface,
    ProbeLocation,
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
from igrs.node.location_probe import ProbeRunner
from igrs.node.pipe import PinProvider, Pipe, open_pipe_to
from igrs.node.pipe import pair as pair_device
from igrs.node.service_agent import ServiceAgent, ServiceProxy
from igrs.wire import description as ddesc
from igrs.wire import messages
from igrs.wire.answers import expect_success
from igrs.wire.bodies import pipes as pb
from igrs.wire.bodies import services as sv
from igrs.wire.endpoints import Endpoint, parse_endpoint
from igrs.wire.group_datagrams import is_group_datagram
from igrs.wire.ids import DeviceId, DeviceType, ServiceType
from igrs.wire.isdp import SearchTarget
from igrs.wire.messages import Frame

if TYPE_CHECKING:
    from igrs.core.group_events import GroupRecord
    from igrs.core.group_registry import GroupSearch
    from igrs.node.locations import LocationCache
    from igrs.wire.group_datagrams import GroupId

log = logging.getLogger(__name__)
T = TypeVar("T")

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
        self._probes = ProbeRunner(self.http, self.discovery, self._on_probe_events)
        self._endpoints: IsdpEndpoints | None = None
        self._groups: GroupSearch | None = None  # created by the first search_groups()
        self._driver = TimerDriver(self._next_deadline, self._poll)
        self._events: FanOut[DiscoveryEvent] = FanOut()
        self._interfaces: list[Interface] = []
        self._sighting_waiters: set[asyncio.Event] = set()  # set on every sighting (locate)

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
        try:
            await self._endpoints.start()
            self._driver.start()
            for source in list(self._sources):
                if source not in self._running_sources:
                    await source.start()
                    self._running_sources.append(source)
        except BaseException:  # e.g. zeroconf not installed: close what was opened, now
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
        await self._probes.close()
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
        self._sighted()
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
        wanted = _target(target)
        started = await self._send_search(wanted, mx)
        await asyncio.sleep(timeout)
        return sorted(
            (r for r in self.discovery.devices if r.last_seen >= started and record_matches(r, wanted)),
            key=lambda r: (r.name, str(r.device_id)),
        )

    async def _send_search(self, wanted: SearchTarget, mx: int) -> float:
        """Start a search (ISDP and the other discovery sources); return when it started."""
        started = asyncio.get_running_loop().time()
        for source in self._running_sources:
            source.searching(wanted)  # what each source holds counts as seen by this search
        if self.isdp_search:
            await self._execute(self.discovery.search(started, wanted, mx))
        self._driver.wake()
        return started

    # --- locating one device -----------------------------------------------------------------
    async def locate(self, device: DeviceId | str | DeviceRecord, timeout: float = DEFAULT_SEARCH_TIMEOUT,
                     *, mx: int = DEFAULT_SEARCH_MX, cache: LocationCache | None = None) -> DeviceRecord:
        """One device, as soon as it is known (specs/isdp.md §10, "Locating one device").

        ``host:port`` of its /IGRS endpoint or its LOCATION URL: its description is fetched
        there (``GET DESCRIPTION_PATH``, else a GetDeviceDescriptionRequest by M-POST for a peer
        that answers the GET with an error; igrs.wire.endpoints; ``connect`` also registers it).
        A device id, UUID prefix or exact name: the registry's record, else ``cache``'s entry
        once the device there confirms it (SearchDeviceRequestOnDevice within
        ``LOCATION_CHECK_TIMEOUT``), else a search that ends at the first matching answer, sent
        again halfway through ``timeout`` if nothing answered. DeviceNotFound after ``timeout``
        seconds; a device found is remembered in ``cache``."""
        if isinstance(device, DeviceRecord):
            return device
        if isinstance(device, str) and (endpoint := parse_endpoint(device)) is not None:
            return await self._at_endpoint(endpoint)
        with contextlib.suppress(DeviceNotFound):
            return self.find(device)
        text = str(device).strip()
        if cache is not None and (hit := await self._from_cache(cache, text)) is not None:
            return hit
        wanted = SearchTarget.all()
        with contextlib.suppress(ValueError, ProtocolError):
            wanted = _target(device if isinstance(device, DeviceId) else DeviceId.parse(text))

        def found() -> DeviceRecord | None:
            if isinstance(device, DeviceId):
                return self.discovery.get(device)
            matches = self._matching(text)
            if len(matches) > 1:
                raise DeviceNotFound(f"more than one device matches {text!r}")
            return matches[0] if matches else None

        record = await self._search_until(found, wanted, timeout / 2, mx)
        if record is None:
            record = await self._search_until(found, wanted, timeout / 2, mx)
        if record is None:
            raise DeviceNotFound(f"no device matches {text!r}")
        if cache is not None:
            cache.remember([record])
        return record

    async def _search_until(self, found: Callable[[], T | None], wanted: SearchTarget, timeout: float,
                            mx: int) -> T | None:
        """Search; return ``found()`` as soon as it is not None after a sighting, or None
        after ``timeout`` seconds."""
        loop = asyncio.get_running_loop()
        sighting = asyncio.Event()
        self._sighting_waiters.add(sighting)
        try:
            deadline = await self._send_search(wanted, mx) + timeout
            while (result := found()) is None:
                sighting.clear()
                remaining = deadline - loop.time()
                if remaining <= 0:
                    return None
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(remaining):
                        await sighting.wait()
            return result
        finally:
            self._sighting_waiters.discard(sighting)

    async def _at_endpoint(self, endpoint: Endpoint) -> DeviceRecord:
        """The device answering at ``endpoint``, by its description (not put in the registry:
        nothing says it is on our ISDP link; its pipe's keep-alive follows it)."""
        address = endpoint.host
        if not endpoint.is_literal:
            infos = await asyncio.get_running_loop().getaddrinfo(endpoint.host, endpoint.port,
                                                                type=socket.SOCK_STREAM)
            if not infos:
                raise DeviceNotFound(f"{endpoint.host}: no address")
            address = str(sorted(infos, key=lambda i: i[0] != socket.AF_INET)[0][4][0])
            endpoint = endpoint.at(address)
        desc = await self._description_at(endpoint)
        now = asyncio.get_running_loop().time()
        iface = self._on_link(address)
        return DeviceRecord(desc.device_id, desc.device_type, desc.name, endpoint.location, address,
                            DEFAULT_MAX_AGE, now, now,
                            frozenset({(iface.name, address)}) if iface is not None else frozenset())

    async def _description_at(self, endpoint: Endpoint) -> ddesc.DeviceDescription:
        """The description at ``endpoint``: ``GET DESCRIPTION_PATH`` (specs/description.md, "A
        device given by its endpoint"); when that answers an HTTP error, the message of clause
        9.3 naming no target, M-POST only (a legacy peer: ezbox answers a GET with 400)."""
        try:
            return ddesc.from_bytes(await self.http.get(endpoint.description_url))
        except IGRSError as exc:
            if exc.return_code != ReturnCode.NOT_FOUND:  # no answer at all: no second try
                raise
            log.debug("%s; asking by GetDeviceDescriptionRequest", exc.reason)
        seq, frame = await self.http.send(endpoint.location, messages.GetDeviceDescriptionRequest(), None)
        reply = expect_success(frame, messages.GetDeviceDescriptionResponse, seq)
        if reply.description is None:
            raise ProtocolError(f"{endpoint.location} answered no description")
        return reply.description

    async def _from_cache(self, cache: LocationCache, text: str) -> DeviceRecord | None:
        """``cache``'s entry for ``text`` once the device at its location confirms it is that
        device (then it counts as seen now, in the registry); None and forgotten otherwise."""
        entry = cache.lookup(text)
        if entry is None:
            return None
        iface = self._on_link(entry.address)
        if iface is None:
            return None  # not on an interface of ours: search
        now = asyncio.get_running_loop().time()
        record = DeviceRecord(entry.device_id, entry.device_type, entry.name, entry.location, entry.address,
                              DEFAULT_MAX_AGE, now, now, frozenset({(iface.name, entry.address)}))
        try:
            async with asyncio.timeout(LOCATION_CHECK_TIMEOUT):
                question = messages.SearchDeviceRequestOnDevice(_target(record.device_id))
                seq, frame = await self.http.send(record.url, question, record.device_id)
            reply = expect_success(frame, messages.SearchDeviceResponseOnDevice, seq)
        except (IGRSError, OSError, TimeoutError) as exc:
            reply = None
            log.debug("the remembered location of %s did not answer: %s", entry.device_id, exc)
        if reply is None or not reply.matched:
            cache.forget(entry.device_id)
            return None
        record = replace(record, device_type=reply.device_type or record.device_type,
                         name=reply.name or record.name)
        self.offer(record)  # in the registry as a sighting: its byebye counts, its adverts refresh it
        return self.discovery.get(record.device_id) or record

    def _on_link(self, address: str) -> Interface | None:
        """Our interface whose network holds ``address``, if any."""
        try:
            ip = ipaddress.ip_address(address.partition("%")[0])
        except ValueError:
            return None
        return next((i for i in self._interfaces if i.family == ip.version and ip in i.network), None)

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

    async def search_groups(self, timeout: float = DEFAULT_SEARCH_TIMEOUT, target: GroupId | None = None,
                            mx: int = DEFAULT_SEARCH_MX) -> list[GroupRecord]:
        """SearchDeviceGroupRequest (9.8) by multicast: the device groups answered or advertised
        within ``timeout`` (one group id, or every group)."""
        if self._groups is None:
            from igrs.core.group_registry import GroupSearch

            self._groups = GroupSearch(self.device_id, port=self.port)
            self._groups.set_interfaces(self._interfaces)
        loop = asyncio.get_running_loop()
        started = loop.time()
        await self._execute(list(self._groups.search(started, target, mx)))
        self._driver.wake()
        await asyncio.sleep(timeout)
        return sorted((g for g in self._groups.registry.groups
                       if g.last_seen >= started and (target is None or g.group_id == target)),
                      key=lambda g: (g.name, str(g.group_id)))

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
        matches = self._matching(text)
        if len(matches) != 1:
            raise DeviceNotFound(f"{'no' if not matches else 'more than one'} device matches {text!r}")
        return matches[0]

    def _matching(self, text: str) -> list[DeviceRecord]:
        """The known devices ``text`` names: its id, its exact name, or a prefix of its UUID."""
        return [r for r in self.discovery.devices
                if text in (str(r.device_id), r.name) or str(r.device_id.uuid).startswith(text.lower())]

    async def connect(self, address: str) -> DeviceRecord:
        """A device known by its endpoint only (``host:port`` of its ``/IGRS`` endpoint or its
        LOCATION URL, igrs.wire.endpoints) -- a legacy peer that speaks no discovery: its
        description is fetched there (as ``locate`` does for an endpoint) and the device is added
        to the registry as if it had announced itself (for DEFAULT_MAX_AGE), so it can be found
        by id, described and used."""
        endpoint = parse_endpoint(address)
        if endpoint is None:
            raise DeviceNotFound(f"not an address of an IGRS endpoint: {address!r} (host:port or http://...)")
        record = await self._at_endpoint(endpoint)
        self.offer(record)
        return self.discovery.get(record.device_id) or record

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
        """A pipe to ``device`` (an open one is reused). A secure pipe needs a pairing.

        When the device's own address does not take the pipe and other addresses announce
        its id (candidates, specs/isdp.md §11a), a secure pipe is tried there: one that
        authenticates the paired device moves the registry entry to that address."""
        record = self.find(device)
        pipe = self._pipes.get(record.device_id)
        if pipe is not None and pipe.alive and pipe.secure == secure:
            return pipe
        pipe = await open_pipe_to(record, self.discovery, self.http, self.identity, self.keystore.peer_key,
                                  secure=secure, keepalive_interval=self.keepalive_interval,
                                  on_lost=self._pipe_lost, on_proven=self._on_probe_events)
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
            pipe = self._pipes.get(record.device_id)  # open_pipe's first step, inline (every call)
            if pipe is None or not pipe.alive or not pipe.secure:
                pipe = await self.open_pipe(record)  # the record: it may not be in the registry
            _, frame = await pipe.exchange(message)
            return frame

        agent = ServiceAgent(request, location=lambda: self._callback_url(record),
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

    def _callback_url(self, device: DeviceRecord) -> str:
        """Our event endpoint, on the interface the device was heard on (else the one whose
        network holds its address, else the first)."""
        assert self._callbacks is not None
        record = self.discovery.get(device.device_id) or device
        by_name = {i.name: i for i in self._interfaces}
        iface = next((by_name[n] for n, a in sorted(record.seen_on) if a == record.address and n in by_name),
                     None) or self._on_link(record.address) or self._interfaces[0]
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
        if b"DeviceGroup" in data and is_group_datagram(data):
            if self._groups is not None:  # group searches (9.8) of this control point
                self._groups.on_datagram(data, source, now)
                self._driver.wake()
            return
        self._publish(self.discovery.on_datagram(data, source, interface, now))
        self._sighted()
        self._driver.wake()

    def _next_deadline(self) -> float | None:
        groups = self._groups.next_deadline() if self._groups is not None else None
        return earliest(self.discovery.next_deadline(), groups)

    def _sighted(self) -> None:
        for waiter in self._sighting_waiters:
            waiter.set()

    async def _poll(self, now: float) -> None:
        actions, events = self.discovery.poll(now)
        self._publish(events)
        self._probes.run(actions)
        sends = [a for a in actions if not isinstance(a, ProbeLocation)]
        if self._groups is not None:
            sends += self._groups.poll(now)[0]
        await self._execute(sends)

    def _on_probe_events(self, events: list[DiscoveryEvent]) -> None:
        self._publish(events)
        self._driver.wake()

    async def _execute(self, actions: Sequence[Action]) -> None:
        if self._endpoints is not None:
            await self._endpoints.execute(actions)


async def discover(timeout: float = DEFAULT_SEARCH_TIMEOUT, **kwargs: object) -> list[DeviceRecord]:
    """One-shot search: ``await igrs.discover(interfaces=["lo"])``."""
    async with ControlPoint(**kwargs) as cp:  # type: ignore[arg-type]
        return await cp.search(timeout=timeout)

