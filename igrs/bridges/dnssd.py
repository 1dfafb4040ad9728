"""IGRS over mDNS/DNS-SD (RFC 6762/6763): devices announce ``_igrs._tcp.local.`` and control
points find them that way where ISDP multicast is filtered. Rules: specs/dnssd.md.

``zeroconf`` is an optional dependency (``pip install igrs[dnssd]``), imported on first use.

* ``await attach_dnssd(device)`` -- the device also announces itself as ``_igrs._tcp``
  (a ``DnsSdAdvertiser``, plugged in as a device extension: registered when the device
  starts, re-registered when its addresses change, unregistered before its byebye).
* ``await attach_dnssd(control_point)`` -- the control point also finds devices over mDNS (a
  ``DnsSdFeed``, plugged in as a discovery source): ``find``/``describe``/``pair``/``session``
  work on them as on ISDP devices.
* ``DnsSdBrowser(interfaces)`` -- browses, resolves and strictly validates services, keeps
  ``DeviceRecord`` snapshots and reports ``DeviceAppeared/Updated/Gone`` (a callback and
  ``events()``); ``await browse_dnssd(interfaces, timeout)`` is the one-shot search.

The hooks are the device layer's public ones (igrs.node.extensions); nothing of igrs.node
imports this module.

zeroconf only ever gets an explicit list of the chosen interfaces' addresses, never
``InterfaceChoice.All``: on ``lo`` that is ``["127.0.0.1"]`` (TESTBED.md hard rule 1).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import json
import logging
import signal
import socket
import sys
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, overload

from igrs.constants import DESCRIPTION_PATH, IGRS_PATH, IGRS_VERSION, MAX_NAME_LENGTH
from igrs.core.discovery import (
    DeviceAppeared,
    DeviceGone,
    DeviceRecord,
    DeviceUpdated,
    DiscoveryEvent,
    DropCounter,
    Interface,
)
from igrs.errors import IGRSError, ProtocolError
from igrs.net.fanout import EventReader, FanOut
from igrs.wire.ids import DeviceId, DeviceType, check_igrs_version, check_name
from igrs.wire.isdp import SearchTarget

if TYPE_CHECKING:
    from zeroconf import ServiceInfo, ServiceStateChange, Zeroconf
    from zeroconf.asyncio import AsyncServiceBrowser, AsyncZeroconf

    from igrs.node.control import ControlPoint
    from igrs.node.device import Device

log = logging.getLogger(__name__)

# --- protocol values (specs/dnssd.md) ------------------------------------------------------------
SERVICE_TYPE = "_igrs._tcp.local."  # public source: IANA service name "igrs"; DNS-SD use: project choice
HOST_PREFIX = "igrs-"  # project choice: SRV target igrs-<uuid>.local., unique per device
TXT_VERSION = "1"  # project choice: txtvers=1 (RFC 6763 §6.7)
TXT_KEYS = ("txtvers", "id", "type", "name", "version", "desc")
REQUIRED_KEYS = ("id", "type", "version")

# --- limits (project choice: anti-DoS caps, specs/dnssd.md) --------------------------------------
MAX_TXT_BYTES = 1300  # RFC 6763 §6.2: TXT rdata should fit one non-jumbo packet
MAX_TXT_ENTRIES = 32  # strings in one TXT record
MAX_TXT_STRING = 255  # bytes of one key=value string (the DNS length byte)
MAX_DESC_PATH = 256  # bytes of the desc value
MAX_LABEL_BYTES = 63  # an instance name is one DNS label (RFC 1035 §2.3.4)
LABEL_RESERVE = 4  # bytes kept free for zeroconf's "-N" rename on a name conflict
MAX_SERVICES = 1024  # instances a browser tracks at once
MAX_PENDING_RESOLVES = 64  # resolutions in flight at once
RESOLVE_TIMEOUT = 3.0  # s to resolve SRV/TXT/A of one instance
REGISTER_TIMEOUT = 10.0  # s for probing + announcing before start() fails
UNREGISTER_TIMEOUT = 5.0  # s for the goodbye packets at stop()
DNSSD_MAX_AGE = 120  # s: max-age of a DeviceRecord from mDNS (the SRV/A TTL, RFC 6762 §10)
REFRESH_INTERVAL = 30.0  # s between DnsSdFeed's refreshes of live records in a ControlPoint


class DnsSdUnavailable(IGRSError):
    """The optional ``zeroconf`` package is not installed."""


class DnsSdError(ProtocolError):
    """A DNS-SD service that does not follow specs/dnssd.md; ``reason`` is a short key."""

    def __init__(self, key: str, detail: str = "") -> None:
        super().__init__(f"{key}: {detail}" if detail else key)
        self.key = key


def _zeroconf() -> Any:
    try:
        import zeroconf
        import zeroconf.asyncio
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise DnsSdUnavailable(
            "DNS-SD needs the optional 'zeroconf' package: pip install 'igrs[dnssd]'") from exc
    return zeroconf


# --- interfaces -> what zeroconf binds --------------------------------------------------------------
def zeroconf_interfaces(interfaces: Sequence[Interface]) -> list[str | int]:
    """The explicit zeroconf ``interfaces`` list: IPv4 addresses, IPv6 interface indexes.

    Never empty and never ``InterfaceChoice``: multicast goes only where it was asked to.
    ``::1`` is left out (zeroconf cannot listen there)."""
    out: list[str | int] = []
    for iface in interfaces:
        if iface.family == 4:
            item: str | int = iface.address
        elif ipaddress.ip_address(iface.address).is_loopback:
            continue
        else:
            item = iface.scope_id or socket.if_nametoindex(iface.os_name)
        if item not in out:
            out.append(item)
    if not out:
        raise IGRSError("DNS-SD needs at least one IPv4 or IPv6 (non-loopback) interface")
    return out


# --- TXT -------------------------------------------------------------------------------------------
def _fit_utf8(text: str, limit: int) -> str:
    """``text`` cut at a character boundary so that its UTF-8 form has at most ``limit`` bytes."""
    data = text.encode()
    if len(data) <= limit:
        return text
    return data[:limit].decode(errors="ignore").rstrip()


def instance_label(name: str) -> str:
    """The DNS-SD instance name of a device: its friendly name, cut to fit one label."""
    label = _fit_utf8(name.replace(".", " ").strip(), MAX_LABEL_BYTES - LABEL_RESERVE)
    return label or "igrs device"


def txt_properties(device_id: DeviceId, device_type: DeviceType, name: str,
                   desc: str = DESCRIPTION_PATH) -> dict[str, str]:
    """The TXT record we emit, in this order (RFC 6763 §6.7: txtvers first)."""
    props = {
        "txtvers": TXT_VERSION,
        "id": str(device_id),
        "type": str(device_type),
        "name": _fit_utf8(check_name(name), MAX_TXT_STRING - len("name=")),
        "version": IGRS_VERSION,
        "desc": desc,
    }
    for key, value in props.items():
        assert len(key) + 1 + len(value.encode()) <= MAX_TXT_STRING, key
    return props


def parse_txt(raw: bytes) -> dict[str, str | None]:
    """Split TXT rdata into {lower-case key: value}; a key without ``=`` maps to None.

    RFC 6763 §6: strings are length-prefixed; an empty string is skipped; the first
    occurrence of a key wins. Oversized, truncated or non-ASCII keys raise DnsSdError."""
    if len(raw) > MAX_TXT_BYTES:
        raise DnsSdError("txt_too_long", f"{len(raw)} bytes")
    out: dict[str, str | None] = {}
    pos = entries = 0
    while pos < len(raw):
        length = raw[pos]
        chunk = raw[pos + 1:pos + 1 + length]
        if len(chunk) != length:
            raise DnsSdError("txt_truncated")
        pos += 1 + length
        if not chunk:
            continue
        entries += 1
        if entries > MAX_TXT_ENTRIES:
            raise DnsSdError("txt_too_many_entries")
        key_bytes, sep, value = chunk.partition(b"=")
        if not key_bytes or any(b < 0x20 or b > 0x7E for b in key_bytes):
            raise DnsSdError("txt_bad_key", repr(key_bytes[:20]))
        key = key_bytes.decode("ascii").lower()
        if key in out:
            continue
        if not sep:
            out[key] = None
            continue
        if key not in TXT_KEYS:
            out[key] = ""  # unknown keys (a later txtvers may add some): present, not decoded
            continue
        try:
            out[key] = value.decode("utf-8", errors="strict")
        except UnicodeDecodeError:
            raise DnsSdError("txt_encoding", key) from None
    return out


def _check_version(text: str) -> None:
    candidate = text if text.upper().startswith("IGRS/") else f"IGRS/{text}"
    try:
        check_igrs_version(candidate)
    except ProtocolError as exc:
        raise DnsSdError("bad_version", text[:20]) from exc


def _check_desc(path: str) -> str:
    if (not path.startswith("/") or len(path.encode()) > MAX_DESC_PATH or not path.isascii()
            or any(not 0x21 <= ord(c) <= 0x7E for c in path) or "/../" in f"{path}/"
            or any(c in path for c in "?#\\")):
        raise DnsSdError("bad_desc", path[:40])
    return path


@dataclass(frozen=True, slots=True)
class IgrsTxt:
    """The validated content of an ``_igrs._tcp`` TXT record."""

    device_id: DeviceId
    device_type: DeviceType
    name: str | None
    version: str
    desc: str


def validate_txt(raw: bytes) -> IgrsTxt:
    """specs/dnssd.md "TXT record": required id, type, version; optional name, desc, txtvers."""
    props = parse_txt(raw)
    for key in REQUIRED_KEYS:
        if not props.get(key):
            raise DnsSdError(f"missing_{key}")
    if "txtvers" in props and props["txtvers"] != TXT_VERSION:
        raise DnsSdError("bad_txtvers", str(props["txtvers"])[:10])
    id_text, type_text, version = props["id"], props["type"], props["version"]
    assert id_text is not None and type_text is not None and version is not None
    try:
        device_id = DeviceId.parse(id_text)
    except ProtocolError:
        raise DnsSdError("bad_id", id_text[:60]) from None
    try:
        device_type = DeviceType.parse(type_text)
    except ProtocolError:
        raise DnsSdError("bad_type", type_text[:60]) from None
    _check_version(version)
    name = props.get("name")
    if name is not None:
        try:
            check_name(name)
        except ValueError:
            raise DnsSdError("bad_name", name[:40]) from None
    desc = props.get("desc")
    return IgrsTxt(device_id, device_type, name, version, _check_desc(desc) if desc else DESCRIPTION_PATH)


# --- addresses -------------------------------------------------------------------------------------
def pick_address(addresses: Sequence[str], interfaces: Sequence[Interface]) -> tuple[str, str]:
    """(address, local interface name) to reach a service: on-link only, IPv4 first.

    mDNS is link-local (RFC 6762 §11), so an address outside every browsing interface's
    network -- a loopback address heard on a LAN, another subnet -- is refused: a peer must
    not point a control point at its own host or elsewhere."""
    best: tuple[int, str, str] | None = None
    for text in addresses:
        addr_text, _, zone = text.partition("%")
        try:
            addr = ipaddress.ip_address(addr_text)
        except ValueError:
            continue
        if addr.is_multicast or addr.is_unspecified:
            continue
        for iface in interfaces:
            if iface.family != addr.version or addr not in iface.network:
                continue
            if addr.version == 6 and addr.is_link_local:
                if zone and zone not in (str(iface.scope_id), iface.os_name):
                    continue
                rank, address = 2, f"{addr}%{iface.os_name}"
            else:
                rank, address = (0 if addr.version == 4 else 1), str(addr)
            if best is None or rank < best[0]:
                best = (rank, address, iface.name)
            break
    if best is None:
        raise DnsSdError("off_link_address", ", ".join(addresses)[:80])
    return best[1], best[2]


def location_for(address: str, port: int) -> str:
    addr = address.partition("%")[0]
    host = f"[{addr}]" if ":" in addr else addr
    return f"http://{host}:{port}{IGRS_PATH}"


def record_from_service(name: str, port: int | None, addresses: Sequence[str], txt: bytes,
                        interfaces: Sequence[Interface], now: float,
                        previous: DeviceRecord | None = None) -> DeviceRecord:
    """A ``DeviceRecord`` for a resolved ``_igrs._tcp`` instance, or DnsSdError."""
    info = validate_txt(txt)
    if port is None or not 0 < port < 65536:
        raise DnsSdError("bad_port", str(port))
    address, iface = pick_address(addresses, interfaces)
    label = name[: -len(SERVICE_TYPE) - 1] if name.endswith("." + SERVICE_TYPE) else name
    friendly = info.name
    if friendly is None:  # no name= key: the instance label stands in for it
        friendly = label.strip()[:MAX_NAME_LENGTH].strip()
        try:
            check_name(friendly)
        except ValueError:
            friendly = "igrs device"
    first = previous.first_seen if previous is not None and previous.device_id == info.device_id else now
    return DeviceRecord(info.device_id, info.device_type, friendly, location_for(address, port), address,
                        DNSSD_MAX_AGE, first, now, frozenset({(iface, address)}))


# --- the device side -------------------------------------------------------------------------------
class DnsSdAdvertiser:
    """Registers one started ``Device`` as ``<name>._igrs._tcp.local.`` on its interfaces; a
    device extension (start/update/stop, igrs.node.extensions): ``attach_dnssd(device)``.

    >>> adv = DnsSdAdvertiser(device); await adv.start(); ...; await adv.stop()

    ``zeroconf``: an ``AsyncZeroconf`` to share (several devices in one process); it is then
    neither created nor closed here, and must already be bound to the right interfaces."""

    def __init__(self, device: Device, *, zeroconf: AsyncZeroconf | None = None) -> None:
        _zeroconf()
        self.device = device
        self._shared = zeroconf
        self._aiozc: AsyncZeroconf | None = zeroconf
        self._info: ServiceInfo | None = None
        self._bound: list[str | int] = []
        self._lock = asyncio.Lock()

    @property
    def registered(self) -> bool:
        return self._info is not None

    @property
    def service_name(self) -> str | None:
        """The registered instance name (zeroconf may have renamed it on a conflict)."""
        return self._info.name if self._info is not None else None

    def _service_info(self) -> ServiceInfo:
        zc = _zeroconf()
        dev = self.device
        port = dev.http.port
        if not port:
            raise IGRSError("DNS-SD: start the device before advertising it")
        addresses = []
        for iface in dev.interfaces:
            addr = ipaddress.ip_address(iface.address)
            if addr.version == 6 and addr.is_loopback:
                continue
            if str(addr) not in addresses:
                addresses.append(str(addr))
        return zc.ServiceInfo(
            SERVICE_TYPE, f"{instance_label(dev.name)}.{SERVICE_TYPE}", port=port,
            properties=txt_properties(dev.device_id, dev.device_type, dev.name),
            server=f"{HOST_PREFIX}{dev.device_id.uuid}.local.", parsed_addresses=addresses,
        )

    async def start(self) -> None:
        async with self._lock:
            await self._register()

    async def _register(self) -> None:
        zc = _zeroconf()
        interfaces = zeroconf_interfaces(self.device.interfaces)
        info = self._service_info()
        if self._shared is None:
            self._aiozc = zc.asyncio.AsyncZeroconf(interfaces=interfaces)
            self._bound = interfaces
        assert self._aiozc is not None
        aiozc = self._aiozc

        async def register() -> None:  # probing (~1.5 s, RFC 6762 §8.1), then announcing
            await (await aiozc.async_register_service(info, allow_name_change=True))

        try:
            await asyncio.wait_for(register(), timeout=REGISTER_TIMEOUT)
        except BaseException:
            if self._shared is None:
                await self._aiozc.async_close()
                self._aiozc = None
            raise
        self._info = info
        log.info("DNS-SD: %s registered on %s port %d", info.name, info.parsed_addresses(), info.port)

    async def update(self) -> None:
        """Re-register after the device's interfaces or port changed (Device.update_interfaces)."""
        async with self._lock:
            if self._info is None:
                return
            new = self._service_info()
            same_bind = self._shared is not None or zeroconf_interfaces(self.device.interfaces) == self._bound
            if (same_bind and new.port == self._info.port
                    and sorted(new.parsed_addresses()) == sorted(self._info.parsed_addresses())):
                return
            await self._unregister()
            await self._register()

    async def stop(self) -> None:
        """Send the goodbye (TTL 0) and release the sockets."""
        async with self._lock:
            await self._unregister()

    async def _unregister(self) -> None:
        aiozc, info, self._info = self._aiozc, self._info, None
        if aiozc is None:
            return
        try:
            if info is not None:

                async def goodbye() -> None:
                    await (await aiozc.async_unregister_service(info))

                with contextlib.suppress(Exception):
                    await asyncio.wait_for(goodbye(), timeout=UNREGISTER_TIMEOUT)
        finally:
            if self._shared is None:
                self._aiozc = None
                await aiozc.async_close()

    async def __aenter__(self) -> DnsSdAdvertiser:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


# --- the control point side --------------------------------------------------------------------------
class DnsSdBrowser:
    """Browses ``_igrs._tcp.local.`` on the given interfaces; keeps validated DeviceRecords.

    Events (``DeviceAppeared``/``DeviceUpdated``/``DeviceGone``) go to ``on_event`` and to
    every ``events()`` reader. Invalid services are dropped and counted in ``drops``."""

    def __init__(self, interfaces: Sequence[Interface], *, max_services: int = MAX_SERVICES,
                 ignore: Collection[DeviceId] = (),
                 on_event: Callable[[DiscoveryEvent], None] | None = None,
                 resolve_timeout: float = RESOLVE_TIMEOUT) -> None:
        _zeroconf()
        self.interfaces = list(interfaces)
        self.max_services = max_services
        self.ignore = frozenset(ignore)
        self.on_event = on_event
        self.resolve_timeout = resolve_timeout
        self.drops = DropCounter()
        self._records: dict[str, DeviceRecord] = {}  # instance name (lower case) -> record
        self._pending: dict[str, asyncio.Task[None]] = {}
        self._events: FanOut[DiscoveryEvent] = FanOut()
        self._aiozc: AsyncZeroconf | None = None
        self._browser: AsyncServiceBrowser | None = None

    @property
    def devices(self) -> list[DeviceRecord]:
        return sorted(self._records.values(), key=lambda r: (r.name, str(r.device_id)))

    async def start(self) -> None:
        zc = _zeroconf()
        self._aiozc = zc.asyncio.AsyncZeroconf(interfaces=zeroconf_interfaces(self.interfaces))
        self._browser = zc.asyncio.AsyncServiceBrowser(self._aiozc.zeroconf, SERVICE_TYPE,
                                                       handlers=[self._on_change])

    async def stop(self) -> None:
        for task in self._pending.values():
            task.cancel()
        if self._pending:
            await asyncio.gather(*self._pending.values(), return_exceptions=True)
        self._pending.clear()
        if self._browser is not None:
            await self._browser.async_cancel()
            self._browser = None
        if self._aiozc is not None:
            await self._aiozc.async_close()
            self._aiozc = None
        self._events.close()

    async def __aenter__(self) -> DnsSdBrowser:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def events(self) -> EventReader[DiscoveryEvent]:
        """Events from the moment of this call (not of the first read) until the browser stops;
        a slow reader loses its oldest events (igrs.net.fanout, specs/events.md §9)."""
        return self._events.subscribe()

    @property
    def events_dropped(self) -> int:
        """Events slow ``events()`` readers lost (all readers together)."""
        return self._events.dropped

    def _publish(self, event: DiscoveryEvent) -> None:
        self._events.publish(event)
        if self.on_event is not None:
            try:
                self.on_event(event)
            except Exception:
                log.exception("DNS-SD event handler failed")

    # zeroconf calls this on its loop (the running one) with keyword arguments
    def _on_change(self, zeroconf: Zeroconf, service_type: str, name: str,
                   state_change: ServiceStateChange) -> None:
        key = name.lower()
        if state_change.name == "Removed":
            task = self._pending.pop(key, None)
            if task is not None:
                task.cancel()
            record = self._records.pop(key, None)
            if record is not None:
                self._publish(DeviceGone(record, "byebye"))
            return
        if key not in self._records and len(self._records) >= self.max_services:
            self.drops.drop("too_many_services")
            return
        old = self._pending.pop(key, None)
        if old is not None:
            old.cancel()
        elif len(self._pending) >= MAX_PENDING_RESOLVES:
            self.drops.drop("resolve_busy")
            return
        self._pending[key] = asyncio.get_running_loop().create_task(self._resolve(key, name))

    async def _resolve(self, key: str, name: str) -> None:
        zc = _zeroconf()
        try:
            if self._aiozc is None:
                return
            info = zc.asyncio.AsyncServiceInfo(SERVICE_TYPE, name)
            if not await info.async_request(self._aiozc.zeroconf, int(self.resolve_timeout * 1000)):
                self.drops.drop("unresolved")
                return
            now = asyncio.get_running_loop().time()
            try:
                record = record_from_service(name, info.port, info.parsed_scoped_addresses(),
                                             info.text or b"", self.interfaces, now, self._records.get(key))
            except DnsSdError as exc:
                self.drops.drop(exc.key)
                log.debug("DNS-SD: %s refused: %s", name, exc.reason)
                return
            self._accept(key, record)
        finally:
            if self._pending.get(key) is asyncio.current_task():
                del self._pending[key]

    def _accept(self, key: str, record: DeviceRecord) -> None:
        if record.device_id in self.ignore:
            return
        if any(r.device_id == record.device_id for k, r in self._records.items() if k != key):
            self.drops.drop("duplicate_id")  # the first instance claiming an id keeps it
            return
        if key not in self._records and len(self._records) >= self.max_services:
            self.drops.drop("too_many_services")
            return
        previous = self._records.get(key)
        if previous is not None and previous.device_id != record.device_id:
            self._records.pop(key)
            self._publish(DeviceGone(previous, "byebye"))
            previous = None
        self._records[key] = record
        if previous is None:
            self._publish(DeviceAppeared(record))
        elif any(getattr(previous, f) != getattr(record, f)
                 for f in ("device_type", "name", "location", "address", "seen_on")):
            self._publish(DeviceUpdated(record, previous))


async def browse_dnssd(interfaces: Sequence[Interface] | Sequence[str] | None,
                       timeout: float = 3.0, **kwargs: Any) -> list[DeviceRecord]:
    """One-shot DNS-SD search: the valid devices resolved within ``timeout`` seconds.

    ``interfaces``: Interfaces, or names/addresses for ``igrs.net.interfaces.resolve`` (None:
    its default, the LAN interfaces). Budget ~1-2 s more than an ISDP search: mDNS answers
    within 20-120 ms (RFC 6762 §6) but resolution is a second round trip."""
    async with DnsSdBrowser(_interfaces(interfaces), **kwargs) as browser:
        await asyncio.sleep(timeout)
        return browser.devices


def _interfaces(interfaces: Sequence[Interface] | Sequence[str] | None) -> list[Interface]:
    if interfaces and all(isinstance(i, Interface) for i in interfaces):
        return list(interfaces)  # type: ignore[arg-type]
    from igrs.net import interfaces as netifaces

    return netifaces.resolve([str(i) for i in interfaces] if interfaces else None)


# --- ControlPoint glue ---------------------------------------------------------------------------
class DnsSdFeed:
    """A control point's DNS-SD discovery source (igrs.node.extensions.DiscoverySource).

    Records found over mDNS are offered to the control point (``cp.offer``) and become
    ordinary registry entries, merged with ISDP sightings of the same device id, so
    ``find``/``describe``/``pair``/``session`` work unchanged. An mDNS goodbye withdraws the
    entry (``cp.withdraw``) only when it was seen at the same address. Live mDNS records are
    offered again every ``REFRESH_INTERVAL`` and at the start of every search, so that the
    registry's max-age does not expire them while mDNS keeps them."""

    def __init__(self, cp: ControlPoint, *, refresh_interval: float = REFRESH_INTERVAL) -> None:
        _zeroconf()
        self.cp = cp
        self.refresh_interval = refresh_interval
        self.browser: DnsSdBrowser | None = None  # made at start(): the control point's interfaces
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        cp = self.cp
        self.browser = DnsSdBrowser(cp.interfaces, max_services=cp.discovery.max_devices,
                                    ignore={cp.device_id}, on_event=self._on_event)
        await self.browser.start()
        self._task = asyncio.create_task(self._refresh_loop())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self.browser is not None:
            await self.browser.stop()

    def searching(self, target: SearchTarget) -> None:
        self.refresh()  # what mDNS holds counts as seen by this search

    def _on_event(self, event: DiscoveryEvent) -> None:
        if isinstance(event, DeviceGone):
            self.cp.withdraw(event.device.device_id, event.device.address, event.reason)
        else:
            self.cp.offer(event.device)

    def refresh(self) -> None:
        """Offer every device mDNS currently holds as seen now."""
        for record in self.browser.devices if self.browser is not None else ():
            self.cp.offer(record)

    async def _refresh_loop(self) -> None:
        while True:
            await asyncio.sleep(self.refresh_interval)
            self.refresh()


@overload
async def attach_dnssd(node: Device, *, zeroconf: AsyncZeroconf | None = None) -> DnsSdAdvertiser: ...


@overload
async def attach_dnssd(node: ControlPoint, *, refresh_interval: float = REFRESH_INTERVAL) -> DnsSdFeed: ...


async def attach_dnssd(node: Device | ControlPoint, **kwargs: Any) -> DnsSdAdvertiser | DnsSdFeed:
    """Plug DNS-SD into a node through its public extension hook: a ``Device`` also announces
    itself as ``_igrs._tcp`` (a DnsSdAdvertiser), a ``ControlPoint`` also finds devices over
    mDNS (a DnsSdFeed). Started now if the node runs, else when it starts; stopped with it.
    ``kwargs``: ``zeroconf`` (a shared AsyncZeroconf) for a device, ``refresh_interval`` for
    a control point."""
    from igrs.node.control import ControlPoint

    if isinstance(node, ControlPoint):
        feed = DnsSdFeed(node, **kwargs)
        await node.add_discovery_source(feed)
        return feed
    adv = DnsSdAdvertiser(node, **kwargs)
    await node.add_extension(adv)
    return adv


# --- python -m igrs.bridges.dnssd: a tool for tests and debugging -------------------------------------
async def _run_device(args: argparse.Namespace) -> int:
    from igrs.node.device import Device

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    device = Device(name=args.name, device_type=args.type, interfaces=args.interface, port=args.port,
                    http_port=args.http_port, state_dir=args.state_dir, watch_interfaces=False)
    adv = await attach_dnssd(device)
    async with device:
        print(json.dumps({"event": "ready", "id": str(device.device_id), "port": device.http.port,
                          "service": adv.service_name, "location": device.location}), flush=True)
        await stop.wait()
    print(json.dumps({"event": "stopped", "id": str(device.device_id)}), flush=True)
    return 0


async def _run_browse(args: argparse.Namespace) -> int:
    interfaces = _interfaces(args.interface)
    async with DnsSdBrowser(interfaces) as browser:
        await asyncio.sleep(args.timeout)
        found = browser.devices
        drops = dict(browser.drops.reasons)
    print(json.dumps({"devices": [{"id": str(r.device_id), "type": str(r.device_type), "name": r.name,
                                   "address": r.address, "location": r.location,
                                   "interfaces": r.interfaces} for r in found],
                      "drops": drops}), flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m igrs.bridges.dnssd",
                                     description="IGRS over DNS-SD (_igrs._tcp): advertise a device, browse")
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("device", help="run an IGRS device that also announces itself over DNS-SD")
    p.add_argument("-i", "--interface", action="append", required=True)
    p.add_argument("--name", required=True)
    p.add_argument("--type", default="PC")
    p.add_argument("--port", type=int, default=3880, help="ISDP UDP port")
    p.add_argument("--http-port", type=int)
    p.add_argument("--state-dir")
    p.set_defaults(func=_run_device)
    p = sub.add_parser("browse", help="print the _igrs._tcp devices found (JSON)")
    p.add_argument("-i", "--interface", action="append", required=True)
    p.add_argument("-t", "--timeout", type=float, default=3.0)
    p.set_defaults(func=_run_browse)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    return asyncio.run(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
