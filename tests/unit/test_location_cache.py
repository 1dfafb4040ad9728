"""The state folder's cache of recently located devices (igrs.node.locations): bounded,
short-lived, per ISDP port, private, and never trusted blindly (ControlPoint.locate confirms
each entry with the device; tests/integration/test_cli_oneshot.py)."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

from igrs.constants import LOCATION_CACHE_ENTRIES, LOCATION_CACHE_TTL
from igrs.core.discovery import DeviceRecord
from igrs.node.keystore import LOCATIONS_FILE, KeyStore
from igrs.node.locations import LocationCache
from igrs.wire.ids import DeviceId, DeviceType


def record(n: int, name: str = "", max_age: int = 1800, address: str = "") -> DeviceRecord:
    address = address or f"10.77.1.{n % 250 + 1}"
    return DeviceRecord(DeviceId.new(), DeviceType("TV"), name or f"TV {n}",
                        f"http://{address}:{4000 + n}/IGRS", address, max_age, 0.0, 0.0,
                        frozenset({("eth0", address)}))


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def test_a_located_device_is_found_by_name_id_or_uuid_prefix(tmp_path: Path) -> None:
    cache = LocationCache(KeyStore(tmp_path), port=3999)
    tv = record(1, "Den TV")
    cache.remember([tv, record(2)])
    for text in ("Den TV", str(tv.device_id), str(tv.device_id.uuid)[:8]):
        hit = cache.lookup(text)
        assert hit is not None and (hit.device_id, hit.location, hit.address) == (tv.device_id, tv.location,
                                                                                 tv.address)
    assert cache.lookup("Kitchen TV") is None
    assert LocationCache(KeyStore(tmp_path), port=3880).lookup("Den TV") is None  # another ISDP port
    assert stat.S_IMODE((tmp_path / LOCATIONS_FILE).stat().st_mode) == 0o600


def test_two_entries_matching_decide_nothing(tmp_path: Path) -> None:
    cache = LocationCache(KeyStore(tmp_path))
    cache.remember([record(1, "TV"), record(2, "TV")])
    assert cache.lookup("TV") is None


def test_entries_expire_after_the_ttl_or_the_max_age(tmp_path: Path) -> None:
    clock = Clock()
    cache = LocationCache(KeyStore(tmp_path), clock=clock)
    cache.remember([record(1, "long"), record(2, "short", max_age=30)])
    clock.now += 31
    assert cache.lookup("short") is None and cache.lookup("long") is not None
    clock.now += LOCATION_CACHE_TTL
    assert cache.lookup("long") is None


def test_it_holds_a_bounded_number_keeping_the_newest(tmp_path: Path) -> None:
    clock = Clock()
    cache = LocationCache(KeyStore(tmp_path), clock=clock)
    for n in range(LOCATION_CACHE_ENTRIES + 8):
        clock.now += 1
        cache.remember([record(n)])
    names = {e.name for e in cache.entries()}
    assert len(names) == LOCATION_CACHE_ENTRIES
    assert "TV 0" not in names and f"TV {LOCATION_CACHE_ENTRIES + 7}" in names


def test_a_device_found_again_replaces_its_entry_and_a_location_keeps_one_device(tmp_path: Path) -> None:
    cache = LocationCache(KeyStore(tmp_path))
    tv = record(1, "TV")
    cache.remember([tv])
    moved = DeviceRecord(tv.device_id, tv.device_type, "TV", "http://10.77.1.99:5000/IGRS", "10.77.1.99", 1800,
                         0.0, 0.0, frozenset())
    cache.remember([moved])
    assert [e.location for e in cache.entries()] == [moved.location]
    other = DeviceRecord(DeviceId.new(), tv.device_type, "PC", moved.location, moved.address, 1800, 0.0, 0.0,
                         frozenset())
    cache.remember([other])  # the same address and port now answer for another device
    assert [e.name for e in cache.entries()] == ["PC"]
    cache.forget(other.device_id)
    assert cache.entries() == []


def test_damage_is_ignored_entry_by_entry(tmp_path: Path) -> None:
    store = KeyStore(tmp_path)
    cache = LocationCache(store)
    cache.remember([record(1, "Good")])
    path = tmp_path / LOCATIONS_FILE
    doc = json.loads(path.read_text())
    good = doc["locations"][0]
    doc["locations"] += [
        {**good, "id": str(DeviceId.new()), "name": "Elsewhere",
         "location": "http://10.9.9.9:80/IGRS"},  # not its address
        {**good, "id": str(DeviceId.new()), "name": "Named", "location": "http://tv.local:80/IGRS",
         "address": "tv.local"},  # not an address
        {**good, "id": "not an id", "name": "Bad id"},
        {**good, "id": str(DeviceId.new()), "name": "Bad port", "port": "3880"},
        {**good, "id": str(DeviceId.new()), "name": "\x07bell"},
        "garbage",
    ]
    path.write_text(json.dumps(doc))
    assert [e.name for e in cache.entries()] == ["Good"]
    path.write_text("{not json")
    assert cache.entries() == [] and cache.lookup("Good") is None
    cache.remember([record(2, "After")])  # a damaged file is replaced, not fatal
    assert [e.name for e in cache.entries()] == ["After"]


def test_a_file_others_may_write_is_not_believed(tmp_path: Path) -> None:
    cache = LocationCache(KeyStore(tmp_path))
    cache.remember([record(1, "TV")])
    os.chmod(tmp_path / LOCATIONS_FILE, 0o666)
    assert cache.lookup("TV") is None


def test_an_unwritable_folder_is_not_fatal(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    cache = LocationCache(KeyStore(tmp_path / "file" / "below"))  # cannot be created
    cache.remember([record(1)])
    assert cache.entries() == []
