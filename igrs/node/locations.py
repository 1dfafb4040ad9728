"""Where devices were found lately: a small cache in the state folder, so that a one-shot
command naming a device it used a moment ago need not search for it again.

``LocationCache(keystore)`` keeps ``LOCATIONS_FILE`` (igrs.node.keystore: written under the
folder's lock, atomically, 0600; ignored when others may write it). It holds at most
``LOCATION_CACHE_ENTRIES`` devices, each for ``LOCATION_CACHE_TTL`` seconds at most and never
longer than the device's own max-age, and only for the ISDP port it was found on. An entry
is a hint, never the truth: ``ControlPoint.locate`` asks the device at that location whether
it is still that device (within ``LOCATION_CHECK_TIMEOUT``) and forgets the entry, then
searches, when it is not (specs/isdp.md §10, "Locating one device").
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from igrs.constants import IGRS_PORT, LOCATION_CACHE_ENTRIES, LOCATION_CACHE_TTL
from igrs.core.discovery import DeviceRecord
from igrs.errors import ProtocolError
from igrs.node.keystore import LOCATIONS_FILE, KeyStore
from igrs.wire.endpoints import parse_endpoint
from igrs.wire.ids import DeviceId, DeviceType, check_name

log = logging.getLogger(__name__)

FORMAT_VERSION = 1


@dataclass(frozen=True, slots=True)
class Remembered:
    """One device as it was last located: ``expires`` is wall-clock time."""

    device_id: DeviceId
    device_type: DeviceType
    name: str
    location: str
    address: str
    port: int  # the ISDP port it was found on
    expires: float

    def matches(self, text: str) -> bool:
        """The rule of ``ControlPoint.find``: its id, its exact name, or a prefix of its UUID."""
        return text in (str(self.device_id), self.name) or str(self.device_id.uuid).startswith(text.lower())

    def to_json(self) -> dict[str, Any]:
        return {"id": str(self.device_id), "type": str(self.device_type), "name": self.name,
                "location": self.location, "address": self.address, "port": self.port,
                "expires": round(self.expires, 3)}

    @classmethod
    def from_json(cls, item: Any) -> Remembered:
        """ValueError / TypeError / KeyError / ProtocolError for anything but a sound entry: the
        location an http URL naming ``address`` (an IP address), the name a valid one."""
        endpoint = parse_endpoint(str(item["location"]))
        address, port, expires = item["address"], item["port"], item["expires"]
        if endpoint is None or not endpoint.is_literal or endpoint.host != address:
            raise ValueError("the location does not name the address")
        if not isinstance(port, int) or not 0 < port < 65536:
            raise ValueError("bad port")
        if not isinstance(expires, int | float) or not math.isfinite(expires):
            raise ValueError("bad expiry")
        name = str(item["name"])
        if name:
            check_name(name)
        return cls(DeviceId.parse(str(item["id"])), DeviceType.parse(str(item["type"])), name,
                   endpoint.location, address, port, float(expires))


class LocationCache:
    """Recently located devices of one state folder (module docstring)."""

    def __init__(self, store: KeyStore, *, port: int = IGRS_PORT,
                 clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.port = port
        self.clock = clock

    def _entries(self, raw: bytes | None) -> list[Remembered]:
        """The sound, unexpired entries of ``raw`` (a damaged file or entry is skipped)."""
        if not raw:
            return []
        try:
            doc = json.loads(raw)
            items = doc["locations"] if isinstance(doc, dict) and doc.get("version") == FORMAT_VERSION else []
        except (ValueError, KeyError, TypeError):
            log.info("ignoring %s: not a location cache", LOCATIONS_FILE)
            return []
        now, out = self.clock(), []
        for item in items[:LOCATION_CACHE_ENTRIES] if isinstance(items, list) else []:
            try:
                entry = Remembered.from_json(item)
            except (ValueError, TypeError, KeyError, ProtocolError) as exc:
                log.debug("skipping a cached location: %s", exc)
                continue
            if entry.expires > now:
                out.append(entry)
        return out

    def entries(self) -> list[Remembered]:
        return self._entries(self.store.read_private(LOCATIONS_FILE))

    def lookup(self, text: str) -> Remembered | None:
        """The one unexpired entry of this ISDP port that ``text`` names (None if none or
        several do: then a search decides)."""
        text = text.strip()
        found = [e for e in self.entries() if e.port == self.port and e.matches(text)] if text else []
        return found[0] if len(found) == 1 else None

    def remember(self, records: Iterable[DeviceRecord]) -> None:
        """Keep where ``records`` were found (replacing older entries for the same device or the
        same location); the entries expiring first go when there are too many. Best effort:
        a folder that cannot be written is logged, never raised."""
        now = self.clock()
        fresh = []
        for r in records:
            endpoint = parse_endpoint(r.location)
            if endpoint is None or not endpoint.is_literal or endpoint.host != r.address:
                continue  # only a location that names the address it was heard from
            ttl = min(LOCATION_CACHE_TTL, r.max_age)
            fresh.append(Remembered(r.device_id, r.device_type, r.name, endpoint.location, r.address,
                                    self.port, now + ttl))
        if fresh:
            self._update(lambda old: [e for e in old if all(
                e.device_id != f.device_id and e.location != f.location for f in fresh)] + fresh)

    def forget(self, device_id: DeviceId) -> None:
        self._update(lambda old: [e for e in old if e.device_id != device_id])

    def _update(self, change: Callable[[list[Remembered]], list[Remembered]]) -> None:
        def rewrite(raw: bytes | None) -> bytes:
            kept = sorted(change(self._entries(raw)), key=lambda e: e.expires, reverse=True)
            doc = {"version": FORMAT_VERSION, "locations": [e.to_json() for e in kept[:LOCATION_CACHE_ENTRIES]]}
            return (json.dumps(doc, indent=1) + "\n").encode()

        try:
            self.store.update_private(LOCATIONS_FILE, rewrite)
        except OSError as exc:
            log.info("cannot remember locations in %s: %s", self.store.directory, exc)


__all__ = ["LocationCache", "Remembered"]
