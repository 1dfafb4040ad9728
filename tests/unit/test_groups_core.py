"""Device groups (clauses 9.5, 9.8): codec round-trips and the sans-IO state, with fake time."""

from __future__ import annotations

import random
import uuid

import pytest

from igrs.constants import (
    COPY_SPACING,
    GROUP_JOIN_TIMEOUT,
    GROUP_REJOIN_WINDOW,
    GROUP_RETRY_DELAY,
    GROUP_ST_ALL,
    MAX_DATAGRAM,
    MAX_NAME_LENGTH,
    STARTUP_COPIES,
    ReturnCode,
)
from igrs.core import device_groups as cg
from igrs.core.discovery import Interface, SendMulticast, SendUnicast
from igrs.errors import ProtocolError
from igrs.wire import group_datagrams as wg
from igrs.wire import messages
from igrs.wire.bodies.groups import (
    JoinCentralisedDeviceGroupRequest,
    JoinCentralisedDeviceGroupResponse,
    QuitCentralisedDeviceGroupNotify,
)
from igrs.wire.description import DeviceDescription, GroupRef, from_bytes, to_bytes
from igrs.wire.httpu import Headers
from igrs.wire.ids import DeviceId, DeviceType
from igrs.wire.messages import Frame, Routing, Status

GID = wg.GroupId.parse("urn:IGRS:DeviceGroup:3c1e9a52-0d4b-4f7e-b6a1-5e2d8c9f0a13")
DEV = DeviceId(uuid.UUID("6f1c2a9e-3b7d-4e25-9a41-0c8d5e7f1b22"))
CP = DeviceId(uuid.UUID("0b9e4d33-71a2-4c6f-8e15-2f4a6c8d9e10"))
HOST = "224.0.0.110:3880"


# --- codec: datagrams -------------------------------------------------------------------------
DATAGRAMS: dict[str, wg.GroupDatagram] = {
    "peer_adv": wg.PeerDeviceGroupAdvertisement(GID, DEV, 1800, "Living room 客厅"),
    "peer_adv_noname": wg.PeerDeviceGroupAdvertisement(GID, DEV, 60),
    "peer_quit": wg.QuitPeerDeviceGroupNotify(GID, DEV),
    "central_adv": wg.CentralisedDeviceGroupAdvertisement(GID, DEV, 1800, "Kitchen", 3),
    "central_quit": wg.QuitCentralisedDeviceGroupAdvertisement(GID, DEV),
    "search_one": wg.SearchDeviceGroupRequest(GID, 2, CP),
    "search_all": wg.SearchDeviceGroupRequest(None, 1),
    "resp_peer": wg.SearchDeviceGroupResponse(GID, DEV, wg.GroupKind.PEER, 1800, None, "Den", None, CP),
    "resp_central": wg.SearchDeviceGroupResponse(GID, DEV, wg.GroupKind.CENTRALISED, 900, GID, "Den", DEV),
}


@pytest.mark.parametrize("name", sorted(DATAGRAMS))
def test_datagram_round_trip(name: str) -> None:
    msg = DATAGRAMS[name]
    data = wg.encode(msg, host=HOST)
    assert len(data) < MAX_DATAGRAM
    assert wg.is_group_datagram(data)
    assert wg.decode(data) == msg
    assert f"01-IGRSMessageType: {msg.message_type}\r\n".encode() in data


def _mutate(data: bytes, old: bytes, new: bytes) -> bytes:
    assert old in data, old
    return data.replace(old, new)


MALFORMED: dict[str, tuple[str, bytes, bytes]] = {
    "peer_adv": ("peer_adv", b"CACHE-CONTROL: max-age=1800", b"CACHE-CONTROL: no-cache"),
    "peer_adv_nts": ("peer_adv", b"NTS: isdp:alive", b"NTS: isdp:byebye"),
    "peer_adv_bad_id": ("peer_adv", b"NT: urn:IGRS:DeviceGroup:", b"NT: urn:IGRS:Group:"),
    "peer_quit": ("peer_quit", b"USN: urn:IGRS:Device:DeviceId:", b"USN: uuid:"),
    "central_adv": ("central_adv", b"01-DeviceGroupMemberCount: 3", b"01-DeviceGroupMemberCount: x"),
    "central_quit": ("central_quit", b"NTS: isdp:byebye", b"NTS: isdp:alive"),
    "search_one": ("search_one", b'MAN: "isdp:discover"', b'MAN: "isdp:other"'),
    "search_mx": ("search_one", b"MX: 2", b"MX: two"),
    "resp_peer": ("resp_peer", b"01-DeviceGroupType: peer", b"01-DeviceGroupType: mesh"),
    "resp_central": ("resp_central", b"01-MasterDeviceId: ", b"01-X: "),
    "bad_version": ("peer_adv", b"01-IGRSVersion: IGRS/1.0", b"01-IGRSVersion: IGRS-1"),
    "name_control": ("peer_adv", b"01-DeviceGroupName: Living", b"01-DeviceGroupName: %01Living"),
}


@pytest.mark.parametrize("name", sorted(MALFORMED))
def test_malformed_datagram_is_refused(name: str) -> None:
    sample, old, new = MALFORMED[name]
    data = _mutate(wg.encode(DATAGRAMS[sample], host=HOST), old, new)
    with pytest.raises(ProtocolError) as err:
        wg.decode(data)
    assert not isinstance(err.value, wg.NotGroupDatagram)


def test_name_too_long_and_oversize_are_refused() -> None:
    long_name = wg.PeerDeviceGroupAdvertisement(GID, DEV, 60, "n" * MAX_NAME_LENGTH)
    data = wg.encode(long_name, host=HOST).replace(b"n" * MAX_NAME_LENGTH, b"n" * (MAX_NAME_LENGTH + 1))
    with pytest.raises(ProtocolError):
        wg.decode(data)
    with pytest.raises(ProtocolError):
        wg.decode(b"NOTIFY * HTTP/1.1\r\n" + b"X: y\r\n" * 1000 + b"\r\n")


def test_cjk_name_is_cut_to_fit_a_header_line() -> None:
    msg = wg.PeerDeviceGroupAdvertisement(GID, DEV, 60, "客" * MAX_NAME_LENGTH)
    decoded = wg.decode(wg.encode(msg, host=HOST))
    assert isinstance(decoded, wg.PeerDeviceGroupAdvertisement)
    assert 0 < len(decoded.name) < MAX_NAME_LENGTH and set(decoded.name) == {"客"}


def test_discovery_datagrams_are_not_group_datagrams() -> None:
    from igrs.wire import isdp

    adv = isdp.encode(isdp.DeviceOnlineAdvertisement(DEV, DeviceType("TV"), "http://10.0.0.1:3880/IGRS", 60,
                                                     "DeviceGroup fan"), host=HOST)
    search = isdp.encode(isdp.SearchDeviceRequest(isdp.SearchTarget.all(), 2), host=HOST)
    for data in (adv, search, b"garbage"):
        assert not wg.is_group_datagram(data)
    with pytest.raises(wg.NotGroupDatagram):
        wg.decode(adv)


def test_foreign_group_search_without_extension_headers() -> None:
    data = (b"M-SEARCH * HTTP/1.1\r\nHOST: 224.0.0.110:3880\r\nMAN: \"ssdp:discover\"\r\nMX: 9\r\n"
            b"ST: URN:IGRS:DEVICEGROUP:3C1E9A52-0D4B-4F7E-B6A1-5E2D8C9F0A13\r\n\r\n")
    msg = wg.decode(data)
    assert msg == wg.SearchDeviceGroupRequest(GID, 5, None)  # id canonicalised, MX clamped


def test_group_ids() -> None:
    assert str(wg.GroupId.parse(str(GID).upper().replace("URN:IGRS:DEVICEGROUP:", "urn:igrs:devicegroup:"))) \
        == str(GID)
    assert str(wg.GroupId.parse("urn:IGRS:DeviceGroup:home-1")) == "urn:IGRS:DeviceGroup:home-1"
    for bad in ("urn:IGRS:DeviceGroup:", "urn:IGRS:DeviceGroup:all", "urn:IGRS:DeviceGroup:a b",
                "urn:IGRS:Device:DeviceId:x", "urn:IGRS:DeviceGroup:" + "x" * 300):
        with pytest.raises(ProtocolError):
            wg.GroupId.parse(bad)
    assert str(wg.GroupId.new()).startswith("urn:IGRS:DeviceGroup:")
    assert GROUP_ST_ALL.endswith(":all")


# --- codec: SOAP bodies ------------------------------------------------------------------------
BODIES: dict[str, messages.SoapMessage] = {
    "join": JoinCentralisedDeviceGroupRequest(GID, "Phone"),
    "join_noname": JoinCentralisedDeviceGroupRequest(GID),
    "join_ok": JoinCentralisedDeviceGroupResponse(Status(7), GID, "Kitchen", 1800, (CP,)),
    "join_ok_empty": JoinCentralisedDeviceGroupResponse(Status(7), GID, "", 60, ()),
    "join_refused": JoinCentralisedDeviceGroupResponse(Status(7, ReturnCode.FORBIDDEN, "no"), GID, "Kitchen"),
    "quit": QuitCentralisedDeviceGroupNotify(GID),
    "quit_dissolved": QuitCentralisedDeviceGroupNotify(GID, dissolved=True),
}


@pytest.mark.parametrize("name", sorted(BODIES))
def test_body_round_trip(name: str) -> None:
    message = BODIES[name]
    headers, payload = messages.encode(message, source=DEV, target=CP, sequence_id=5)
    frame = messages.decode(Headers(headers), payload)
    assert frame.message == message
    assert frame.routing.message_type == message.message_type


BAD_BODIES: dict[str, tuple[str, bytes, bytes]] = {
    "join": ("join", b"urn:IGRS:DeviceGroup:3c1e", b"urn:IGRS:Devicegrp:3c1e"),
    "join_ok_lease": ("join_ok", b"<LeaseTime>1800</LeaseTime>", b"<LeaseTime>0</LeaseTime>"),
    "join_ok_no_lease": ("join_ok", b"<LeaseTime>1800</LeaseTime>", b""),
    "join_ok_member": ("join_ok", b"<MemberDeviceId>urn:IGRS:Device:DeviceId:", b"<MemberDeviceId>x"),
    "join_refused_code": ("join_refused", b"<ReturnCode>403</ReturnCode>", b"<ReturnCode>no</ReturnCode>"),
    "quit": ("quit", b"<DeviceGroupId>", b"<GroupId>"),
    "quit_dissolved": ("quit_dissolved", b"<Dissolved>true", b"<Dissolved>yes"),
}


@pytest.mark.parametrize("name", sorted(BAD_BODIES))
def test_malformed_body_is_refused(name: str) -> None:
    sample, old, new = BAD_BODIES[name]
    headers, payload = messages.encode(BODIES[sample], source=DEV, target=CP, sequence_id=5)
    payload = _mutate(payload, old, new)
    with pytest.raises(ProtocolError):
        messages.decode(Headers(headers), payload)


def test_too_many_members_refused() -> None:
    many = tuple(DeviceId.new() for _ in range(65))
    headers, payload = messages.encode(JoinCentralisedDeviceGroupResponse(Status(1), GID, "", 60, ()),
                                       source=DEV, target=CP, sequence_id=5)
    items = b"".join(b"<MemberDeviceId>%s</MemberDeviceId>" % str(m).encode() for m in many)
    payload = payload.replace(b"<MemberList/>", b"<MemberList>" + items + b"</MemberList>")
    with pytest.raises(ProtocolError):
        messages.decode(Headers(headers), payload)


# --- a fake LAN of DeviceGroups machines --------------------------------------------------------
class Lan:
    """Routes actions between machines, with fake time; SOAP goes through the real codec."""

    def __init__(self) -> None:
        self.now = 0.0
        self.nodes: dict[DeviceId, tuple[cg.DeviceGroups, str]] = {}
        self.events: dict[DeviceId, list[cg.GroupEvent]] = {}
        self.down: set[DeviceId] = set()
        self.multicast_lost = False
        self.sent: list[tuple[DeviceId, cg.Action]] = []

    def add(self, n: int, **kw: object) -> cg.DeviceGroups:
        dev = cg.DeviceGroups(DeviceId.new(), f"dev{n}", rng=random.Random(n), **kw)  # type: ignore[arg-type]
        addr = f"10.77.1.{10 + n}"
        dev.set_interfaces([Interface.from_cidr("eth0", f"{addr}/24")])
        self.nodes[dev.device_id] = (dev, addr)
        self.events[dev.device_id] = []
        return dev

    def apply(self, dev: cg.DeviceGroups, out: cg.Out) -> cg.Out:
        self.events[dev.device_id] += out.events
        for action in out.actions:
            self.sent.append((dev.device_id, action))
            self.deliver(dev, action)
        return out

    def deliver(self, sender: cg.DeviceGroups, action: cg.Action) -> None:
        if sender.device_id in self.down:
            return
        addr = self.nodes[sender.device_id][1]
        if isinstance(action, SendMulticast):
            if self.multicast_lost:
                return
            for other, _ in list(self.nodes.values()):
                if other is not sender and other.device_id not in self.down:
                    self.apply(other, other.on_datagram(action.payload, (addr, 3880), "eth0", self.now))
        elif isinstance(action, SendUnicast):
            for other, oaddr in list(self.nodes.values()):
                if oaddr == action.address[0] and other.device_id not in self.down:
                    self.apply(other, other.on_datagram(action.payload, (addr, 3880), "eth0", self.now))
        else:
            target = self.nodes.get(action.device_id)
            if target is None or action.device_id in self.down:
                self.apply(sender, sender.on_request_failed(action.device_id, action.message, self.now))
                return
            headers, body = messages.encode(action.message, source=sender.device_id, target=action.device_id,
                                            sequence_id=9)
            frame = messages.decode(Headers(headers), body)
            response, out = target[0].on_request(frame, self.now, address=addr)
            self.apply(target[0], out)
            if response is not None:
                rh, rb = messages.encode(response, source=action.device_id, target=sender.device_id,
                                         sequence_id=3)
                reply = messages.decode(Headers(rh), rb).message
                self.apply(sender, sender.on_response(action.device_id, reply, self.now))

    def run(self, until: float) -> None:
        while True:
            due = [(d, dev) for dev, _ in self.nodes.values()
                   if dev.device_id not in self.down and (d := dev.next_deadline()) is not None and d <= until]
            if not due:
                break
            deadline, dev = min(due, key=lambda x: x[0])
            self.now = max(self.now, deadline)
            self.apply(dev, dev.poll(self.now))
        self.now = until

    def kinds(self, dev: cg.DeviceGroups) -> list[str]:
        return [type(e).__name__ for e in self.events[dev.device_id]]

    def of(self, dev: cg.DeviceGroups, kind: type) -> list:
        return [e for e in self.events[dev.device_id] if isinstance(e, kind)]


@pytest.fixture
def lan() -> Lan:
    return Lan()


# --- peer-to-peer groups -----------------------------------------------------------------------
class TestPeerGroups:
    def test_create_advertises_twice_then_periodically(self, lan: Lan) -> None:
        a = lan.add(1, max_age=100)
        gid, out = a.create_peer("Den", 0.0)
        lan.apply(a, out)
        assert lan.kinds(a) == ["GroupFormed", "JoinedGroupsChanged"]
        assert a.joined_groups() == [GroupRef(str(gid), "Den")]
        lan.run(60.0)
        advs = [act for sender, act in lan.sent if isinstance(act, SendMulticast)]
        assert len(advs) == STARTUP_COPIES + 1  # 2 at start, 1 re-advertisement in [40, 50] s
        assert all(isinstance(wg.decode(x.payload), wg.PeerDeviceGroupAdvertisement) for x in advs)

    def test_join_members_see_each_other_and_quit(self, lan: Lan) -> None:
        a, b = lan.add(1, max_age=100), lan.add(2, max_age=100)
        gid, out = a.create_peer("Den", 0.0)
        lan.apply(a, out)
        assert b.registry.get(gid) is not None and b.registry.get(gid).name == "Den"
        lan.apply(b, b.join_peer(gid, 0.5))
        assert b.get(gid).name == "Den"
        assert [e.device_id for e in lan.of(a, cg.MemberJoined)] == [b.device_id]
        lan.run(60.0)  # b hears a's re-advertisement
        assert a.device_id in b.get(gid).members
        lan.apply(b, b.leave(gid, lan.now))
        assert lan.of(b, cg.GroupLeft)
        assert [(e.device_id, e.reason) for e in lan.of(a, cg.MemberLeft)] == [(b.device_id, "quit")]
        assert b.joined_groups() == []

    def test_silent_member_expires(self, lan: Lan) -> None:
        a, b = lan.add(1, max_age=100), lan.add(2, max_age=100)
        gid, out = a.create_peer("Den", 0.0)
        lan.apply(a, out)
        lan.apply(b, b.join_peer(gid, 0.0))
        lan.down.add(b.device_id)
        lan.run(200.0)
        assert [(e.device_id, e.reason) for e in lan.of(a, cg.MemberLeft)] == [(b.device_id, "expired")]

    def test_spoofed_quit_from_another_address_is_ignored(self, lan: Lan) -> None:
        a, b = lan.add(1), lan.add(2)
        gid, out = a.create_peer("Den", 0.0)
        lan.apply(a, out)
        lan.apply(b, b.join_peer(gid, 0.0))
        spoof = wg.encode(wg.QuitPeerDeviceGroupNotify(gid, b.device_id), host=HOST)
        lan.apply(a, a.on_datagram(spoof, ("10.77.1.99", 3880), "eth0", 1.0))
        assert b.device_id in a.get(gid).members
        assert a.drops.reasons["quit_mismatch"] == 1


# --- centralised groups ------------------------------------------------------------------------
Central = tuple[wg.GroupId, cg.DeviceGroups, list[cg.DeviceGroups]]


def central(lan: Lan, slaves: int = 1, **kw: object) -> Central:
    master = lan.add(1, **kw)
    gid, out = master.create_centralised("Kitchen", lan.now)
    lan.apply(master, out)
    others = [lan.add(2 + i, **kw) for i in range(slaves)]
    for s in others:
        lan.apply(s, s.join(gid, master.device_id, lan.now))
    return gid, master, others


class TestCentralisedGroups:
    def test_join_accepted(self, lan: Lan) -> None:
        gid, master, (s,) = central(lan)
        assert [e.device_id for e in lan.of(master, cg.MemberJoined)] == [s.device_id]
        info = s.get(gid)
        assert info.state is cg.State.JOINED and info.name == "Kitchen" and info.master == master.device_id
        assert s.joined_groups() == [GroupRef(str(gid), "Kitchen")]
        assert master.get(gid).members == (s.device_id,)
        assert lan.kinds(s) == ["GroupJoined", "JoinedGroupsChanged"]

    def test_members_listed_to_later_joiners(self, lan: Lan) -> None:
        gid, _master, (s1, s2) = central(lan, slaves=2)
        assert s2.get(gid).members == (s1.device_id,)

    def test_policy_refuses(self, lan: Lan) -> None:
        seen: list[cg.JoinContext] = []

        def policy(ctx: cg.JoinContext) -> bool:
            seen.append(ctx)
            return False

        master = lan.add(1, policy=policy)
        gid, out = master.create_centralised("Kitchen", 0.0)
        lan.apply(master, out)
        s = lan.add(2)
        lan.apply(s, s.join(gid, master.device_id, 0.0))
        (refused,) = lan.of(s, cg.JoinRefused)
        assert refused.return_code == ReturnCode.FORBIDDEN
        assert s.get(gid) is None and s.joined_groups() == []
        assert seen[0].device_id == s.device_id and seen[0].device_name == "dev2"

    def test_raising_policy_refuses(self, lan: Lan) -> None:
        master = lan.add(1, policy=lambda ctx: 1 / 0)
        gid, out = master.create_centralised("K", 0.0)
        lan.apply(master, out)
        s = lan.add(2)
        lan.apply(s, s.join(gid, master.device_id, 0.0))
        assert lan.of(s, cg.JoinRefused)[0].return_code == ReturnCode.FORBIDDEN

    def test_unknown_group_and_full_group(self, lan: Lan) -> None:
        master = lan.add(1, max_members=1)
        gid, out = master.create_centralised("K", 0.0)
        lan.apply(master, out)
        s1, s2, s3 = lan.add(2), lan.add(3), lan.add(4)
        lan.apply(s1, s1.join(wg.GroupId.new(), master.device_id, 0.0))
        assert lan.of(s1, cg.JoinRefused)[0].return_code == ReturnCode.NOT_FOUND
        lan.apply(s2, s2.join(gid, master.device_id, 0.0))
        lan.apply(s3, s3.join(gid, master.device_id, 0.0))
        assert lan.of(s2, cg.GroupJoined)
        assert lan.of(s3, cg.JoinRefused)[0].return_code == ReturnCode.BUSY

    def test_no_answer_is_a_refusal(self, lan: Lan) -> None:
        master = lan.add(1)
        s = lan.add(2)
        gid = wg.GroupId.new()
        out = s.join(gid, master.device_id, 0.0)
        (req,) = out.actions  # never delivered
        assert isinstance(req, cg.SendRequest)
        lan.run(GROUP_JOIN_TIMEOUT + 1)
        assert lan.of(s, cg.JoinRefused)[0].return_code == ReturnCode.BUSY
        assert s.get(gid) is None

    def test_slave_leaves(self, lan: Lan) -> None:
        gid, master, (s,) = central(lan)
        lan.apply(s, s.leave(gid, 1.0))
        assert [(e.device_id, e.reason) for e in lan.of(master, cg.MemberLeft)] == [(s.device_id, "quit")]
        assert master.get(gid).members == ()

    def test_master_removes_a_slave(self, lan: Lan) -> None:
        gid, master, (s,) = central(lan)
        lan.apply(master, master.remove_member(gid, s.device_id, 1.0))
        assert [e.reason for e in lan.of(s, cg.GroupDissolved)] == ["removed"]
        assert s.joined_groups() == []

    def test_master_dissolves(self, lan: Lan) -> None:
        gid, master, (s1, s2) = central(lan, slaves=2)
        lan.apply(master, master.dissolve(gid, 1.0))
        for s in (s1, s2):
            assert [e.reason for e in lan.of(s, cg.GroupDissolved)] == ["dissolved"]
            assert s.joined_groups() == []
        assert master.joined_groups() == []
        # the multicast quit alone also dissolves (the unicast notify lost)
        lan2 = Lan()
        gid, master, (s,) = central(lan2)
        lan2.apply(master, master.create_peer("unrelated", 0.0)[1])
        lan2.multicast_lost = False
        out = master.dissolve(gid, 1.0)
        multicast = [a for a in out.actions if isinstance(a, SendMulticast)]
        for a in multicast:
            lan2.apply(s, s.on_datagram(a.payload, ("10.77.1.11", 3880), "eth0", 1.0))
        assert [e.reason for e in lan2.of(s, cg.GroupDissolved)] == ["dissolved"]

    def test_spoofed_dissolution_is_verified_with_the_master(self, lan: Lan) -> None:
        gid, master, (s,) = central(lan)
        spoof = wg.encode(wg.QuitCentralisedDeviceGroupAdvertisement(gid, master.device_id), host=HOST)
        out = lan.apply(s, s.on_datagram(spoof, ("10.77.1.99", 3880), "eth0", 1.0))
        assert s.get(gid).state is cg.State.JOINED  # the master confirmed the membership
        assert s.drops.reasons["quit_unverified"] == 1
        assert any(isinstance(a, cg.SendRequest) for a in out.actions)

    def test_lease_renewal_keeps_slave_and_expiry_drops_it(self, lan: Lan) -> None:
        gid, master, (s,) = central(lan, lease=100, max_age=100)
        lan.multicast_lost = True  # renewals alone keep both sides in step
        lan.run(1000.0)
        assert s.get(gid).state is cg.State.JOINED and master.get(gid).members == (s.device_id,)
        renewals = [a for snd, a in lan.sent if snd == s.device_id and isinstance(a, cg.SendRequest)]
        assert 18 <= len(renewals) <= 26  # every 40-50 s
        lan.down.add(s.device_id)  # the slave vanishes without a word
        lan.run(1200.0)
        assert [(e.device_id, e.reason) for e in lan.of(master, cg.MemberLeft)] == [(s.device_id, "expired")]

    def test_renewal_answered_404_means_dissolved(self, lan: Lan) -> None:
        gid, master, (s,) = central(lan, lease=100)
        master.memberships.forget_group(gid)  # the master forgot the group (restarted without it)
        lan.run(60.0)
        assert [e.reason for e in lan.of(s, cg.GroupDissolved)] == ["dissolved"]

    def test_master_does_not_join_itself_and_caps_local_groups(self, lan: Lan) -> None:
        a = lan.add(1, max_local=2)
        gid, _ = a.create_centralised("x", 0.0)
        with pytest.raises(cg.GroupError):
            a.join(gid, a.device_id, 0.0)
        a.create_peer("y", 0.0)
        with pytest.raises(cg.GroupError):
            a.create_peer("z", 0.0)
        with pytest.raises(cg.GroupError):
            a.create_peer("y", 0.0, group_id=gid)


# --- master loss -------------------------------------------------------------------------------
class TestMasterLoss:
    def test_silent_master_is_lost_then_group_dissolves(self, lan: Lan) -> None:
        gid, master, (s,) = central(lan, lease=100, max_age=100)
        lan.down.add(master.device_id)
        lan.run(99.0)
        assert not lan.of(s, cg.MasterLost)
        lan.run(101.0)
        (lost,) = lan.of(s, cg.MasterLost)
        assert lost.master == master.device_id and lost.reason == "silent"
        assert s.get(gid).state is cg.State.ORPHANED
        assert s.joined_groups() == []  # no longer claims membership in its description
        lan.run(100.0 + GROUP_REJOIN_WINDOW - 1)
        assert not lan.of(s, cg.GroupDissolved)
        attempts = [a for snd, a in lan.sent if snd == s.device_id and isinstance(a, cg.SendRequest)]
        assert len(attempts) >= GROUP_REJOIN_WINDOW // GROUP_RETRY_DELAY - 1  # it keeps trying
        lan.run(100.0 + GROUP_REJOIN_WINDOW + 1)
        assert [e.reason for e in lan.of(s, cg.GroupDissolved)] == ["master_lost"]
        assert s.get(gid) is None

    def test_reported_loss_and_master_return_with_same_group(self, lan: Lan) -> None:
        gid, master, (s1, s2) = central(lan, slaves=2)
        # the master reboots: the I/O layer reports it gone (byebye or keep-alive time-out)
        lan.down.add(master.device_id)
        for s in (s1, s2):
            lan.apply(s, s.peer_lost(master.device_id, 10.0))
            assert [e.reason for e in lan.of(s, cg.MasterLost)] == ["lost"]
        lan.now = 60.0
        # it comes back and its application re-creates the group under the same id
        lan.down.discard(master.device_id)
        reborn = cg.DeviceGroups(master.device_id, "dev1", rng=random.Random(9))
        reborn.set_interfaces([Interface.from_cidr("eth0", "10.77.1.11/24")])
        lan.nodes[master.device_id] = (reborn, "10.77.1.11")
        lan.events[master.device_id] = []
        _, out = reborn.create_centralised("Kitchen", 60.0, group_id=gid)
        lan.apply(reborn, out)  # its advertisement makes the orphans re-join at once
        for s in (s1, s2):
            assert len(lan.of(s, cg.MasterReturned)) == 1
            assert s.get(gid).state is cg.State.JOINED
            assert s.joined_groups() == [GroupRef(str(gid), "Kitchen")]
        assert set(reborn.get(gid).members) == {s1.device_id, s2.device_id}

    def test_master_back_without_the_group(self, lan: Lan) -> None:
        gid, master, (s,) = central(lan)
        lan.apply(s, s.peer_lost(master.device_id, 10.0))
        master.memberships.forget_group(gid)
        lan.run(10.0 + GROUP_RETRY_DELAY + 1)  # the retry reaches a master that says 404
        assert [e.reason for e in lan.of(s, cg.GroupDissolved)] == ["dissolved"]

    def test_other_device_claiming_the_group_is_ignored(self, lan: Lan) -> None:
        gid, master, (s,) = central(lan)
        lan.apply(s, s.peer_lost(master.device_id, 10.0))
        claim = wg.CentralisedDeviceGroupAdvertisement(gid, DeviceId.new(), 1800, "Kitchen")
        impostor = wg.encode(claim, host=HOST)
        out = s.on_datagram(impostor, ("10.77.1.50", 3880), "eth0", 11.0)
        assert out.actions == [] and s.drops.reasons["master_conflict"] == 1

    def test_slave_loss_reported_to_master(self, lan: Lan) -> None:
        _gid, master, (s,) = central(lan)
        lan.apply(master, master.peer_lost(s.device_id, 5.0))
        assert [(e.device_id, e.reason) for e in lan.of(master, cg.MemberLeft)] == [(s.device_id, "lost")]


# --- search and registry -----------------------------------------------------------------------
class TestSearch:
    def test_search_all_and_one(self, lan: Lan) -> None:
        a, m, searcher = lan.add(1), lan.add(2), lan.add(3)
        lan.multicast_lost = True  # the searcher hears no advertisements, only answers
        pid, out = a.create_peer("Den", 0.0)
        lan.apply(a, out)
        cid, out = m.create_centralised("Kitchen", 0.0)
        lan.apply(m, out)
        lan.multicast_lost = False
        for action in searcher.search(1.0, None, mx=1).actions:
            lan.deliver(searcher, action)
        lan.run(3.0)
        found = {g.group_id: g for g in searcher.registry.groups}
        assert set(found) == {pid, cid}
        assert found[cid].kind is wg.GroupKind.CENTRALISED and found[cid].master == m.device_id
        assert found[pid].kind is wg.GroupKind.PEER and found[pid].members == {a.device_id}
        assert [type(e).__name__ for e in lan.events[searcher.device_id]].count("GroupAppeared") == 2
        before = len(lan.sent)
        for action in searcher.search(4.0, pid, mx=1).actions:
            lan.deliver(searcher, action)
        lan.run(7.0)
        answers = [act for snd, act in lan.sent[before:] if isinstance(act, SendUnicast)]
        assert {snd for snd, act in lan.sent[before:] if isinstance(act, SendUnicast)} == {a.device_id}
        assert all(wg.decode(x.payload).group_id == pid for x in answers)

    def test_slaves_do_not_answer_for_the_master(self, lan: Lan) -> None:
        gid, master, (_s,) = central(lan)
        searcher = lan.add(9)
        before = len(lan.sent)
        for action in searcher.search(1.0, gid, mx=1).actions:
            lan.deliver(searcher, action)
        lan.run(4.0)
        responders = {snd for snd, act in lan.sent[before:] if isinstance(act, SendUnicast)}
        assert responders == {master.device_id}

    def test_responder_limits(self, lan: Lan) -> None:
        a = lan.add(1)
        for i in range(10):
            lan.apply(a, a.create_peer(f"group {i}", 0.0)[1])
        req = wg.encode(wg.SearchDeviceGroupRequest(None, 1, CP), host=HOST)
        a.on_datagram(req, ("10.77.1.50", 4000), "eth0", 1.0)
        out = a.poll(3.0)
        answers = [x for x in out.actions if isinstance(x, SendUnicast)]
        assert 1 <= len(answers) < 10 and a.drops.reasons["byte_cap"] == 1
        assert sum(len(x.payload) for x in answers) <= 2048
        a.on_datagram(req, ("192.0.2.1", 4000), "eth0", 4.0)
        assert a.drops.reasons["off_subnet"] == 1
        for i in range(30):
            a.on_datagram(req, ("10.77.1.51", 5000 + i), "eth0", 5.0)
        assert a.drops.reasons["requester_rate"] > 0
        own = wg.encode(wg.SearchDeviceGroupRequest(None, 1, a.device_id), host=HOST)
        a.on_datagram(own, ("10.77.1.11", 4000), "eth0", 6.0)

    def test_registry_expiry_quit_caps_and_conflicts(self) -> None:
        reg = cg.GroupRegistry(DEV, max_groups=2, max_members=2)
        src = ("10.0.0.5", 3880)
        m1, m2, m3 = DeviceId.new(), DeviceId.new(), DeviceId.new()
        g1, g2, g3 = wg.GroupId.new(), wg.GroupId.new(), wg.GroupId.new()
        assert isinstance(reg.on_message(wg.PeerDeviceGroupAdvertisement(g1, m1, 10, "a"), src, 0.0)[0],
                          cg.GroupAppeared)
        second = wg.PeerDeviceGroupAdvertisement(g1, m2, 20, "a")
        assert isinstance(reg.on_message(second, ("10.0.0.6", 3880), 0.0)[0], cg.GroupUpdated)
        assert reg.on_message(wg.PeerDeviceGroupAdvertisement(g1, m3, 20, "a"), src, 0.0) == []
        assert reg.drops.reasons["members_full"] == 1
        reg.on_message(wg.CentralisedDeviceGroupAdvertisement(g2, m1, 100, "b"), src, 0.0)
        assert reg.on_message(wg.CentralisedDeviceGroupAdvertisement(g2, m2, 100, "b"), src, 0.0) == []
        assert reg.drops.reasons["master_conflict"] == 1
        assert reg.on_message(wg.PeerDeviceGroupAdvertisement(g2, m2, 100, "b"), src, 0.0) == []
        assert reg.drops.reasons["kind_conflict"] == 1
        assert reg.on_message(wg.PeerDeviceGroupAdvertisement(g3, m1, 100), src, 0.0) == []
        assert reg.drops.reasons["registry_full"] == 1
        # member m1 expires at 10, the group at 20
        assert isinstance(reg.poll(10.0)[0], cg.GroupUpdated)
        gone = reg.poll(20.0)
        assert isinstance(gone[0], cg.GroupGone) and gone[0].reason == "expired"
        # a dissolution from a foreign address is ignored; from the master's it removes the group
        assert reg.on_message(wg.QuitCentralisedDeviceGroupAdvertisement(g2, m1), ("10.0.0.9", 1), 1.0) == []
        (ev,) = reg.on_message(wg.QuitCentralisedDeviceGroupAdvertisement(g2, m1), src, 1.0)
        assert isinstance(ev, cg.GroupGone) and ev.reason == "dissolved"
        # an answer addressed to another searcher is not ours
        resp = wg.SearchDeviceGroupResponse(g3, m1, wg.GroupKind.PEER, 10, None, requester=CP)
        assert reg.on_message(resp, src, 2.0) == [] and reg.drops.reasons["not_for_us"] == 1


# --- robustness and description --------------------------------------------------------------
def test_malformed_datagrams_are_counted_not_raised(lan: Lan) -> None:
    a = lan.add(1)
    samples = [wg.encode(m, host=HOST) for m in DATAGRAMS.values()]
    rng = random.Random(5)
    for i in range(300):
        data = bytearray(rng.choice(samples))
        for _ in range(rng.randint(1, 8)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        a.on_datagram(bytes(data), ("10.77.1.50", 3880 + i), "eth0", float(i))
    bad = _mutate(samples[0], b"NTS: isdp:alive", b"NTS: nonsense")
    a.on_datagram(bad, ("10.77.1.50", 3880), "eth0", 400.0)
    assert a.drops.reasons["malformed"] >= 1
    v2 = _mutate(samples[0], b"IGRS/1.0\r\n01-IGRSMessageType", b"IGRS/2.0\r\n01-IGRSMessageType")
    a.on_datagram(v2, ("10.77.1.50", 3880), "eth0", 401.0)
    assert a.drops.reasons["unsupported_version"] == 1


def test_source_rate_limit(lan: Lan) -> None:
    a = lan.add(1)
    data = wg.encode(wg.PeerDeviceGroupAdvertisement(GID, DEV, 60), host=HOST)
    for _ in range(400):
        a.on_datagram(data, ("10.77.1.50", 3880), "eth0", 0.0)
    assert a.drops.reasons["source_rate"] > 0


def test_joined_groups_go_into_the_description(lan: Lan) -> None:
    gid, _master, (s,) = central(lan)
    pid, out = s.create_peer("Den", 1.0)
    desc = DeviceDescription(s.device_id, DeviceType("TV"), "TV", groups=tuple(s.joined_groups()))
    parsed = from_bytes(to_bytes(desc))
    assert [g.group_id for g in parsed.groups] == [str(gid), str(pid)]
    assert [g.name for g in parsed.groups] == ["Kitchen", "Den"]
    changes = lan.of(s, cg.JoinedGroupsChanged)
    assert changes[-1].groups == (GroupRef(str(gid), "Kitchen"),)
    assert [type(e).__name__ for e in out.events] == ["GroupFormed", "JoinedGroupsChanged"]


def test_stop_leaves_everything(lan: Lan) -> None:
    gid, master, (s,) = central(lan)
    _pid, out = s.create_peer("Den", 0.0)
    lan.apply(s, out)
    out = lan.apply(s, s.stop(5.0))
    assert s.joined_groups() == []
    kinds = {type(a.message).__name__ if isinstance(a, cg.SendRequest) else type(wg.decode(a.payload)).__name__
             for a in out.actions}
    assert kinds == {"QuitCentralisedDeviceGroupNotify", "QuitPeerDeviceGroupNotify"}
    assert master.get(gid).members == ()
    late = s.poll(5.0 + COPY_SPACING)
    assert [type(wg.decode(a.payload)).__name__ for a in late.actions] == ["QuitPeerDeviceGroupNotify"]


def test_frame_helpers_reject_non_group_request(lan: Lan) -> None:
    a = lan.add(1)
    frame = Frame(Routing("GetDeviceDescriptionRequest", DEV, None, 1), messages.GetDeviceDescriptionRequest())
    with pytest.raises(ProtocolError):
        a.on_request(frame, 0.0)


# --- XSD (specs/schemas/igrs-groups.xsd) ---------------------------------------------------------
def test_bodies_validate_against_the_xsd() -> None:
    from pathlib import Path

    import xmlschema
    from lxml import etree

    from igrs.constants import GROUP_MAX_MEMBERS

    root = Path(__file__).resolve().parents[2]
    xsd = root / "specs" / "schemas" / "igrs-groups.xsd"
    assert (root / "igrs" / "schemas" / "igrs-groups.xsd").read_bytes() == xsd.read_bytes()
    validators = [xmlschema.XMLSchema(str(xsd)).is_valid, etree.XMLSchema(etree.parse(str(xsd))).validate]
    for message in BODIES.values():
        body = message.body()
        for validate in validators:
            assert validate(body), message
    bad = QuitCentralisedDeviceGroupNotify(GID).body()
    bad[0].text = "urn:IGRS:DeviceGroup:nope"
    assert not any(v(bad) for v in validators)
    assert GROUP_MAX_MEMBERS == 64  # maxOccurs in the XSD
