"""``Device``: one local IGRS device — announces itself, answers searches, serves its
description, accepts pipes (secure ones only from paired devices) and PIN pairing, shares
services and, with ``groups=True``, hosts its device groups (``device.groups``). Later
layers (profiles) register their message handlers in ``handlers``; what may arrive outside a
secure pipe is igrs.core.access's table (specs/pipes.md §1)."""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import os
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from types import ModuleType, TracebackType
from typing import TYPE_CHECKING, Self

from igrs.constants import (
    DEFAULT_MAX_AGE,
    GROUP_LEASE,
    GROUP_REJOIN_WINDOW,
    IGRS_PATH,
    IGRS_PORT,
    KEEPALIVE_INTERVAL,
    NOTIFY_TIMEOUT,
    REGISTRY_MAX_DEVICES,
    ReturnCode,
)
from igrs.core.access import Access, check_access
from igrs.core.discovery import (
    Action,
    ControlPointDiscovery,
    DeviceAppeared,
    DeviceDiscovery,
    DeviceGone,
    DeviceRecord,
    DiscoveryEvent,
    Interface,
    ProbeLocation,
)
from igrs.errors import DeviceNotFound, IGRSError, NotImplementedMessage, SecurityError
from igrs.net import interfaces as netifaces
from igrs.net.driver import TimerDriver
from igrs.net.http import IgrsHttpClient, IgrsHttpServer, Reply, SealLater
from igrs.net.httpserver import HttpLimits
from igrs.net.isdp import IsdpEndpoints
from igrs.node.extensions import DeviceExtension
from igrs.node.keystore import Claim, KeyStore, MemoryKeyStore, PairedDevice, open_keystore
from igrs.node.service import Service
from igrs.node.service_host import ServiceHandler, ServiceHost, peer_info
from igrs.wire import messages
from igrs.wire.ids import DeviceId, DeviceType, ServiceType, check_name
from igrs.wire.isdp import SearchTarget
from igrs.wire.lazy_import import lazy_import
from igrs.wire.messages import Frame, SoapMessage, Status

if TYPE_CHECKING:  # pipes and pairing load their cipher modules on first use
    from igrs.core.pipes import PipeRecord, PipeTable
    from igrs.core.security import LocalIdentity, PairingResponder, PinPairingHost
    from igrs.node.group_manager import GroupManager, Policy
    from igrs.node.location_probe import ProbeRunner
    from igrs.node.pipe import PinProvider, Pipe
    from igrs.wire import description as ddesc
    from igrs.wire import group_datagrams
    from igrs.wire.bodies import pipes as pb
else:  # the pipe and pairing bodies load with the first such message, the description's model
    # with the first description asked, the group datagrams with the first one heard
    pb = lazy_import("igrs.wire.bodies.pipes")
    ddesc = lazy_import("igrs.wire.description")
    group_datagrams = lazy_import("igrs.wire.group_datagrams")

log = logging.getLogger(__name__)
_core_pipes_module: ModuleType | None = None


def _core_pipes() -> ModuleType:
    """igrs.core.pipes, imported at the first use (an idle device has no pipe); a function-level
    import on every sealed message cost more than a microsecond (issue 15)."""
    global _core_pipes_module
    if _core_pipes_module is None:
        from igrs.core import pipes

        _core_pipes_module = pipes
    return _core_pipes_module

INTERFACE_WATCH_INTERVAL = 5.0  # s between checks for changed interface addresses
SERVICE_MAINTENANCE_INTERVAL = 1.0  # s between subscription expiry checks
PAIRING_TIMEOUT = 60.0  # s between PairingStart and PairingConfirm
LOCATE_TIMEOUT = 2.0  # s a search for a group peer's address may take (MX 1 and the copies)
GROUP_REQUESTS = ("JoinCentralisedDeviceGroupRequest", "QuitCentralisedDeviceGroupNotify")


# Not frozen, for speed: made for every message (issue 15); never mutated, hashed as before.
@dataclass(slots=True, unsafe_hash=True)
class RequestContext:
    """Who sent a request: its address, and the pipe it came in (None: outside any pipe)."""

    address: str
    pipe: PipeRecord | None = None

    @property
    def secure(self) -> bool:
        return self.pipe is not None and self.pipe.secure


MessageHandler = Callable[[Frame, RequestContext], Awaitable[Reply]]


def location_url(address: str, port: int) -> str:
    host = f"[{address}]" if ipaddress.ip_address(address.partition("%")[0]).version == 6 else address
    return f"http://{host}:{port}{IGRS_PATH}"


class Device:
    """A local IGRS device.

    >>> async with Device(name="Living room TV", device_type="TV", interfaces=["lo"]) as tv:
    ...     await asyncio.sleep(60)

    ``groups=True`` makes it host device groups (specs/groups.md): ``device.groups`` is a
    ``GroupManager`` fed by this device's own ISDP endpoints and ``/IGRS`` handlers, whose
    unicast messages go in secure pipes this device opens to the other member (paired
    first); ``group_policy``, ``group_lease`` and ``group_rejoin_window`` configure it, and
    ``keepalive_interval`` the pipes it opens. ``max_devices`` caps the registry of the
    other devices it hears (for device events and group peers).
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
        state_dir: str | os.PathLike[str] | None = None,
        on_pin: Callable[[str], None] | None = None,
        allow_non_secure_pipes: bool = True,
        rng: random.Random | None = None,
        http_limits: HttpLimits | None = None,
        groups: bool = False,
        group_policy: Policy | None = None,
        group_lease: int = GROUP_LEASE,
        group_rejoin_window: float = GROUP_REJOIN_WINDOW,
        keepalive_interval: float = KEEPALIVE_INTERVAL,
        max_devices: int = REGISTRY_MAX_DEVICES,
        send_on_alt_group: bool = False,
    ) -> None:
        self.name = check_name(name)
        self.device_type = device_type if isinstance(device_type, DeviceType) else DeviceType.parse(device_type)
        if isinstance(device_id, str):
            device_id = DeviceId.parse(device_id)
        self.keystore: KeyStore | MemoryKeyStore = open_keystore(state_dir)
        self.device_id = self.keystore.device_id(device_id)
        if device_id is not None and self.device_id != device_id:
            log.warning("state directory holds device %s; ignoring --id %s", self.device_id, device_id)
        self.on_pin = on_pin
        self._allow_non_secure = allow_non_secure_pipes
        self._identity: LocalIdentity | None = None
        self._pipes: PipeTable | None = None
        self._pin_host: PinPairingHost | None = None
        self._pairing: tuple[int, DeviceId, PairingResponder, float] | None = None
        self.port = port
        self.http_port = http_port
        self.max_age = max_age
        self.manufacturer = manufacturer
        self.model_name = model_name
        self._interface_specs = list(interfaces) if interfaces is not None else None
        self._ipv6 = ipv6
        self._watch = watch_interfaces
        # send_on_alt_group: announce on 239.255.255.250 too, for ezbox-era peers (transport.md)
        self.discovery = DeviceDiscovery(self.device_id, self.device_type, name, max_age=max_age,
                                         port=port, rng=rng, send_on_alt_group=send_on_alt_group)
        self.handlers: dict[str, MessageHandler] = {
            "GetDeviceDescriptionRequest": self._on_get_description,
            "SearchDeviceRequestOnDevice": self._on_search_on_device,
            "CreatePipeRequest": self._on_pipe_step,
            "AuthenticateRequest": self._on_pipe_step,
            "AuthenticateResultRequest": self._on_pipe_step,
            "CreatePipeResultRequest": self._on_pipe_step,
            "DetachPipeNotify": self._on_detach,
            "DeviceOnlineDetectionRequest": self._on_keepalive,
            "PairingModeRequest": self._on_pairing_mode,
            "PairingStartRequest": self._on_pairing_start,
            "PairingConfirmRequest": self._on_pairing_confirm,
        }
        self.http = IgrsHttpServer(self.device_id, self._dispatch, self.description_bytes, limits=http_limits)
        self.services = ServiceHost(self._send_notification, require_secure=True)
        # Each service message goes straight to its ServiceHost handler (one dispatch).
        self.handlers.update({name: self._to_services(self.services.handler(name))
                              for name in ServiceHost.HANDLED})
        # ... but a device-event subscription first starts hearing the other devices (9.7).
        self._subscribe_device_events: MessageHandler = self.handlers["SubscribeDeviceEventRequest"]
        self.handlers["SubscribeDeviceEventRequest"] = self._on_subscribe_device_events
        # Its client only delivers notifications: NOTIFY_TIMEOUT bounds each (specs/events.md).
        self._client = IgrsHttpClient(self.device_id, timeout=NOTIFY_TIMEOUT)
        self._maintenance: asyncio.Task[None] | None = None
        self._background: set[asyncio.Future[None]] = set()
        # Other devices as this one hears them, for device-event subscribers (9.7) and group
        # peers; created on the first subscription (or at start with groups) so that an idle
        # device decodes no one else's datagrams.
        self.max_devices = max_devices
        self._neighbours: ControlPointDiscovery | None = None
        self._neighbour_probes: ProbeRunner | None = None
        # The joinedGroupList of the description.
        self.group_source: Callable[[], Sequence[ddesc.GroupRef]] | None = None
        self.keepalive_interval = keepalive_interval
        self._peer_pipes: dict[DeviceId, Pipe] = {}
        self._peer_locks: dict[DeviceId, asyncio.Lock] = {}
        self._groups: GroupManager | None = None
        if groups:  # the group modules load only for a device that hosts groups
            from igrs.core.device_groups import allow_all
            from igrs.node.group_manager import GroupManager

            self._groups = GroupManager(
                self.device_id, self.name, execute=self._execute, send_request=self._send_group_request,
                max_age=max_age, lease=group_lease, port=port, policy=group_policy or allow_all,
                rejoin_window=group_rejoin_window, on_joined_groups_changed=self._joined_groups_changed,
                rng=rng)
            self.group_source = self._groups.joined_groups
            for mtype in GROUP_REQUESTS:
                self.handlers[mtype] = self._on_group_request
        self._endpoints: IsdpEndpoints | None = None
        self._driver = TimerDriver(self._next_deadline, self._poll)
        self._watch_task: asyncio.Task[None] | None = None
        self._interfaces: list[Interface] = []
        self.locations: dict[str, str] = {}
        # Plugged in from above (igrs.node.extensions: bridges such as igrs.bridges.dnssd).
        self._extensions: list[DeviceExtension] = []
        self._active: list[DeviceExtension] = []  # those started
        self._claim = Claim()  # the state folder, held while the device runs (keystore.claim)

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
        self._claim = self.keystore.claim()  # one running device per state folder (identity)
        try:
            await self._open(self._interfaces)
            for extension in list(self._extensions):
                if extension not in self._active:
                    await extension.start()
                    self._active.append(extension)
            await self._execute(self.discovery.start(loop.time()))
            if self._groups is not None:
                self._hear_neighbours()
                self._groups.set_interfaces(self._interfaces)
                await self._groups.start()
        except BaseException:
            await self._stop_extensions()
            await self._close_io()
            self._claim.release()
            raise
        self._driver.start()
        self._maintenance = asyncio.create_task(self._maintain_services())
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
        for task in (self._watch_task, self._maintenance):
            if task is not None:
                task.cancel()
        self._watch_task = self._maintenance = None
        await self._stop_extensions()  # their goodbyes first, while the device still answers
        if self._groups is not None:  # quits and dissolutions leave while the sockets are open
            await self._groups.stop()
        pipes, self._peer_pipes = list(self._peer_pipes.values()), {}
        for pipe in pipes:
            await pipe.close("device stopping")
        if self._neighbour_probes is not None:
            await self._neighbour_probes.close()
        await self.services.aclose()
        await self._client.close()
        await self._driver.stop()
        if self._endpoints is not None:
            loop = asyncio.get_running_loop()
            await self._execute(self.discovery.stop(loop.time()))
            while (deadline := self.discovery.next_deadline()) is not None:
                await asyncio.sleep(max(0.0, deadline - loop.time()))
                await self._execute(self.discovery.poll(loop.time()))
        await self._close_io()
        self._claim.release()

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
        if self._neighbours is not None:
            self._neighbours.set_interfaces(interfaces)
        if self._groups is not None:
            self._groups.set_interfaces(interfaces)
        self._driver.wake()
        await self._update_extensions()

    # --- extensions (igrs.node.extensions) ---------------------------------------------------------
    @property
    def running(self) -> bool:
        """Between a successful start() and stop()."""
        return self._endpoints is not None

    async def add_extension(self, extension: DeviceExtension) -> None:
        """Plug ``extension`` in: started now if the device runs, else by ``start()``; told of
        changes by ``update()``; stopped first by ``stop()`` (igrs.node.extensions)."""
        if extension in self._extensions:
            return
        self._extensions.append(extension)
        if self.running:
            try:
                await extension.start()
            except BaseException:
                self._extensions.remove(extension)
                raise
            self._active.append(extension)

    async def remove_extension(self, extension: DeviceExtension) -> None:
        """Unplug ``extension`` (stopped now if it runs)."""
        if extension in self._extensions:
            self._extensions.remove(extension)
        if extension in self._active:
            self._active.remove(extension)
            await extension.stop()

    @property
    def extensions(self) -> list[DeviceExtension]:
        return list(self._extensions)

    async def _update_extensions(self) -> None:
        for extension in list(self._active):
            try:
                await extension.update()
            except Exception:
                log.exception("extension %r failed to update", extension)

    async def _stop_extensions(self) -> None:
        while self._active:
            extension = self._active.pop()
            try:
                await extension.stop()
            except Exception:
                log.exception("extension %r failed to stop", extension)

    # --- I/O glue ------------------------------------------------------------------------------
    def _on_datagram(self, data: bytes, source: tuple[str, int], interface: str) -> None:
        if b"DeviceGroup" in data and group_datagrams.is_group_datagram(data):
            if self._groups is not None:  # device groups (9.5/9.8)
                self._groups.on_datagram(data, source, interface)
            return
        now = asyncio.get_running_loop().time()
        self.discovery.on_datagram(data, source, interface, now)
        if self._neighbours is not None:
            self._publish_device_events(self._neighbours.on_datagram(data, source, interface, now))
        self._driver.wake()

    def _hear_neighbours(self) -> ControlPointDiscovery:
        """Start keeping a registry of the other devices this one hears."""
        if self._neighbours is None:
            from igrs.node.location_probe import ProbeRunner

            self._neighbours = ControlPointDiscovery(self.device_id, port=self.port,
                                                     max_devices=self.max_devices)
            self._neighbours.set_interfaces(self._interfaces)
            self._neighbour_probes = ProbeRunner(self._client, self._neighbours, self._on_probe_events)
        return self._neighbours

    def _on_probe_events(self, events: list[DiscoveryEvent]) -> None:
        self._publish_device_events(events)
        self._driver.wake()

    def _publish_device_events(self, events: list[DiscoveryEvent]) -> None:
        for ev in events:
            if isinstance(ev, DeviceAppeared | DeviceGone):
                self.services.publish_device_event(ev.device.device_id, isinstance(ev, DeviceAppeared))
            if isinstance(ev, DeviceGone) and self._groups is not None:
                self._groups.peer_lost(ev.device.device_id)  # specs/groups.md §5.4

    def _next_deadline(self) -> float | None:
        pipes = self._pipes.next_deadline() if self._pipes is not None else None
        neighbours = self._neighbours.next_deadline() if self._neighbours is not None else None
        times = [t for t in (self.discovery.next_deadline(), pipes, neighbours) if t is not None]
        return min(times, default=None)

    async def _poll(self, now: float) -> None:
        for record in self._pipes.expire(now) if self._pipes is not None else ():
            log.info("pipe %d with %s closed: idle", record.pipe_id, record.peer)
            if not any(r.peer == record.peer for r in self.pipes.pipes):
                self.services.drop_peer(record.peer)
        await self._execute(self.discovery.poll(now))
        if self._neighbours is not None:
            actions, events = self._neighbours.poll(now)
            self._publish_device_events(events)
            if self._neighbour_probes is not None:
                self._neighbour_probes.run(actions)
            await self._execute([a for a in actions if not isinstance(a, ProbeLocation)])

    async def _execute(self, actions: Sequence[Action]) -> None:
        if self._endpoints is not None:
            await self._endpoints.execute(actions)

    # --- description -----------------------------------------------------------------------------
    @property
    def description(self) -> ddesc.DeviceDescription:
        return ddesc.DeviceDescription(
            device_id=self.device_id, device_type=self.device_type, name=self.name,
            manufacturer=self.manufacturer, model_name=self.model_name,
            groups=tuple(self.group_source()) if self.group_source is not None else (),
            services=tuple(ddesc.ServiceRef(s.service_type, s.service_id, s.name, s.security_ids)
                           for s in self.services.services),
        )

    # --- services (10.x): the resource-sharing manager --------------------------------------------
    def add_service(self, service: Service, service_id: int | None = None, *,
                    access: Access | str = Access.PAIRED) -> int:
        """Share ``service`` from this device; returns its service id. By default only paired
        devices may use it, in a secure pipe; ``access="open"`` lets any peer on the LAN open a
        session and invoke it in the clear, without a pipe -- for legacy peers that have none
        (ezbox): no authentication, no confidentiality (specs/security.md §12)."""
        sid = self.services.add(service, service_id, access=access)
        self._advertise_services()
        if Access(access) is Access.OPEN:
            log.warning("service %s (#%d) is shared openly: any host on the LAN may use it, unauthenticated",
                        type(service).name or type(service).__name__, sid)
        return sid

    def share_openly(self, service_id: int, openly: bool = True) -> None:
        """Share an already hosted service openly (or back to paired devices only)."""
        self.services.set_access(service_id, Access.OPEN if openly else Access.PAIRED)
        if openly:
            log.warning("service #%d is shared openly: any host on the LAN may use it, unauthenticated",
                        service_id)

    async def remove_service(self, service_id: int) -> None:
        await self.services.remove(service_id)
        self._advertise_services()

    def _advertise_services(self) -> None:
        """ServiceOnline/OfflineAdvertisement (10.1) for what changed, and the description's
        ``isdp:update`` (isdp.md §8), at once if running."""
        services = {s.service_id: (ServiceType.parse(s.service_type), s.name) for s in self.services.services}
        running = self._endpoints is not None
        now = asyncio.get_running_loop().time() if running else 0.0
        actions = self.discovery.set_services(services, now)
        if actions:
            self._send_soon(actions + self.discovery.description_changed(now))
        if self._active:
            self._in_background(self._update_extensions())

    def _joined_groups_changed(self, groups: list[ddesc.GroupRef]) -> None:
        """joinedGroupList changed (groups.md §5.7): re-announce with ``isdp:update``."""
        if self._endpoints is not None:
            self._send_soon(self.discovery.description_changed(asyncio.get_running_loop().time()))
        if self._active:
            self._in_background(self._update_extensions())

    def _send_soon(self, actions: list[Action]) -> None:
        if actions:
            self._in_background(self._execute(actions))
            self._driver.wake()  # the copies

    def _in_background(self, work: Awaitable[None]) -> None:
        task = asyncio.ensure_future(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def _to_services(self, handler: ServiceHandler) -> MessageHandler:
        """A ServiceHost handler as a device handler (the access rule already applied)."""

        async def to_services(frame: Frame, ctx: RequestContext) -> Reply:
            pipe = ctx.pipe
            peer = peer_info(frame.routing.source, ctx.address.partition("%")[0], ctx.secure,
                             pipe.pipe.session_keys if pipe is not None else None)
            return await handler(frame, peer)

        return to_services

    async def _on_subscribe_device_events(self, frame: Frame, ctx: RequestContext) -> Reply:
        self._hear_neighbours()  # other devices' announcements, for device events (9.7)
        return await self._subscribe_device_events(frame, ctx)

    async def _send_notification(self, target: str | DeviceId, message: SoapMessage,
                                 subscriber: str | None) -> None:
        """Deliver an event to a subscriber's callback, sealed in its secure pipe."""
        if isinstance(target, DeviceId):
            log.debug("no callback to reach %s for %s", target, message.message_type)
            return
        peer = DeviceId.parse(subscriber) if subscriber else None
        records = self._pipes.pipes if self._pipes is not None else []
        pipe = next((r for r in reversed(records) if r.peer == peer and r.secure), None)
        if pipe is None or pipe.pipe.channel is None:
            raise SecurityError(f"no secure pipe to {subscriber} for its notification")
        channel, pipe_id = pipe.pipe.channel, pipe.pipe_id
        core_pipes = _core_pipes()
        _, answer = await self._client.send(target, message, peer, seal=lambda m, seq: core_pipes.seal(
            channel, pipe_id, m, source=self.device_id, target=peer, sequence_id=seq))
        if answer is not None and isinstance(answer.message, messages.ErrorResponse):
            raise SecurityError(answer.message.status.reason or "notification refused",
                                return_code=ReturnCode.FORBIDDEN)

    async def _maintain_services(self) -> None:
        while True:
            await asyncio.sleep(SERVICE_MAINTENANCE_INTERVAL)
            self.services.expire()

    # --- device groups (9.5, 9.8) -----------------------------------------------------------------
    @property
    def groups(self) -> GroupManager:
        """This device's groups (``Device(groups=True)``)."""
        if self._groups is None:
            from igrs.core.device_groups import GroupError

            raise GroupError("this device hosts no groups: create it with Device(groups=True)")
        return self._groups

    @property
    def has_groups(self) -> bool:
        return self._groups is not None

    async def _on_group_request(self, frame: Frame, ctx: RequestContext) -> Reply:
        assert self._groups is not None
        return await self._groups.handle_request(frame, ctx.address)

    async def _send_group_request(self, device_id: DeviceId, message: SoapMessage) -> Frame | None:
        """A group message to another device, in a secure pipe this device opens to it. A
        pipe the other device no longer knows (it restarted) or cannot be reached by is
        dropped, and the message tried once more in a new one."""
        pipe = await self.pipe_to(device_id)
        try:
            _, frame = await pipe.exchange(message)
            refused = frame.message if frame is not None and isinstance(frame.message, messages.ErrorResponse) \
                else None
            if refused is None or refused.status.return_code != ReturnCode.NOT_AUTHENTICATED:
                return frame
        except (IGRSError, OSError) as exc:
            log.debug("%s to %s in pipe %d failed: %s", message.message_type, device_id, pipe.pipe_id, exc)
        self._forget_pipe(pipe)
        _, frame = await (await self.pipe_to(device_id)).exchange(message)
        return frame

    def _forget_pipe(self, pipe: Pipe) -> None:
        if self._peer_pipes.get(pipe.peer) is pipe:
            del self._peer_pipes[pipe.peer]
        task = asyncio.ensure_future(pipe.close("not usable"))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def pipe_to(self, device_id: DeviceId) -> Pipe:
        """A secure pipe from this device to another, paired one (opened once, kept alive;
        its keep-alive failing reports the device lost to the groups)."""
        lock = self._peer_locks.setdefault(device_id, asyncio.Lock())
        async with lock:
            pipe = self._peer_pipes.get(device_id)
            if pipe is not None and pipe.alive:
                return pipe
            from igrs.node.pipe import open_pipe_to

            neighbours = self._hear_neighbours()
            record = neighbours.get(device_id) or await self._locate(device_id)
            pipe = await open_pipe_to(record, neighbours, self._client, self.identity, self.keystore.peer_key,
                                      keepalive_interval=self.keepalive_interval,
                                      on_proven=self._on_probe_events)
            pipe.on_closed = self._peer_pipe_closed
            self._peer_pipes[device_id] = pipe
            return pipe

    def _peer_pipe_closed(self, pipe: Pipe, reason: str) -> None:
        """The keep-alive found the other device gone (pipes this device closes itself are
        out of ``_peer_pipes`` first)."""
        if self._peer_pipes.get(pipe.peer) is not pipe:
            return
        del self._peer_pipes[pipe.peer]
        log.info("pipe to %s closed: %s", pipe.peer, reason)
        if self._groups is not None:
            self._groups.peer_lost(pipe.peer)

    async def _locate(self, device_id: DeviceId) -> DeviceRecord:
        """Search for one device by its id on this device's own endpoints."""
        neighbours = self._hear_neighbours()
        loop = asyncio.get_running_loop()
        await self._execute(list(neighbours.search(loop.time(), SearchTarget("device", device_id=device_id),
                                                   mx=1)))
        self._driver.wake()
        deadline = loop.time() + LOCATE_TIMEOUT
        while (record := neighbours.get(device_id)) is None:
            if loop.time() >= deadline:
                raise DeviceNotFound(f"{device_id} did not answer a search")
            await asyncio.sleep(0.05)
        return record

    def description_bytes(self) -> bytes:
        return ddesc.to_bytes(self.description)

    @property
    def interfaces(self) -> list[Interface]:
        return list(self._interfaces)

    @property
    def location(self) -> str:
        return next(iter(self.locations.values()), "")

    # --- unicast messages ------------------------------------------------------------------------
    def _now(self) -> float:
        return asyncio.get_running_loop().time()

    async def _dispatch(self, frame: Frame, address: str) -> Reply:
        sealed = frame.message
        if isinstance(sealed, pb.SecureMessage):
            core_pipes = _core_pipes_module or _core_pipes()
            record = self.pipes.get(sealed.pipe_id, frame.routing.source, self._now())
            channel = record.pipe.channel
            if channel is None:
                raise SecurityError("sealed message in a non-secure pipe")
            inner = core_pipes.unseal(channel, frame)
            reply = await self._handler(inner)(inner, RequestContext(address, record))
            if reply is None or isinstance(reply, SealLater):
                return reply
            peer, pipe_id = frame.routing.source, record.pipe_id
            return SealLater(reply, lambda m, seq: core_pipes.seal(
                channel, pipe_id, m, source=self.device_id, target=peer, sequence_id=seq))
        handler = self._handler(frame)  # 501 before 401 for what we do not serve at all
        check_access(frame.routing.message_type, sealed=False, service=self.services.service_access(frame))
        return await handler(frame, RequestContext(address))

    def _handler(self, frame: Frame) -> MessageHandler:
        handler = self.handlers.get(frame.routing.message_type)
        if handler is None:
            raise NotImplementedMessage(f"{frame.routing.message_type} is not served by this device")
        return handler

    async def _on_get_description(self, frame: Frame, ctx: RequestContext) -> Reply:
        return messages.GetDeviceDescriptionResponse(Status(frame.routing.sequence_id), self.description)

    async def _on_search_on_device(self, frame: Frame, ctx: RequestContext) -> Reply:
        assert isinstance(frame.message, messages.SearchDeviceRequestOnDevice)
        matched = self.discovery.matches(frame.message.target)
        return messages.SearchDeviceResponseOnDevice(
            Status(frame.routing.sequence_id, ReturnCode.SUCCESS), matched, self.device_type, self.name)

    # --- pipes (9.2) -------------------------------------------------------------------------
    async def _on_pipe_step(self, frame: Frame, ctx: RequestContext) -> Reply:
        msg, peer, ack, now = frame.message, frame.routing.source, frame.routing.sequence_id, self._now()
        if isinstance(msg, pb.CreatePipeRequest):
            answer = self.pipes.on_create_pipe(peer, msg, ack, now, source=ctx.address.partition("%")[0])
            self._driver.wake()  # the deadline of the half-open handshake
            return answer
        if isinstance(msg, pb.AuthenticateRequest):
            return self.pipes.on_authenticate(peer, msg, ack, now)
        if isinstance(msg, pb.AuthenticateResultRequest):
            return self.pipes.on_authenticate_result(peer, msg, ack, now)
        assert isinstance(msg, pb.CreatePipeResultRequest)
        reply = self.pipes.on_create_pipe_result(peer, msg, ack, now)
        self._driver.wake()  # the idle deadline of the new pipe
        log.info("pipe %d with %s established", reply.pipe_id, peer)
        return reply

    async def _on_detach(self, frame: Frame, ctx: RequestContext) -> Reply:
        assert isinstance(frame.message, pb.DetachPipeNotify)
        pipe_id = ctx.pipe.pipe_id if ctx.pipe is not None else frame.message.pipe_id
        self.pipes.detach(pipe_id, frame.routing.source)
        return None

    async def _on_keepalive(self, frame: Frame, ctx: RequestContext) -> Reply:
        assert isinstance(frame.message, pb.DeviceOnlineDetectionRequest)
        if ctx.pipe is None:  # a non-secure pipe's probe arrives unsealed
            self.pipes.get(frame.message.pipe_id, frame.routing.source, self._now())
        return pb.DeviceOnlineDetectionResponse(Status(frame.routing.sequence_id))

    # --- PIN pairing (project extension) -----------------------------------------------------------
    @property
    def identity(self) -> LocalIdentity:
        """This device's key pair (created or loaded when first needed)."""
        if self._identity is None:
            self._identity = self.keystore.load_or_create_identity(self.device_id)
        return self._identity

    @property
    def pipes(self) -> PipeTable:
        if self._pipes is None:
            from igrs.core.pipes import PipeTable

            self._pipes = PipeTable(self.identity, self.keystore.peer_key,
                                    allow_non_secure=self._allow_non_secure)
        return self._pipes

    def _pin_host_or_none(self) -> PinPairingHost | None:
        if self._pin_host is None and self.on_pin is not None:
            from igrs.core.security import PinPairingHost

            self._pin_host = PinPairingHost(self.identity, name=self.name)
        return self._pin_host

    async def _on_pairing_mode(self, frame: Frame, ctx: RequestContext) -> Reply:
        host = self._pin_host_or_none()
        if host is None or self.on_pin is None:
            raise SecurityError("this device has no way to show a PIN", return_code=ReturnCode.FORBIDDEN)
        pin = host.pin(self._now())
        self.on_pin(pin)
        return pb.PairingModeResponse(Status(frame.routing.sequence_id), host.digits,
                                      int(host.pin_lifetime))

    async def _on_pairing_start(self, frame: Frame, ctx: RequestContext) -> Reply:
        assert isinstance(frame.message, pb.PairingStartRequest)
        host = self._pin_host_or_none()
        if host is None:
            raise SecurityError("pairing is not enabled on this device", return_code=ReturnCode.FORBIDDEN)
        now = self._now()
        responder, data = host.accept(frame.message.data, now)
        handshake_id = int.from_bytes(os.urandom(4), "big") or 1
        self._pairing = (handshake_id, frame.routing.source, responder, now + PAIRING_TIMEOUT)
        return pb.PairingStartResponse(Status(frame.routing.sequence_id), data, handshake_id=handshake_id)

    async def _on_pairing_confirm(self, frame: Frame, ctx: RequestContext) -> Reply:
        assert isinstance(frame.message, pb.PairingConfirmRequest)
        pending, self._pairing = self._pairing, None
        now = self._now()
        if (pending is None or pending[0] != frame.message.handshake_id
                or pending[1] != frame.routing.source or now > pending[3]):
            raise SecurityError("no pairing in progress with this device",
                                return_code=ReturnCode.PRECONDITION_FAILED)
        responder = pending[2]
        data = responder.on_confirm(frame.message.data, now)
        result = responder.result
        if result.peer != frame.routing.source:
            raise SecurityError("paired identity is not the sender", return_code=ReturnCode.FORBIDDEN)
        self.keystore.add(PairedDevice.from_pairing(result, paired_at=time.time()))
        log.info("paired with %s (%s)", result.peer, result.fingerprint)
        return pb.PairingConfirmResponse(Status(frame.routing.sequence_id), data)

    async def pair(self, device_id: DeviceId, pin: str | PinProvider) -> PairedDevice:
        """Pair this device with another one by the PIN that one shows (the pairing
        extension, initiated from here; a slave pairs with its master like this, or with
        ``igrs pair`` on the same state folder). The pairing is stored in the keystore."""
        from igrs.node.pipe import pair as pair_device

        record = self._hear_neighbours().get(device_id) or await self._locate(device_id)

        async def typed(digits: int) -> str:
            return pin if isinstance(pin, str) else await pin(digits)

        paired = await pair_device(self._client, record.url, self.identity, device_id,
                                   typed if isinstance(pin, str) else pin, name=record.name, now=time.time)
        self.keystore.add(paired)
        return paired

    def unpair(self, peer: DeviceId) -> bool:
        """Forget a paired device and close its pipes (its sessions and subscriptions end)."""
        if self._pipes is not None:
            self._pipes.drop_peer(peer)
        self.services.drop_peer(peer)
        return self.keystore.remove(peer)
