"""Device discovery state (clauses 9.1 and 9.6), sans-IO.

``DeviceDiscovery`` is a device's side: the advertiser and the search responder.
``ControlPointDiscovery`` is a control point's side: searching and the registry of remote
devices. Both take datagrams and ``now`` and return actions (datagrams to send, locations
to probe) and events; timers are exposed as ``next_deadline()`` + ``poll(now)``. When datagrams
go out is decided by ``igrs.core.datagram_schedule``, shared with device groups.
Rules: specs/isdp.md.
"""

from __future__ import annotations

import ipaddress
import random
from dataclasses import dataclass, field, replace

from igrs.constants import (
    DEFAULT_MAX_AGE,
    DEFAULT_MX,
    IGRS_PORT,
    IPV4_GROUP_ALT,
    MAX_MX,
    MAX_TRACKED_SOURCES,
    REGISTRY_MAX_DEVICES,
    REPOINT_MAX_CANDIDATES,
    REPOINT_PROBE_INTERVAL,
    SEARCH_RETRIES,
    SOURCE_BURST,
    SOURCE_RATE,
)
from igrs.core.datagram_schedule import (
    Address,
    AdvertisementSchedule,
    Answer,
    Copy,
    DatagramAction,
    DropCounter,
    Interface,
    SearchRepeats,
    SearchResponder,
    SendMulticast,
    SendUnicast,
    earliest,
    group_host,
    response_budget,
)
from igrs.core.ratelimit import KeyedRateLimiter
from igrs.core.timers import ExpiryQueue, Timers
from igrs.errors import ProtocolError
from igrs.wire import isdp
from igrs.wire.ids import DeviceId, DeviceType, ServiceType
from igrs.wire.isdp import SearchTarget

__all__ = [
    "Action", "Address", "ControlPointDiscovery", "DeviceAppeared", "DeviceDiscovery", "DeviceGone",
    "DeviceRecord", "DeviceUpdated", "DiscoveryEvent", "DropCounter", "Interface",
    "ProbeLocation", "SendMulticast", "SendUnicast", "ServiceRecord", "group_host",
]

Action = DatagramAction


# --- the device side -----------------------------------------------------------------------------
class DeviceDiscovery:
    """Advertiser and search responder of one local device."""

    def __init__(
        self,
        device_id: DeviceId,
        device_type: DeviceType,
        name: str,
        *,
        max_age: int = DEFAULT_MAX_AGE,
        port: int = IGRS_PORT,
        rng: random.Random | None = None,
        send_on_alt_group: bool = False,
    ) -> None:
        self.device_id = device_id
        self.device_type = device_type
        self.name = name
        self.max_age = max_age
        self.port = port
        self.rng = rng or random.Random()
        # Every announcement also to 239.255.255.250 (IPV4_GROUP_ALT), for ezbox-era peers that
        # listen there only (specs/transport.md, Multicast groups).
        self.send_on_alt_group = send_on_alt_group
        self.drops = DropCounter()
        self.running = False
        self._services: dict[int, tuple[ServiceType, str]] = {}  # service id -> (type, name)
        self._interfaces: dict[str, Interface] = {}
        self._locations: dict[str, str] = {}
        self._schedule: AdvertisementSchedule[str] = AdvertisementSchedule(max_age, self.rng)
        self._responder = SearchResponder(self.rng, self.drops)

    @property
    def answered(self) -> int:
        """Searches answered so far."""
        return self._responder.answered

    # interfaces & addresses
    def set_interfaces(self, interfaces: dict[Interface, str], now: float) -> list[Action]:
        """Set the interfaces with their description LOCATION; re-announce where changed."""
        new = {iface.name: iface for iface in interfaces}
        locations = {iface.name: loc for iface, loc in interfaces.items()}
        changed = [
            name for name in new
            if self._interfaces.get(name) != new[name] or self._locations.get(name) != locations[name]
        ]
        gone = [name for name in self._interfaces if name not in new]
        actions: list[Action] = []
        if self.running:
            # Say goodbye where we leave, then hello (with the new LOCATION) where we changed.
            actions += [a for name in gone for a in self._byebye(self._interfaces[name])]
        self._interfaces, self._locations = new, locations
        if self.running:
            for name in changed:
                actions += self._announce_burst(name, now)
        return actions

    @property
    def interfaces(self) -> list[Interface]:
        return list(self._interfaces.values())

    # lifecycle
    def start(self, now: float) -> list[Action]:
        self.running = True
        actions: list[Action] = []
        for name in self._interfaces:
            actions += self._announce_burst(name, now)
        self._schedule.start_rounds(now)
        return actions

    def stop(self, now: float) -> list[Action]:
        """Byebye on every interface now; the extra copies become due COPY_SPACING later."""
        self.running = False
        self._schedule.clear()
        self._responder.clear()
        actions: list[Action] = [a for i in self._interfaces.values() for a in self._byebye(i)]
        for name in self._interfaces:
            self._schedule.burst(name, now, "goodbye")
        return actions

    def description_changed(self, now: float) -> list[Action]:
        """The description changed (services, groups): ``isdp:update`` on every interface,
        with its copies (specs/isdp.md §8)."""
        if not self.running:
            return []
        actions: list[Action] = []
        for name, iface in self._interfaces.items():
            actions += self._device_alive(iface, update=True)
            self._schedule.burst(name, now, "update")
        return actions

    def _announce_burst(self, name: str, now: float) -> list[Action]:
        self._schedule.burst(name, now)
        return list(self._alive(self._interfaces[name]))

    def _announce(self, iface: Interface, msg: isdp.IsdpMessage) -> list[SendMulticast]:
        """``msg`` to the group of ``iface``; with ``send_on_alt_group`` (IPv4) to 239.255.255.250
        as well, its HOST naming that group."""
        out = [SendMulticast(iface.name, isdp.encode(msg, host=group_host(iface, self.port)))]
        if self.send_on_alt_group and iface.family == 4:
            out.append(SendMulticast(iface.name, isdp.encode(msg, host=f"{IPV4_GROUP_ALT}:{self.port}"),
                                     IPV4_GROUP_ALT))
        return out

    def _device_alive(self, iface: Interface, *, update: bool = False) -> list[SendMulticast]:
        msg = isdp.DeviceOnlineAdvertisement(
            self.device_id, self.device_type, self._locations[iface.name], self.max_age, self.name,
            update=update)
        return self._announce(iface, msg)

    def _alive(self, iface: Interface) -> list[SendMulticast]:
        """The device's advertisement on ``iface``, then one per shared service."""
        return [*self._device_alive(iface),
                *(a for sid, (st, name) in self._services.items()
                  for a in self._service_alive(iface, sid, st, name))]

    def _byebye(self, iface: Interface) -> list[SendMulticast]:
        msg = isdp.DeviceOfflineAdvertisement(self.device_id, self.device_type)
        return [*(a for sid, (st, _) in self._services.items() for a in self._service_byebye(iface, sid, st)),
                *self._announce(iface, msg)]

    # timers
    def next_deadline(self) -> float | None:
        return earliest(self._schedule.next_deadline(), self._responder.next_deadline())

    def poll(self, now: float) -> list[Action]:
        actions: list[Action] = []
        for item in self._schedule.due(now):
            if isinstance(item, Copy):
                iface = self._interfaces.get(item.subject)
                if iface is None:
                    continue
                if item.kind == "goodbye":
                    actions += self._byebye(iface)
                elif self.running:
                    actions += self._device_alive(iface, update=True) if item.kind == "update" \
                        else self._alive(iface)
            elif self.running:  # the periodic round
                actions += [a for i in self._interfaces.values() for a in self._alive(i)]
        if self.running:
            actions += self._responder.due(now)
        return actions

    # input
    def on_datagram(self, data: bytes, source: Address, interface: str, now: float) -> list[Action]:
        """Handle a datagram received on ``interface``; only searches concern a device."""
        if not self.running:
            return []
        if not data.startswith(b"M-SEARCH"):
            # Only searches concern a device: other devices' announcements are not decoded
            # (a start-up storm of many devices costs each of them next to nothing).
            return []
        try:
            msg = isdp.decode(data)
        except ProtocolError:
            self.drops.drop("malformed")
            return []
        if isinstance(msg, isdp.SearchDeviceRequest | isdp.SearchServiceRequest):
            self.on_search(msg, source, interface, now, len(data))
        return []

    def matches(self, target: SearchTarget) -> bool:
        if target.kind == "all":
            return True
        if target.kind == "device":
            return target.device_id == self.device_id
        if target.kind == "device_type":
            assert target.device_type is not None
            return self.device_type.satisfies(target.device_type)
        if target.kind == "service_type":
            return any(self._service_matches(s, target) for s, _ in self._services.values())
        return False

    @staticmethod
    def _service_matches(stype: ServiceType, target: SearchTarget) -> bool:
        wanted = target.service_type
        return wanted is not None and stype.name == wanted.name and stype.version >= wanted.version

    # services (10.1): advertised with the device, one datagram per service
    def set_services(self, services: dict[int, tuple[ServiceType, str]], now: float) -> list[Action]:
        """Set the shared services; announce new ones and say goodbye for removed ones."""
        added = {sid: v for sid, v in services.items() if self._services.get(sid) != v}
        removed = {sid: v for sid, v in self._services.items() if sid not in services}
        self._services = dict(services)
        if not self.running:
            return []
        actions: list[Action] = []
        for iface in self._interfaces.values():
            actions += [a for sid, (stype, _) in removed.items()
                        for a in self._service_byebye(iface, sid, stype)]
            actions += [a for sid, (stype, name) in added.items()
                        for a in self._service_alive(iface, sid, stype, name)]
        return actions

    def _service_alive(self, iface: Interface, sid: int, stype: ServiceType, name: str) -> list[SendMulticast]:
        msg = isdp.ServiceOnlineAdvertisement(self.device_id, stype, sid, self._locations[iface.name],
                                              self.max_age, name)
        return self._announce(iface, msg)

    def _service_byebye(self, iface: Interface, sid: int, stype: ServiceType) -> list[SendMulticast]:
        return self._announce(iface, isdp.ServiceOfflineAdvertisement(self.device_id, stype, sid))

    def on_search(self, req: isdp.SearchDeviceRequest | isdp.SearchServiceRequest, source: Address,
                  interface: str, now: float, request_size: int) -> None:
        """Schedule the answer to a search (device search 9.6, or service search 10.2) of
        ``request_size`` bytes."""
        if req.source_device_id == self.device_id:
            return
        location = self._locations.get(interface, "")
        answers: list[isdp.IsdpMessage]
        if isinstance(req, isdp.SearchServiceRequest):
            answers = [
                isdp.SearchServiceResponse(self.device_id, self.device_type, stype, sid, location,
                                           self.max_age, name, req.source_device_id)
                for sid, (stype, name) in sorted(self._services.items())
                if self._service_matches(stype, req.target)
            ]
        elif self.matches(req.target):
            answers = [isdp.SearchDeviceResponse(self.device_id, self.device_type, location, self.max_age,
                                                 req.target, self.name, req.source_device_id)]
        else:
            answers = []
        if not answers:
            return

        def encoded() -> list[Answer]:
            full = [isdp.encode(a, host="") for a in answers]
            if sum(map(len, full)) <= response_budget(request_size):  # all go whole: no compact form
                return [(f, None) for f in full]
            return [(f, isdp.encode(a, host="", compact=True)) for f, a in zip(full, answers, strict=True)]

        self._responder.respond(encoded, target=str(req.target), mx=req.mx, request_size=request_size,
                                source=source, iface=self._interfaces.get(interface), now=now)


# --- the control point side ----------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class DeviceRecord:
    """What a control point knows of one remote device (an immutable snapshot)."""

    device_id: DeviceId
    device_type: DeviceType
    name: str
    location: str
    address: str
    max_age: int
    first_seen: float
    last_seen: float
    seen_on: frozenset[tuple[str, str]]  # (local interface, remote address): the device's own paths
    # (local interface, remote address) that announced this device id from another address than
    # its own on that interface, and have not proved to be it (specs/isdp.md §11a)
    candidates: frozenset[tuple[str, str]] = frozenset()

    @property
    def expires_at(self) -> float:
        return self.last_seen + self.max_age

    def age(self, now: float) -> float:
        return max(0.0, now - self.last_seen)

    @property
    def interfaces(self) -> list[str]:
        return sorted({iface for iface, _ in self.seen_on})

    @property
    def url(self) -> str:
        """``location`` made reachable: a link-local IPv6 host gets the zone it was heard on."""
        return _zoned(self.location, self.address)


def _zoned(location: str, address: str) -> str:
    addr, _, zone = address.partition("%")
    if not zone or f"[{addr}]" not in location:
        return location
    return location.replace(f"[{addr}]", f"[{addr}%{zone}]", 1)


@dataclass(frozen=True, slots=True)
class DeviceAppeared:
    device: DeviceRecord


@dataclass(frozen=True, slots=True)
class DeviceUpdated:
    device: DeviceRecord
    previous: DeviceRecord


@dataclass(frozen=True, slots=True)
class DeviceGone:
    device: DeviceRecord
    reason: str  # "byebye" | "expired"


DiscoveryEvent = DeviceAppeared | DeviceUpdated | DeviceGone


@dataclass(frozen=True, slots=True)
class ServiceRecord:
    """A service a remote device shares, as heard by a control point (10.1/10.2)."""

    device_id: DeviceId
    service_type: ServiceType
    service_id: int
    name: str
    location: str
    address: str
    max_age: int
    last_seen: float

    @property
    def expires_at(self) -> float:
        return self.last_seen + self.max_age


@dataclass(frozen=True, slots=True)
class ProbeLocation:
    """Action: ask the device at ``location`` (the known device's own LOCATION) for its
    description, and report whether ``device_id`` answered there with ``probe_result``."""

    device_id: DeviceId
    location: str


ControlAction = SendMulticast | ProbeLocation


@dataclass(slots=True)
class _Candidate:
    location: str
    expires_at: float


@dataclass(slots=True)
class _Known:
    """Registry entry: the record, and the unproven addresses heard beside it."""

    record: DeviceRecord
    candidates: dict[tuple[str, str], _Candidate] = field(default_factory=dict)
    probed_at: float | None = None  # last probe of the record's LOCATION asked for
    probing: bool = False


def _location_host(location: str) -> str:
    """The host of a LOCATION the decoder accepted (``http(s)://host[:port]/...``), without
    brackets or zone. String work only: no parser cache whose hit rate depends on how many
    devices are known."""
    netloc = location.partition("://")[2].partition("/")[0].rpartition("@")[2]
    if netloc.startswith("["):
        return netloc[1:netloc.find("]")].partition("%")[0]
    return netloc.partition(":")[0]


def _host_matches(location: str, source_ip: str) -> bool:
    host, source = _location_host(location), source_ip.partition("%")[0]
    if host == source:
        return True
    try:  # the same address written another way (IPv6 case or zeros)
        return ipaddress.ip_address(host) == ipaddress.ip_address(source)
    except ValueError:
        return False


class ControlPointDiscovery:
    """Search and the registry of remote devices, with caps against floods.

    The registry never lets an unauthenticated datagram re-point a known device
    (specs/isdp.md §11a): an announcement of a known device id from another address on the
    same interface is kept as a *candidate* beside the device's own address; the entry
    moves there when a probe of the device's own LOCATION fails (``ProbeLocation`` →
    ``probe_result``) or when a secure pipe authenticated the device there (``proven``).
    """

    def __init__(
        self,
        device_id: DeviceId,
        *,
        port: int = IGRS_PORT,
        max_devices: int = REGISTRY_MAX_DEVICES,
        rng: random.Random | None = None,
    ) -> None:
        self.device_id = device_id
        self.port = port
        self.max_devices = max_devices
        self.rng = rng or random.Random()
        self.drops = DropCounter()
        self._interfaces: dict[str, Interface] = {}
        self._devices: dict[DeviceId, _Known] = {}
        self._services: dict[tuple[DeviceId, int], ServiceRecord] = {}
        self._services_of: dict[DeviceId, set[int]] = {}
        self._expiry: ExpiryQueue[DeviceId] = ExpiryQueue()
        self._service_expiry: ExpiryQueue[tuple[DeviceId, int]] = ExpiryQueue()
        self._repeats = SearchRepeats()
        self._probes: Timers[ProbeLocation] = Timers()
        self._sources = KeyedRateLimiter(SOURCE_RATE, SOURCE_BURST, MAX_TRACKED_SOURCES)

    def set_interfaces(self, interfaces: list[Interface]) -> None:
        self._interfaces = {i.name: i for i in interfaces}

    @property
    def devices(self) -> list[DeviceRecord]:
        return [k.record for k in self._devices.values()]

    def get(self, device_id: DeviceId) -> DeviceRecord | None:
        known = self._devices.get(device_id)
        return known.record if known is not None else None

    @property
    def services(self) -> list[ServiceRecord]:
        return list(self._services.values())

    def candidate_urls(self, device_id: DeviceId) -> list[tuple[str, str]]:
        """(address, reachable LOCATION) of each candidate address of a known device."""
        known = self._devices.get(device_id)
        if known is None:
            return []
        return [(addr, _zoned(c.location, addr)) for (_, addr), c in sorted(known.candidates.items())]

    def search(self, now: float, target: SearchTarget | None = None, mx: int = DEFAULT_MX,
               retries: int = SEARCH_RETRIES) -> list[SendMulticast]:
        """M-SEARCH on every interface now, and ``retries - 1`` more copies spread over MX.

        A service-type target sends SearchServiceRequest (10.2), any other SearchDeviceRequest.
        """
        target = target or SearchTarget.all()
        mx = min(max(mx, 1), MAX_MX)
        req: isdp.IsdpMessage = (isdp.SearchServiceRequest(target, mx, self.device_id)
                                 if target.kind == "service_type"
                                 else isdp.SearchDeviceRequest(target, mx, self.device_id))
        sends = tuple(SendMulticast(name, isdp.encode(req, host=group_host(iface, self.port)))
                      for name, iface in self._interfaces.items())
        self._repeats.schedule(sends, mx, retries, now)
        return list(sends)

    def next_deadline(self) -> float | None:
        return earliest(self._repeats.next_deadline(), self._probes.next_deadline(),
                        self._expiry.next_deadline(), self._service_expiry.next_deadline())

    def poll(self, now: float) -> tuple[list[ControlAction], list[DiscoveryEvent]]:
        actions: list[ControlAction] = [*self._repeats.due(now), *self._probes.due(now)]
        events: list[DiscoveryEvent] = []
        for device_id in self._expiry.expired(now):
            known = self._devices[device_id]
            if known.record.expires_at <= now:
                self._remove(device_id)
                events.append(DeviceGone(known.record, "expired"))
                continue
            previous = known.record
            known.candidates = {k: c for k, c in known.candidates.items() if c.expires_at > now}
            self._store(known, replace(previous, candidates=frozenset(known.candidates)))
            events.append(DeviceUpdated(known.record, previous))
        for key in self._service_expiry.expired(now):
            self._drop_service(key)
        return actions, events

    def on_datagram(self, data: bytes, source: Address, interface: str,
                    now: float) -> list[DiscoveryEvent]:
        # Keyed by (address, port): one host may legitimately run many devices.
        if not self._sources.allow(source, now):
            self.drops.drop("source_rate")
            return []
        try:
            msg = isdp.decode(data)
        except ProtocolError:
            self.drops.drop("malformed")
            return []
        if isinstance(msg, isdp.DeviceOfflineAdvertisement):
            known = self._devices.get(msg.device_id)
            if known is None or not any(addr == source[0] for _, addr in known.record.seen_on):
                # Only an address the device proved to be its own may say goodbye for it.
                if known is not None:
                    self.drops.drop("byebye_mismatch")
                return []
            self._remove(msg.device_id)
            return [DeviceGone(known.record, "byebye")]
        if isinstance(msg, isdp.ServiceOnlineAdvertisement | isdp.SearchServiceResponse
                      | isdp.ServiceOfflineAdvertisement):
            self._on_service(msg, source[0], now)
            return []
        if isinstance(msg, isdp.DeviceOnlineAdvertisement | isdp.SearchDeviceResponse):
            if msg.device_id == self.device_id:
                return []
            if isinstance(msg, isdp.SearchDeviceResponse) and msg.requester not in (None, self.device_id):
                self.drops.drop("not_for_us")
                return []
            if not _host_matches(msg.location, source[0]):
                self.drops.drop("location_mismatch")
                return []
            update = isinstance(msg, isdp.DeviceOnlineAdvertisement) and msg.update
            return self._seen(msg.device_id, msg.device_type, msg.name, msg.location, msg.max_age,
                              source[0], interface, now, update=update)
        return []  # searches from other control points do not concern us

    def _seen(self, device_id: DeviceId, device_type: DeviceType, name: str, location: str,
              max_age: int, address: str, interface: str, now: float, *,
              update: bool = False) -> list[DiscoveryEvent]:
        known = self._devices.get(device_id)
        if known is None:
            if len(self._devices) >= self.max_devices:
                self.drops.drop("registry_full")
                return []
            record = DeviceRecord(device_id, device_type, name, location, address, max_age, now, now,
                                  frozenset({(interface, address)}))
            known = self._devices[device_id] = _Known(record)
            self._expiry.set(device_id, record.expires_at)
            return [DeviceAppeared(record)]
        previous = known.record
        own = {a for i, a in previous.seen_on if i == interface}
        if own and address not in own:
            # Another address on an interface where the device has its own: not a move.
            return self._candidate(known, interface, address, location, max_age, now)
        # The device's own path on this interface, or its first sighting on another interface
        # (a two-homed device). The primary path stays the first one seen, except that an
        # IPv4 path is preferred to IPv6 (no zone needed to reach it).
        primary_iface = next((i for i, a in previous.seen_on if a == previous.address), interface)
        if ":" in previous.address and ":" not in address:
            primary_iface = interface
        is_primary = interface == primary_iface
        path = (interface, address)
        record = DeviceRecord(
            device_id, device_type, name or previous.name, location if is_primary else previous.location,
            address if is_primary else previous.address, max_age, previous.first_seen, now,
            previous.seen_on if path in previous.seen_on else previous.seen_on | {path}, previous.candidates,
        )
        self._store(known, record)
        visible = ("device_type", "name", "location", "address", "seen_on")
        if update or any(getattr(previous, f) != getattr(record, f) for f in visible):
            return [DeviceUpdated(record, previous)]
        return []

    def _candidate(self, known: _Known, interface: str, address: str, location: str, max_age: int,
                   now: float) -> list[DiscoveryEvent]:
        key = (interface, address)
        if key not in known.candidates and len(known.candidates) >= REPOINT_MAX_CANDIDATES:
            self.drops.drop("candidates_full")
            return []
        self.drops.drop("unproven_address")  # counted: this datagram did not refresh the device
        new = key not in known.candidates
        known.candidates[key] = _Candidate(location, now + max_age)
        self._request_probe(known, now)
        previous = known.record
        self._store(known, replace(previous, candidates=frozenset(known.candidates)) if new else previous)
        return [DeviceUpdated(known.record, previous)] if new else []

    def _request_probe(self, known: _Known, now: float) -> None:
        if known.probing or (known.probed_at is not None and now - known.probed_at < REPOINT_PROBE_INTERVAL):
            return
        known.probing, known.probed_at = True, now
        self._probes.add(now, ProbeLocation(known.record.device_id, known.record.url))

    def probe_result(self, device_id: DeviceId, location: str, answered: bool,
                     now: float) -> list[DiscoveryEvent]:
        """The outcome of a ``ProbeLocation``: did ``device_id`` answer at its own LOCATION?
        If not, the entry moves to its most recently heard candidate address."""
        known = self._devices.get(device_id)
        if known is None:
            return []
        known.probing = False
        if answered or known.record.url != location or not known.candidates:
            return []
        (iface, address), cand = max(known.candidates.items(), key=lambda kv: kv[1].expires_at)
        return self._promote(known, iface, address, cand, now)

    def proven(self, device_id: DeviceId, address: str, now: float) -> list[DiscoveryEvent]:
        """A secure pipe authenticated ``device_id`` at ``address``: if that is one of its
        candidate addresses, the entry moves there."""
        known = self._devices.get(device_id)
        if known is None:
            return []
        match = [(k, c) for k, c in known.candidates.items() if k[1] == address]
        if not match:
            return []
        (iface, addr), cand = match[0]
        return self._promote(known, iface, addr, cand, now)

    def _promote(self, known: _Known, interface: str, address: str, cand: _Candidate,
                 now: float) -> list[DiscoveryEvent]:
        previous = known.record
        del known.candidates[(interface, address)]
        replaced = {(i, a) for i, a in previous.seen_on if i == interface}
        seen_on = (previous.seen_on - replaced) | {(interface, address)}
        was_primary = (interface, previous.address) in replaced or not (previous.seen_on - replaced)
        record = replace(
            previous, location=cand.location if was_primary else previous.location,
            address=address if was_primary else previous.address, last_seen=now,
            max_age=max(1, int(cand.expires_at - now)) if cand.expires_at > now else previous.max_age,
            seen_on=seen_on, candidates=frozenset(known.candidates),
        )
        known.probed_at, known.probing = None, False
        self._store(known, record)
        return [DeviceUpdated(record, previous)]

    def _store(self, known: _Known, record: DeviceRecord) -> None:
        known.record = record
        due = min((c.expires_at for c in known.candidates.values()), default=record.expires_at)
        self._expiry.set(record.device_id, min(due, record.expires_at))

    def _remove(self, device_id: DeviceId) -> None:
        self._devices.pop(device_id, None)
        self._expiry.discard(device_id)
        for sid in self._services_of.pop(device_id, set()):
            self._services.pop((device_id, sid), None)
            self._service_expiry.discard((device_id, sid))

    def _drop_service(self, key: tuple[DeviceId, int]) -> None:
        self._services.pop(key, None)
        self._service_expiry.discard(key)
        sids = self._services_of.get(key[0])
        if sids is not None:
            sids.discard(key[1])
            if not sids:
                del self._services_of[key[0]]

    def _on_service(self, msg: isdp.ServiceOnlineAdvertisement | isdp.SearchServiceResponse
                    | isdp.ServiceOfflineAdvertisement, address: str, now: float) -> None:
        key = (msg.device_id, msg.service_id)
        if isinstance(msg, isdp.ServiceOfflineAdvertisement):
            known = self._services.get(key)
            if known is not None and known.address == address:
                self._drop_service(key)
            return
        if msg.device_id == self.device_id:
            return
        if isinstance(msg, isdp.SearchServiceResponse) and msg.requester not in (None, self.device_id):
            self.drops.drop("not_for_us")
            return
        if not _host_matches(msg.location, address):
            self.drops.drop("location_mismatch")
            return
        device = self._devices.get(msg.device_id)
        if device is not None and not any(a == address for _, a in device.record.seen_on):
            self.drops.drop("unproven_address")  # a known device's services come from its own address
            return
        if key not in self._services and len(self._services) >= self.max_devices:
            self.drops.drop("registry_full")
            return
        record = ServiceRecord(msg.device_id, msg.service_type, msg.service_id, msg.name, msg.location,
                               address, msg.max_age, now)
        self._services[key] = record
        self._services_of.setdefault(msg.device_id, set()).add(msg.service_id)
        self._service_expiry.set(key, record.expires_at)

    def forget(self, device_id: DeviceId) -> DeviceRecord | None:
        known = self._devices.get(device_id)
        self._remove(device_id)
        return known.record if known is not None else None

    def offer(self, record: DeviceRecord, now: float) -> list[DiscoveryEvent]:
        """A sighting from another discovery source (e.g. DNS-SD), merged like an ISDP one (an
        address not yet proven becomes a candidate, isdp.md §11a)."""
        interface = record.interfaces[0] if record.interfaces else ""
        return self._seen(record.device_id, record.device_type, record.name, record.location,
                          record.max_age, record.address, interface, now)

    def withdraw(self, device_id: DeviceId, address: str, reason: str = "byebye") -> list[DiscoveryEvent]:
        """Another source says the device at ``address`` is gone: forgotten only if it was seen
        there (only an address the device proved to be its own may say goodbye for it)."""
        known = self._devices.get(device_id)
        if known is None or not any(a == address for _, a in known.record.seen_on):
            return []
        self._remove(device_id)
        return [DeviceGone(known.record, reason)]
