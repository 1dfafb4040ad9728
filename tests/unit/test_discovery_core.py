"""The sans-IO discovery state machines, driven with fake time (no sockets)."""

from __future__ import annotations

import random

import pytest

from igrs.constants import (
    COPY_SPACING,
    MAX_PENDING_RESPONSES,
    REPOINT_MAX_CANDIDATES,
    RESPONDER_BURST,
    SEARCH_AMPLIFICATION,
    SOURCE_BURST,
    STARTUP_COPIES,
)
from igrs.core.discovery import (
    ControlPointDiscovery,
    DeviceAppeared,
    DeviceDiscovery,
    DeviceGone,
    DeviceUpdated,
    Interface,
    ProbeLocation,
    SendMulticast,
    SendUnicast,
)
from igrs.wire import isdp
from igrs.wire.ids import DeviceId, DeviceType, ServiceType

LAN = Interface.from_cidr("eth-a", "10.77.1.10/24")
LAN2 = Interface.from_cidr("eth-b", "10.77.5.10/24")
LOC = "http://10.77.1.10:3880/IGRS"


def make_device(max_age: int = 100, seed: int = 1) -> DeviceDiscovery:
    dev = DeviceDiscovery(DeviceId.new(), DeviceType("TV"), "TV", max_age=max_age, rng=random.Random(seed))
    dev.set_interfaces({LAN: LOC}, 0.0)
    return dev


def run_until(machine: DeviceDiscovery, until: float) -> list:
    """Poll every due deadline up to ``until``; return (time, action) pairs."""
    out = []
    while (deadline := machine.next_deadline()) is not None and deadline <= until:
        out += [(deadline, a) for a in machine.poll(deadline)]
    return out


def decoded(action: SendMulticast | SendUnicast) -> isdp.IsdpMessage:
    return isdp.decode(action.payload)


class TestAdvertiser:
    def test_start_announces_twice_then_reannounces_before_half_max_age(self) -> None:
        dev = make_device(max_age=100)
        first = dev.start(0.0)
        later = run_until(dev, 60.0)
        alive = [(0.0, a) for a in first] + later
        assert [type(decoded(a)) for _, a in alive] == [isdp.DeviceOnlineAdvertisement] * len(alive)
        times = [t for t, _ in alive]
        assert times[:STARTUP_COPIES] == pytest.approx([i * COPY_SPACING for i in range(STARTUP_COPIES)])
        reannounce = times[STARTUP_COPIES]
        assert 40.0 <= reannounce < 50.0  # before max-age/2, jitter at most 10 % of max-age
        msg = decoded(alive[0][1])
        assert isinstance(msg, isdp.DeviceOnlineAdvertisement)
        assert msg.location == LOC and msg.max_age == 100 and msg.name == "TV"

    def test_reannounce_jitter_varies_between_devices(self) -> None:
        times = set()
        for seed in range(5):
            dev = make_device(seed=seed)
            dev.start(0.0)
            times.add(round([t for t, _ in run_until(dev, 60.0)][-1], 3))
        assert len(times) > 1

    def test_stop_sends_byebye_copies_and_nothing_else(self) -> None:
        dev = make_device()
        dev.start(0.0)
        actions = dev.stop(1.0) + [a for _, a in run_until(dev, 1000.0)]
        assert len(actions) == STARTUP_COPIES
        assert all(isinstance(decoded(a), isdp.DeviceOfflineAdvertisement) for a in actions)
        assert dev.next_deadline() is None

    def test_address_change_reannounces_with_new_location(self) -> None:
        dev = make_device()
        dev.start(0.0)
        run_until(dev, 1.0)
        moved = Interface.from_cidr("eth-a", "10.77.1.99/24")
        actions = dev.set_interfaces({moved: "http://10.77.1.99:3880/IGRS"}, 5.0)
        msg = decoded(actions[0])
        assert isinstance(msg, isdp.DeviceOnlineAdvertisement)
        assert msg.location == "http://10.77.1.99:3880/IGRS"

    def test_leaving_an_interface_says_byebye_there(self) -> None:
        dev = DeviceDiscovery(DeviceId.new(), DeviceType("PC"), "PC")
        dev.set_interfaces({LAN: LOC, LAN2: "http://10.77.5.10:3880/IGRS"}, 0.0)
        dev.start(0.0)
        actions = dev.set_interfaces({LAN: LOC}, 3.0)
        assert [(a.interface, type(decoded(a))) for a in actions] == [
            ("eth-b", isdp.DeviceOfflineAdvertisement)
        ]


def search(target: isdp.SearchTarget | None = None, mx: int = 2, source: DeviceId | None = None) -> bytes:
    req = isdp.SearchDeviceRequest(target or isdp.SearchTarget.all(), mx, source or DeviceId.new())
    return isdp.encode(req, host="224.0.0.110:3880")


class TestResponder:
    def test_answers_within_mx_unicast_to_requester(self) -> None:
        dev = make_device()
        dev.start(0.0)
        run_until(dev, 0.5)
        dev.on_datagram(search(mx=2), ("10.77.1.20", 40000), "eth-a", 10.0)
        answers = [(t, a) for t, a in run_until(dev, 13.0) if isinstance(a, SendUnicast)]
        assert len(answers) == 1
        t, action = answers[0]
        assert 10.0 <= t <= 12.0
        assert action.address == ("10.77.1.20", 40000)
        msg = decoded(action)
        assert isinstance(msg, isdp.SearchDeviceResponse)
        assert msg.device_id == dev.device_id and msg.location == LOC

    @pytest.mark.parametrize(
        ("target", "answers"),
        [
            (isdp.SearchTarget.all(), 1),
            (isdp.SearchTarget.parse("urn:IGRS:DeviceType:TV:1"), 1),
            (isdp.SearchTarget.parse("urn:IGRS:DeviceType:TV:2"), 0),  # we are version 1
            (isdp.SearchTarget.parse("urn:IGRS:DeviceType:PC:1"), 0),
            (isdp.SearchTarget.parse(str(DeviceId.new())), 0),
        ],
    )
    def test_search_targets(self, target: isdp.SearchTarget, answers: int) -> None:
        dev = make_device()
        dev.start(0.0)
        dev.on_datagram(search(target), ("10.77.1.20", 40000), "eth-a", 1.0)
        assert sum(isinstance(a, SendUnicast) for _, a in run_until(dev, 10.0)) == answers

    def test_own_device_id_target(self) -> None:
        dev = make_device()
        dev.start(0.0)
        dev.on_datagram(
            search(isdp.SearchTarget("device", device_id=dev.device_id)), ("10.77.1.20", 40000), "eth-a", 1.0
        )
        assert sum(isinstance(a, SendUnicast) for _, a in run_until(dev, 10.0)) == 1

    def test_search_from_outside_the_subnet_is_ignored_and_counted(self) -> None:
        dev = make_device()
        dev.start(0.0)
        dev.on_datagram(search(), ("192.0.2.99", 40000), "eth-a", 1.0)
        assert not [a for _, a in run_until(dev, 10.0) if isinstance(a, SendUnicast)]
        assert dev.drops.reasons["off_subnet"] == 1

    def test_requester_rate_limited_no_amplification(self) -> None:
        dev = make_device()
        dev.start(0.0)
        for i in range(200):  # distinct ports: not de-duplicated, only the rate limit stops them
            dev.on_datagram(search(mx=1), ("10.77.1.20", 40000 + i), "eth-a", 1.0)
        answers = [a for _, a in run_until(dev, 10.0) if isinstance(a, SendUnicast)]
        assert len(answers) == int(RESPONDER_BURST)
        assert dev.drops.reasons["requester_rate"] == 200 - int(RESPONDER_BURST)
        for a in answers:
            assert len(a.payload) <= 2048

    def test_pending_responses_capped(self) -> None:
        dev = make_device()
        dev.start(0.0)
        for i in range(MAX_PENDING_RESPONSES + 50):
            dev.on_datagram(search(mx=5), (f"10.77.1.{2 + i % 250}", 40000 + i), "eth-a", 1.0)
        assert dev.drops.reasons["responder_busy"] >= 50

    def test_duplicate_search_answered_once(self) -> None:
        dev = make_device()
        dev.start(0.0)
        data = search(mx=3)
        dev.on_datagram(data, ("10.77.1.20", 40000), "eth-a", 1.0)
        dev.on_datagram(data, ("10.77.1.20", 40000), "eth-a", 1.01)
        assert sum(isinstance(a, SendUnicast) for _, a in run_until(dev, 10.0)) == 1

    def test_malformed_datagrams_dropped_and_counted(self) -> None:
        dev = make_device()
        dev.start(0.0)
        for junk in (b"", b"\xff\xfe", b"M-SEARCH * HTTP/1.1\r\nMX: x\r\n\r\n", b"GET / HTTP/1.1\r\n\r\n"):
            assert dev.on_datagram(junk, ("10.77.1.20", 1), "eth-a", 1.0) == []
        # Only searches concern a device: the rest is not even decoded.
        assert dev.drops.reasons["malformed"] == 1

    def test_not_running_answers_nothing(self) -> None:
        dev = make_device()
        dev.on_datagram(search(), ("10.77.1.20", 40000), "eth-a", 1.0)
        assert dev.next_deadline() is None


def alive(
    dev_id: DeviceId, address: str = "10.77.1.30", max_age: int = 10, name: str = "PC", dtype: str = "PC"
) -> bytes:
    msg = isdp.DeviceOnlineAdvertisement(
        dev_id, DeviceType(dtype), f"http://{address}:3880/IGRS", max_age, name
    )
    return isdp.encode(msg, host="224.0.0.110:3880")


def byebye(dev_id: DeviceId) -> bytes:
    return isdp.encode(isdp.DeviceOfflineAdvertisement(dev_id, DeviceType("PC")), host="224.0.0.110:3880")


class TestRegistry:
    def make(self, **kw: int) -> ControlPointDiscovery:
        cp = ControlPointDiscovery(DeviceId.new(), **kw)
        cp.set_interfaces([LAN, LAN2])
        return cp

    def test_appear_update_expire(self) -> None:
        cp = self.make()
        dev = DeviceId.new()
        [ev] = cp.on_datagram(alive(dev), ("10.77.1.30", 5000), "eth-a", 0.0)
        assert isinstance(ev, DeviceAppeared) and ev.device.name == "PC"
        assert cp.on_datagram(alive(dev), ("10.77.1.30", 5000), "eth-a", 1.0) == []  # refresh only
        [ev] = cp.on_datagram(alive(dev, name="Study PC"), ("10.77.1.30", 5000), "eth-a", 2.0)
        assert isinstance(ev, DeviceUpdated) and ev.previous.name == "PC" and ev.device.name == "Study PC"
        assert cp.next_deadline() == pytest.approx(12.0)
        _, events = cp.poll(11.9)
        assert events == []
        _, events = cp.poll(12.0)
        assert [type(e) for e in events] == [DeviceGone] and events[0].reason == "expired"
        assert cp.devices == []

    def test_byebye_removes_at_once(self) -> None:
        cp = self.make()
        dev = DeviceId.new()
        cp.on_datagram(alive(dev), ("10.77.1.30", 5000), "eth-a", 0.0)
        [ev] = cp.on_datagram(byebye(dev), ("10.77.1.30", 5000), "eth-a", 1.0)
        assert isinstance(ev, DeviceGone) and ev.reason == "byebye"

    def test_byebye_from_another_address_is_ignored(self) -> None:
        cp = self.make()
        dev = DeviceId.new()
        cp.on_datagram(alive(dev), ("10.77.1.30", 5000), "eth-a", 0.0)
        assert cp.on_datagram(byebye(dev), ("10.77.1.66", 5000), "eth-a", 1.0) == []
        assert len(cp.devices) == 1

    def test_two_interfaces_one_record(self) -> None:
        cp = self.make()
        dev = DeviceId.new()
        cp.on_datagram(alive(dev, "10.77.1.30"), ("10.77.1.30", 5000), "eth-a", 0.0)
        [ev] = cp.on_datagram(alive(dev, "10.77.5.30"), ("10.77.5.30", 5000), "eth-b", 0.1)
        assert isinstance(ev, DeviceUpdated)
        assert len(cp.devices) == 1
        rec = cp.devices[0]
        assert rec.address == "10.77.1.30"  # the primary address does not flap
        assert rec.interfaces == ["eth-a", "eth-b"]
        # Seen again on both: no further events.
        assert cp.on_datagram(alive(dev, "10.77.1.30"), ("10.77.1.30", 5000), "eth-a", 0.2) == []
        assert cp.on_datagram(alive(dev, "10.77.5.30"), ("10.77.5.30", 5000), "eth-b", 0.3) == []

    def test_location_must_point_at_the_sender(self) -> None:
        cp = self.make()
        assert cp.on_datagram(alive(DeviceId.new(), "10.77.1.99"), ("10.77.1.30", 5000), "eth-a", 0.0) == []
        assert cp.drops.reasons["location_mismatch"] == 1

    def test_registry_cap(self) -> None:
        cp = self.make(max_devices=10)
        for i in range(20):
            cp.on_datagram(alive(DeviceId.new()), ("10.77.1.30", 6000 + i), "eth-a", 0.0)
        assert len(cp.devices) == 10
        assert cp.drops.reasons["registry_full"] == 10

    def test_per_source_rate_limit(self) -> None:
        cp = self.make()
        n = int(SOURCE_BURST) + 100
        for _ in range(n):
            cp.on_datagram(alive(DeviceId.new()), ("10.77.1.30", 5000), "eth-a", 0.0)
        assert len(cp.devices) == int(SOURCE_BURST)
        assert cp.drops.reasons["source_rate"] == 100

    def test_own_messages_ignored(self) -> None:
        cp = self.make()
        assert cp.on_datagram(alive(cp.device_id), ("10.77.1.30", 5000), "eth-a", 0.0) == []

    def test_search_sends_on_every_interface_with_retries(self) -> None:
        cp = self.make()
        first = cp.search(0.0, mx=1)
        assert sorted(a.interface for a in first) == ["eth-a", "eth-b"]
        req = isdp.decode(first[0].payload)
        assert isinstance(req, isdp.SearchDeviceRequest) and req.mx == 1
        assert req.source_device_id == cp.device_id
        more, _ = cp.poll(1.0)
        assert len(more) == 2

    def test_response_for_another_control_point_is_dropped(self) -> None:
        cp = self.make()
        other = DeviceId.new()
        dev = DeviceId.new()
        resp = isdp.SearchDeviceResponse(
            dev, DeviceType("TV"), "http://10.77.1.30:1/IGRS", 100, isdp.SearchTarget.all(), "TV", other
        )
        assert cp.on_datagram(isdp.encode(resp, host=""), ("10.77.1.30", 5000), "eth-a", 0.0) == []
        resp = isdp.SearchDeviceResponse(
            dev, DeviceType("TV"), "http://10.77.1.30:1/IGRS", 100, isdp.SearchTarget.all(), "TV", cp.device_id
        )
        [ev] = cp.on_datagram(isdp.encode(resp, host=""), ("10.77.1.30", 5000), "eth-a", 0.0)
        assert isinstance(ev, DeviceAppeared)


def test_ipv4_sighting_becomes_primary_and_zones_make_urls_reachable() -> None:
    v6 = Interface.from_cidr("eth-a%6", "fe80::1/64", scope_id=2)
    cp = ControlPointDiscovery(DeviceId.new())
    cp.set_interfaces([LAN, v6])
    dev = DeviceId.new()
    msg6 = isdp.DeviceOnlineAdvertisement(dev, DeviceType("TV"), "http://[fe80::9]:80/IGRS", 60)
    [ev] = cp.on_datagram(isdp.encode(msg6, host="x"), ("fe80::9%2", 5000), "eth-a%6", 0.0)
    assert ev.device.url == "http://[fe80::9%2]:80/IGRS"
    cp.on_datagram(alive(dev, "10.77.1.30"), ("10.77.1.30", 5000), "eth-a", 0.1)
    rec = cp.devices[0]
    assert rec.address == "10.77.1.30" and rec.url == rec.location == "http://10.77.1.30:3880/IGRS"
    assert rec.interfaces == ["eth-a", "eth-a%6"]


class TestServices:
    VOL = ServiceType("Volume")

    def make(self) -> DeviceDiscovery:
        dev = make_device()
        dev.set_services({7: (self.VOL, "Volume"), 9: (ServiceType("Clock", 2), "Clock")}, 0.0)
        return dev

    def test_services_advertised_with_the_device_and_said_goodbye(self) -> None:
        dev = self.make()
        first = [decoded(a) for a in dev.start(0.0)]
        assert [type(m).__name__ for m in first] == [
            "DeviceOnlineAdvertisement", "ServiceOnlineAdvertisement", "ServiceOnlineAdvertisement"]
        assert {m.service_id for m in first[1:]} == {7, 9}  # type: ignore[union-attr]
        removed = [decoded(a) for a in dev.set_services({7: (self.VOL, "Volume")}, 1.0)]
        assert [(type(m).__name__, m.service_id) for m in removed] == [("ServiceOfflineAdvertisement", 9)]  # type: ignore[union-attr]
        last = [type(decoded(a)).__name__ for a in dev.stop(2.0)]
        assert last == ["ServiceOfflineAdvertisement", "DeviceOfflineAdvertisement"]

    def test_service_search_answers_each_matching_service(self) -> None:
        dev = self.make()
        dev.start(0.0)
        target = isdp.SearchTarget("service_type", service_type=ServiceType("Clock", 1))
        req = isdp.encode(isdp.SearchServiceRequest(target, 1, DeviceId.new()), host="x")
        dev.on_datagram(req, ("10.77.1.20", 40000), "eth-a", 1.0)
        answers = [decoded(a) for _, a in run_until(dev, 3.0) if isinstance(a, SendUnicast)]
        assert [(type(m).__name__, m.service_id) for m in answers] == [("SearchServiceResponse", 9)]  # type: ignore[union-attr]
        none = isdp.SearchTarget("service_type", service_type=ServiceType("Clock", 3))
        other = isdp.encode(isdp.SearchServiceRequest(none, 1), host="x")
        dev.on_datagram(other, ("10.77.1.21", 1), "eth-a", 4.0)
        assert not [a for _, a in run_until(dev, 7.0) if isinstance(a, SendUnicast)]

    def test_registry_keeps_services_until_offline_expiry_or_byebye(self) -> None:
        cp = ControlPointDiscovery(DeviceId.new())
        cp.set_interfaces([LAN])
        dev = DeviceId.new()
        ad = isdp.ServiceOnlineAdvertisement(dev, self.VOL, 7, "http://10.77.1.30:3880/IGRS", 10, "Vol")
        cp.on_datagram(isdp.encode(ad, host="x"), ("10.77.1.30", 5000), "eth-a", 0.0)
        assert [(s.service_id, s.name) for s in cp.services] == [(7, "Vol")]
        spoof = isdp.ServiceOfflineAdvertisement(dev, self.VOL, 7)
        cp.on_datagram(isdp.encode(spoof, host="x"), ("10.77.1.66", 5000), "eth-a", 1.0)
        assert len(cp.services) == 1  # only the address it was heard at may withdraw it
        cp.on_datagram(isdp.encode(spoof, host="x"), ("10.77.1.30", 5000), "eth-a", 1.0)
        assert cp.services == []
        cp.on_datagram(isdp.encode(ad, host="x"), ("10.77.1.30", 5000), "eth-a", 2.0)
        cp.poll(12.0)
        assert cp.services == []


class TestRepointing:
    """specs/isdp.md §11a: another address announcing a known device id is a candidate."""

    def make(self) -> tuple[ControlPointDiscovery, DeviceId]:
        cp = ControlPointDiscovery(DeviceId.new())
        cp.set_interfaces([LAN])
        dev = DeviceId.new()
        cp.on_datagram(alive(dev, "10.77.1.30", max_age=100), ("10.77.1.30", 5000), "eth-a", 0.0)
        return cp, dev

    def test_spoofed_alive_is_kept_beside_and_probes_the_own_location(self) -> None:
        cp, dev = self.make()
        [ev] = cp.on_datagram(alive(dev, "10.77.1.66", max_age=100), ("10.77.1.66", 5000), "eth-a", 1.0)
        assert isinstance(ev, DeviceUpdated)
        rec = cp.get(dev)
        assert rec is not None and rec.address == "10.77.1.30" and rec.location == "http://10.77.1.30:3880/IGRS"
        assert rec.candidates == {("eth-a", "10.77.1.66")} and rec.last_seen == 0.0  # not refreshed
        assert cp.drops.reasons["unproven_address"] == 1
        assert cp.next_deadline() == 1.0
        actions, _ = cp.poll(1.0)
        assert actions == [ProbeLocation(dev, "http://10.77.1.30:3880/IGRS")]
        # the own address answers: nothing moves
        assert cp.probe_result(dev, "http://10.77.1.30:3880/IGRS", True, 1.5) == []
        assert cp.get(dev).address == "10.77.1.30"  # type: ignore[union-attr]
        # a byebye from the candidate is ignored; from the own address it is not
        assert cp.on_datagram(byebye(dev), ("10.77.1.66", 5000), "eth-a", 2.0) == []
        assert cp.drops.reasons["byebye_mismatch"] == 1 and len(cp.devices) == 1
        # another sighting within the probe interval: no second probe
        cp.on_datagram(alive(dev, "10.77.1.66", max_age=100), ("10.77.1.66", 5000), "eth-a", 3.0)
        assert not [a for a in cp.poll(3.0)[0] if isinstance(a, ProbeLocation)]
        [gone] = cp.on_datagram(byebye(dev), ("10.77.1.30", 5000), "eth-a", 4.0)
        assert isinstance(gone, DeviceGone)

    def test_moves_when_the_own_address_stopped_answering(self) -> None:
        cp, dev = self.make()
        cp.on_datagram(alive(dev, "10.77.1.66", max_age=100), ("10.77.1.66", 5000), "eth-a", 1.0)
        [probe] = cp.poll(1.0)[0]
        assert isinstance(probe, ProbeLocation)
        [ev] = cp.probe_result(dev, probe.location, False, 2.0)
        assert isinstance(ev, DeviceUpdated) and ev.previous.address == "10.77.1.30"
        rec = cp.get(dev)
        assert rec is not None and rec.address == "10.77.1.66" and rec.location == "http://10.77.1.66:3880/IGRS"
        assert rec.seen_on == {("eth-a", "10.77.1.66")} and rec.candidates == frozenset()
        # the old address is no longer the device's: its byebye is ignored
        assert cp.on_datagram(byebye(dev), ("10.77.1.30", 5000), "eth-a", 3.0) == []
        assert len(cp.devices) == 1

    def test_a_pipe_that_authenticates_moves_the_entry(self) -> None:
        cp, dev = self.make()
        cp.on_datagram(alive(dev, "10.77.1.66", max_age=100), ("10.77.1.66", 5000), "eth-a", 1.0)
        assert cp.candidate_urls(dev) == [("10.77.1.66", "http://10.77.1.66:3880/IGRS")]
        assert cp.proven(dev, "10.77.1.99", 2.0) == []  # not a candidate: nothing
        [ev] = cp.proven(dev, "10.77.1.66", 2.0)
        assert isinstance(ev, DeviceUpdated) and cp.get(dev).address == "10.77.1.66"  # type: ignore[union-attr]

    def test_candidates_are_capped_and_expire(self) -> None:
        cp, dev = self.make()
        for i in range(10):
            addr = f"10.77.1.{100 + i}"
            cp.on_datagram(alive(dev, addr, max_age=10), (addr, 1), "eth-a", 1.0)
        rec = cp.get(dev)
        assert rec is not None and len(rec.candidates) == REPOINT_MAX_CANDIDATES
        assert cp.drops.reasons["candidates_full"] == 10 - REPOINT_MAX_CANDIDATES
        _, events = cp.poll(11.0)
        assert [type(e) for e in events] == [DeviceUpdated] and cp.get(dev).candidates == frozenset()  # type: ignore[union-attr]
        assert cp.next_deadline() == 100.0

    def test_services_of_a_known_device_count_only_from_its_own_address(self) -> None:
        cp, dev = self.make()
        loc = "http://10.77.1.66:3880/IGRS"
        ad = isdp.ServiceOnlineAdvertisement(dev, ServiceType("Volume"), 7, loc, 10, "V")
        cp.on_datagram(isdp.encode(ad, host="x"), ("10.77.1.66", 5000), "eth-a", 1.0)
        assert cp.services == [] and cp.drops.reasons["unproven_address"] == 1


def test_update_announcement_raises_device_updated() -> None:
    cp = ControlPointDiscovery(DeviceId.new())
    cp.set_interfaces([LAN])
    dev = DeviceId.new()
    msg = isdp.DeviceOnlineAdvertisement(dev, DeviceType("PC"), "http://10.77.1.30:3880/IGRS", 10, "PC")
    cp.on_datagram(isdp.encode(msg, host="x"), ("10.77.1.30", 5000), "eth-a", 0.0)
    assert cp.on_datagram(isdp.encode(msg, host="x"), ("10.77.1.30", 5000), "eth-a", 0.1) == []
    update = isdp.DeviceOnlineAdvertisement(dev, DeviceType("PC"), "http://10.77.1.30:3880/IGRS", 10, "PC",
                                            update=True)
    [ev] = cp.on_datagram(isdp.encode(update, host="x"), ("10.77.1.30", 5000), "eth-a", 0.2)
    assert isinstance(ev, DeviceUpdated) and ev.device.name == "PC"


def test_description_change_sends_update_with_copies() -> None:
    dev = make_device()
    assert dev.description_changed(0.0) == []  # not running: nothing
    dev.start(0.0)
    run_until(dev, 1.0)
    now = [decoded(a) for a in dev.description_changed(2.0)]
    later = [decoded(a) for _, a in run_until(dev, 3.0)]
    updates = [m for m in now + later if isinstance(m, isdp.DeviceOnlineAdvertisement)]
    assert len(updates) == STARTUP_COPIES and all(m.update for m in updates)


def test_minimal_search_gets_a_compact_answer_within_four_times_its_size() -> None:
    dev = make_device()
    dev.start(0.0)
    smallest = b"M-SEARCH * HTTP/1.1\nMAN:isdp:discover\nMX:0\nST:isdp:all\n"
    assert isinstance(isdp.decode(smallest), isdp.SearchDeviceRequest)
    dev.on_datagram(smallest, ("10.77.1.20", 40000), "eth-a", 1.0)
    [answer] = [a for _, a in run_until(dev, 1.0) if isinstance(a, SendUnicast)]
    assert len(answer.payload) <= SEARCH_AMPLIFICATION * len(smallest)
    msg = decoded(answer)
    assert isinstance(msg, isdp.SearchDeviceResponse)
    assert (msg.device_id, msg.device_type, msg.location) == (dev.device_id, DeviceType("TV"), LOC)
    dev.on_datagram(search(), ("10.77.1.21", 40000), "eth-a", 2.0)  # our own 280-byte search
    [full] = [a for _, a in run_until(dev, 10.0) if isinstance(a, SendUnicast)]
    assert b"01-DeviceName" in full.payload and len(full.payload) > len(answer.payload)


def test_the_compact_answer_is_built_only_when_the_full_does_not_fit(monkeypatch: pytest.MonkeyPatch) -> None:
    compact_built = []
    encode = isdp.encode

    def counting(msg: isdp.IsdpMessage, *, host: str, compact: bool = False) -> bytes:
        compact_built.append(compact)
        return encode(msg, host=host, compact=compact)

    monkeypatch.setattr(isdp, "encode", counting)
    dev = make_device()
    dev.start(0.0)
    compact_built.clear()
    dev.on_datagram(search(), ("10.77.1.21", 40000), "eth-a", 2.0)  # our own search: the full answer fits
    [full] = [a for _, a in run_until(dev, 10.0) if isinstance(a, SendUnicast)]
    assert b"01-DeviceName" in full.payload and True not in compact_built
    smallest = b"M-SEARCH * HTTP/1.1\nMAN:isdp:discover\nMX:0\nST:isdp:all\n"
    dev.on_datagram(smallest, ("10.77.1.20", 40000), "eth-a", 11.0)
    [answer] = [a for _, a in run_until(dev, 11.0) if isinstance(a, SendUnicast)]
    assert compact_built.count(True) == 1 and b"01-DeviceName" not in answer.payload
