"""Device discovery state (clauses 9.1 and 9.6), sans-IO.

``DeviceDiscovery`` is a device's side: the advertiser and the search responder.
``ControlPointDiscovery`` is a control point's side: searching and the registry of remote
devices. Both take datagrams and ``now`` and return actions (datagrams to send) and events;
timers are exposed as ``next_deadline()`` + ``poll(now)``. Rules: specs/isdp.md.
"""

from __future__ import annotations

import heapq
import ipaddress
import itertools
import random
from collections import Counter
from dataclasses import dataclass, field, replace
from urllib.parse import urlsplit

from igrs.constants import (
    COPY_SPACING,
    DEFAULT_MAX_AGE,
    DEFAULT_MX,
    IGRS_PORT,
    IPV4_GROUP,
    IPV4_GROUP_ALT,
    IPV6_GROUP,
    MAX_MX,
    MAX_PENDING_RESPONSES,
    MAX_RESPONSE_BYTES_PER_REQUEST,
    MAX_TRACKED_SOURCES,
    REANNOUNCE_FRACTION,
    REANNOUNCE_JITTER,
    REGISTRY_MAX_DEVICES,
    RESPONDER_BURST,
    RESPONDER_RATE,
    SEARCH_RETRIES,
    SOURCE_BURST,
    SOURCE_RATE,
    STARTUP_COPIES,
)
from igrs.core.ratelimit import KeyedRateLimiter
from igrs.errors import ProtocolError
from igrs.wire import isdp
from igrs.wire.ids import DeviceId, DeviceType, ServiceType
from igrs.wire.isdp import SearchTarget

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = tuple[str, int]


# --- what the core needs to know of a local interface ------------------------------------------
@dataclass(frozen=True, slots=True)
class Interface:
    name: str
    address: str
    network: IPNetwork
    scope_id: int = 0
    device: str = ""  # the OS interface name, when ``name`` is made unique from it

    @property
    def os_name(self) -> str:
        return self.device or self.name

    @property
    def family(self) -> int:
        return self.network.version

    @classmethod
    def from_cidr(cls, name: str, cidr: str, scope_id: int = 0) -> Interface:
        iface = ipaddress.ip_interface(cidr)
        return cls(name, str(iface.ip), iface.network, scope_id)


def group_host(iface: Interface, port: int) -> str:
    return f"{IPV4_GROUP}:{port}" if iface.family == 4 else f"[{IPV6_GROUP}]:{port}"


# --- actions -------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class SendMulticast:
    interface: str
    payload: bytes
    group: str = ""  # "" = the interface's own group (IPV4_GROUP / IPV6_GROUP); else this IPv4 group


@dataclass(frozen=True, slots=True)
class SendUnicast:
    interface: str
    address: Address
    payload: bytes


Action = SendMulticast | SendUnicast


class _Timers:
    """A heap of (due, seq, item)."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, object]] = []
        self._seq = itertools.count()

    def add(self, due: float, item: object) -> None:
        heapq.heappush(self._heap, (due, next(self._seq), item))

    def due(self, now: float) -> list[object]:
        out = []
        while self._heap and self._heap[0][0] <= now:
            out.append(heapq.heappop(self._heap)[2])
        return out

    def next_deadline(self) -> float | None:
        return self._heap[0][0] if self._heap else None

    def clear(self) -> None:
        self._heap.clear()

    def __len__(self) -> int:
        return len(self._heap)


@dataclass(slots=True)
class DropCounter:
    """Why datagrams were dropped (malformed, rate-limited, ...): for logs, tests, stats."""

    reasons: Counter[str] = field(default_factory=Counter)

    def drop(self, reason: str) -> None:
        self.reasons[reason] += 1

    @property
    def total(self) -> int:
        return sum(self.reasons.values())


# --- the device side -----------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class _Announce:
    interface: str
    byebye: bool = False


@dataclass(frozen=True, slots=True)
class _Reannounce:
    generation: int


@dataclass(frozen=True, slots=True)
class _Respond:
    key: tuple[str, int, str]  # (requester ip, port, ST) for de-duplication
    actions: tuple[SendUnicast, ...]


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
        self.answered = 0
        self.running = False
        self._services: dict[int, tuple[ServiceType, str]] = {}  # service id -> (type, name)
        self._interfaces: dict[str, Interface] = {}
        self._locations: dict[str, str] = {}
        self._timers = _Timers()
        self._generation = 0
        self._pending: set[tuple[str, int, str]] = set()
        self._requesters = KeyedRateLimiter(RESPONDER_RATE, RESPONDER_BURST, MAX_TRACKED_SOURCES)

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
        self._schedule_reannounce(now)
        return actions

    def stop(self, now: float) -> list[Action]:
        """Byebye on every interface now; the extra copies become due COPY_SPACING later."""
        self.running = False
        self._timers.clear()
        self._pending.clear()
        actions: list[Action] = [a for i in self._interfaces.values() for a in self._byebye(i)]
        for copy in range(1, STARTUP_COPIES):
            for name in self._interfaces:
                self._timers.add(now + copy * COPY_SPACING, _Announce(name, byebye=True))
        return actions

    def _announce_burst(self, name: str, now: float) -> list[Action]:
        for copy in range(1, STARTUP_COPIES):
            self._timers.add(now + copy * COPY_SPACING, _Announce(name))
        return list(self._alive(self._interfaces[name]))

    def _schedule_reannounce(self, now: float) -> None:
        self._generation += 1
        delay = self.max_age * REANNOUNCE_FRACTION - self.rng.uniform(0, REANNOUNCE_JITTER * self.max_age)
        self._timers.add(now + max(delay, 0.5), _Reannounce(self._generation))

    def _announce(self, iface: Interface, msg: isdp.IsdpMessage) -> list[SendMulticast]:
        """``msg`` to the group of ``iface``; with ``send_on_alt_group`` (IPv4) to 239.255.255.250
        as well, its HOST naming that group."""
        out = [SendMulticast(iface.name, isdp.encode(msg, host=group_host(iface, self.port)))]
        if self.send_on_alt_group and iface.family == 4:
            out.append(SendMulticast(iface.name, isdp.encode(msg, host=f"{IPV4_GROUP_ALT}:{self.port}"),
                                     IPV4_GROUP_ALT))
        return out

    def _alive(self, iface: Interface) -> list[SendMulticast]:
        """The device's advertisement on ``iface``, then one per shared service."""
        msg = isdp.DeviceOnlineAdvertisement(
            self.device_id, self.device_type, self._locations[iface.name], self.max_age, self.name
        )
        return [*self._announce(iface, msg),
                *(a for sid, (st, name) in self._services.items()
                  for a in self._service_alive(iface, sid, st, name))]

    def _byebye(self, iface: Interface) -> list[SendMulticast]:
        msg = isdp.DeviceOfflineAdvertisement(self.device_id, self.device_type)
        return [*(a for sid, (st, _) in self._services.items() for a in self._service_byebye(iface, sid, st)),
                *self._announce(iface, msg)]

    # timers
    def next_deadline(self) -> float | None:
        return self._timers.next_deadline()

    def poll(self, now: float) -> list[Action]:
        actions: list[Action] = []
        for item in self._timers.due(now):
            if isinstance(item, _Announce):
                iface = self._interfaces.get(item.interface)
                if iface is None:
                    continue
                if item.byebye:
                    actions += self._byebye(iface)
                elif self.running:
                    actions += self._alive(iface)
            elif isinstance(item, _Reannounce):
                if self.running and item.generation == self._generation:
                    actions += [a for i in self._interfaces.values() for a in self._alive(i)]
                    self._schedule_reannounce(now)
            elif isinstance(item, _Respond):
                self._pending.discard(item.key)
                if self.running:
                    self.answered += 1
                    actions.extend(item.actions)
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
            self.on_search(msg, source, interface, now)
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
            wanted = target.service_type
            assert wanted is not None
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
                  interface: str, now: float) -> None:
        """Schedule the answer to a search (device search 9.6, or service search 10.2)."""
        if isinstance(req, isdp.SearchServiceRequest):
            if req.source_device_id == self.device_id:
                return
            answers: list[isdp.IsdpMessage] = [
                isdp.SearchServiceResponse(self.device_id, self.device_type, stype, sid,
                                           self._locations.get(interface, ""), self.max_age, name,
                                           req.source_device_id)
                for sid, (stype, name) in sorted(self._services.items())
                if self._service_matches(stype, req.target)
            ]
        else:
            if req.source_device_id == self.device_id or not self.matches(req.target):
                return
            answers = [isdp.SearchDeviceResponse(
                self.device_id, self.device_type, self._locations.get(interface, ""), self.max_age,
                req.target, self.name, req.source_device_id)]
        if answers:
            self._respond(answers, str(req.target), req.mx, source, interface, now)

    def _respond(self, answers: list[isdp.IsdpMessage], target: str, mx: int, source: Address,
                 interface: str, now: float) -> None:
        iface = self._interfaces.get(interface)
        if iface is None:
            self.drops.drop("unknown_interface")
            return
        try:
            src_ip = ipaddress.ip_address(source[0].partition("%")[0])
        except ValueError:
            self.drops.drop("bad_source")
            return
        if src_ip not in iface.network:
            # Anti-reflection: a search from outside the link is spoofed or misrouted.
            self.drops.drop("off_subnet")
            return
        key = (str(src_ip), source[1], target)
        if key in self._pending:
            return  # an answer to this requester and target is already on its way
        if len(self._pending) >= MAX_PENDING_RESPONSES:
            self.drops.drop("responder_busy")
            return
        if not self._requesters.allow(str(src_ip), now):
            self.drops.drop("requester_rate")
            return
        payloads, budget = [], MAX_RESPONSE_BYTES_PER_REQUEST
        for answer in answers:  # no amplification: the bytes answered to one search are capped
            payload = isdp.encode(answer, host="")
            if len(payload) > budget:
                self.drops.drop("response_too_large")
                break
            budget -= len(payload)
            payloads.append(SendUnicast(interface, source, payload))
        if not payloads:
            return
        self._pending.add(key)
        delay = self.rng.uniform(0, min(max(mx, 0), MAX_MX))
        self._timers.add(now + delay, _Respond(key, tuple(payloads)))


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
    seen_on: frozenset[tuple[str, str]]  # (local interface, remote address)

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
        addr, _, zone = self.address.partition("%")
        if not zone or f"[{addr}]" not in self.location:
            return self.location
        return self.location.replace(f"[{addr}]", f"[{addr}%{zone}]", 1)


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
class _SearchCopy:
    payloads: tuple[tuple[str, bytes], ...]


def _host_matches(location: str, source_ip: str) -> bool:
    try:
        host = urlsplit(location).hostname or ""
        return ipaddress.ip_address(host.partition("%")[0]) == ipaddress.ip_address(
            source_ip.partition("%")[0])
    except ValueError:
        return False


class ControlPointDiscovery:
    """Search and the registry of remote devices, with caps against floods."""

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
        self._devices: dict[DeviceId, DeviceRecord] = {}
        self._services: dict[tuple[DeviceId, int], ServiceRecord] = {}
        self._timers = _Timers()
        self._sources = KeyedRateLimiter(SOURCE_RATE, SOURCE_BURST, MAX_TRACKED_SOURCES)

    def set_interfaces(self, interfaces: list[Interface]) -> None:
        self._interfaces = {i.name: i for i in interfaces}

    @property
    def devices(self) -> list[DeviceRecord]:
        return list(self._devices.values())

    def get(self, device_id: DeviceId) -> DeviceRecord | None:
        return self._devices.get(device_id)

    @property
    def services(self) -> list[ServiceRecord]:
        return list(self._services.values())

    def search(self, now: float, target: SearchTarget | None = None, mx: int = DEFAULT_MX,
               retries: int = SEARCH_RETRIES) -> list[Action]:
        """M-SEARCH on every interface now, and ``retries - 1`` more copies spread over MX.

        A service-type target sends SearchServiceRequest (10.2), any other SearchDeviceRequest.
        """
        target = target or SearchTarget.all()
        mx = min(max(mx, 1), MAX_MX)
        req: isdp.IsdpMessage = (isdp.SearchServiceRequest(target, mx, self.device_id)
                                 if target.kind == "service_type"
                                 else isdp.SearchDeviceRequest(target, mx, self.device_id))
        payloads = tuple(
            (name, isdp.encode(req, host=group_host(iface, self.port)))
            for name, iface in self._interfaces.items()
        )
        spacing = min(0.25, mx / max(retries, 1) / 2)
        for copy in range(1, retries):
            self._timers.add(now + copy * spacing, _SearchCopy(payloads))
        return [SendMulticast(name, payload) for name, payload in payloads]

    def next_deadline(self) -> float | None:
        deadlines = [d for d in (self._timers.next_deadline(), self._next_expiry()) if d is not None]
        return min(deadlines) if deadlines else None

    def _next_expiry(self) -> float | None:
        records: list[DeviceRecord | ServiceRecord] = [*self._devices.values(), *self._services.values()]
        return min((r.expires_at for r in records), default=None)

    def poll(self, now: float) -> tuple[list[Action], list[DiscoveryEvent]]:
        actions: list[Action] = []
        for item in self._timers.due(now):
            if isinstance(item, _SearchCopy):
                actions += [SendMulticast(name, p) for name, p in item.payloads]
        events: list[DiscoveryEvent] = []
        for device_id, record in list(self._devices.items()):
            if record.expires_at <= now:
                del self._devices[device_id]
                events.append(DeviceGone(record, "expired"))
        for key, service in list(self._services.items()):
            if service.expires_at <= now:
                del self._services[key]
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
            record = self._devices.get(msg.device_id)
            if record is None or not any(addr == source[0] for _, addr in record.seen_on):
                # Only the address a device was seen at may say goodbye for it.
                return []
            del self._devices[msg.device_id]
            for key in [k for k in self._services if k[0] == msg.device_id]:
                del self._services[key]
            return [DeviceGone(record, "byebye")]
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
            return self._seen(msg.device_id, msg.device_type, msg.name, msg.location, msg.max_age,
                              source[0], interface, now)
        return []  # searches from other control points do not concern us

    def _seen(self, device_id: DeviceId, device_type: DeviceType, name: str, location: str,
              max_age: int, address: str, interface: str, now: float) -> list[DiscoveryEvent]:
        previous = self._devices.get(device_id)
        if previous is None:
            if len(self._devices) >= self.max_devices:
                self.drops.drop("registry_full")
                return []
            record = DeviceRecord(device_id, device_type, name, location, address, max_age, now, now,
                                  frozenset({(interface, address)}))
            self._devices[device_id] = record
            return [DeviceAppeared(record)]
        # The primary address is the one first seen; another interface's sighting only adds
        # to ``seen_on`` (no flapping between a two-homed device's addresses). A new address
        # on the primary interface (the device moved) replaces it.
        primary_iface = next((i for i, a in previous.seen_on if a == previous.address), interface)
        if ":" in previous.address and ":" not in address:
            primary_iface = interface  # prefer an IPv4 address: no zone needed to reach it
        seen_on = previous.seen_on | {(interface, address)}
        if interface == primary_iface and address != previous.address:
            seen_on = frozenset(p for p in seen_on if p != (interface, previous.address))
        is_primary = interface == primary_iface
        record = replace(
            previous, device_type=device_type, name=name or previous.name,
            location=location if is_primary else previous.location,
            address=address if is_primary else previous.address,
            max_age=max_age, last_seen=now, seen_on=seen_on,
        )
        self._devices[device_id] = record
        visible = ("device_type", "name", "location", "address", "seen_on")
        if any(getattr(previous, f) != getattr(record, f) for f in visible):
            return [DeviceUpdated(record, previous)]
        return []

    def _on_service(self, msg: isdp.ServiceOnlineAdvertisement | isdp.SearchServiceResponse
                    | isdp.ServiceOfflineAdvertisement, address: str, now: float) -> None:
        key = (msg.device_id, msg.service_id)
        if isinstance(msg, isdp.ServiceOfflineAdvertisement):
            known = self._services.get(key)
            if known is not None and known.address == address:
                del self._services[key]
            return
        if msg.device_id == self.device_id:
            return
        if isinstance(msg, isdp.SearchServiceResponse) and msg.requester not in (None, self.device_id):
            self.drops.drop("not_for_us")
            return
        if not _host_matches(msg.location, address):
            self.drops.drop("location_mismatch")
            return
        if key not in self._services and len(self._services) >= self.max_devices:
            self.drops.drop("registry_full")
            return
        self._services[key] = ServiceRecord(msg.device_id, msg.service_type, msg.service_id, msg.name,
                                            msg.location, address, msg.max_age, now)

    def forget(self, device_id: DeviceId) -> DeviceRecord | None:
        return self._devices.pop(device_id, None)

    def offer(self, record: DeviceRecord, now: float) -> list[DiscoveryEvent]:
        """A sighting from another discovery source (e.g. DNS-SD), merged like an ISDP one."""
        interface = record.interfaces[0] if record.interfaces else ""
        return self._seen(record.device_id, record.device_type, record.name, record.location,
                          record.max_age, record.address, interface, now)

    def withdraw(self, device_id: DeviceId, address: str, reason: str = "byebye") -> list[DiscoveryEvent]:
        """Another source says the device at ``address`` is gone: forgotten only if it was seen
        there (only the address a device was seen at may say goodbye for it)."""
        known = self._devices.get(device_id)
        if known is None or not any(a == address for _, a in known.seen_on):
            return []
        del self._devices[device_id]
        return [DeviceGone(known, reason)]
