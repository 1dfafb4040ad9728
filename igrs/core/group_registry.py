"""The groups heard on the LAN (specs/groups.md §5.6) and the search that asks for them
(§3.5), sans-IO. The registry is fed by group advertisements, quits and search answers; each
member expires at its own max-age (an ``ExpiryQueue``, so a datagram costs the same whatever
the number of groups heard)."""

from __future__ import annotations

from dataclasses import dataclass, field

from igrs.constants import (
    DEFAULT_MX,
    GROUP_MAX_MEMBERS,
    GROUP_REGISTRY_MAX,
    IGRS_PORT,
    MAX_MX,
    MAX_TRACKED_SOURCES,
    SEARCH_RETRIES,
    SOURCE_BURST,
    SOURCE_RATE,
    ReturnCode,
)
from igrs.core.datagram_schedule import (
    Address,
    DropCounter,
    Interface,
    SearchRepeats,
    SendMulticast,
    earliest,
    group_host,
)
from igrs.core.group_events import GroupAppeared, GroupEvent, GroupGone, GroupRecord, GroupUpdated
from igrs.core.ratelimit import KeyedRateLimiter
from igrs.core.timers import ExpiryQueue
from igrs.errors import ProtocolError
from igrs.wire import group_datagrams as wg
from igrs.wire.group_datagrams import GroupId, GroupKind
from igrs.wire.ids import DeviceId


@dataclass(slots=True)
class _Heard:
    group_id: GroupId
    kind: GroupKind
    name: str
    master: DeviceId | None
    first_seen: float
    members: dict[DeviceId, tuple[float, float, str]] = field(default_factory=dict)  # last, expires, addr
    member_count: int | None = None

    def record(self) -> GroupRecord:
        return GroupRecord(
            self.group_id, self.kind, self.name, self.master, frozenset(self.members),
            frozenset(a for _, _, a in self.members.values()), self.first_seen,
            max((s for s, _, _ in self.members.values()), default=self.first_seen),
            max((e for _, e, _ in self.members.values()), default=self.first_seen),
            self.member_count,
        )


class GroupRegistry:
    """Groups heard by advertisements and search answers, with expiry and caps."""

    def __init__(self, device_id: DeviceId | None, *, max_groups: int = GROUP_REGISTRY_MAX,
                 max_members: int = GROUP_MAX_MEMBERS, drops: DropCounter | None = None) -> None:
        self.device_id = device_id
        self.max_groups = max_groups
        self.max_members = max_members
        self.drops = drops or DropCounter()
        self._groups: dict[GroupId, _Heard] = {}
        self._expiry: ExpiryQueue[tuple[GroupId, DeviceId]] = ExpiryQueue()

    @property
    def groups(self) -> list[GroupRecord]:
        return [g.record() for g in self._groups.values()]

    def get(self, group_id: GroupId) -> GroupRecord | None:
        heard = self._groups.get(group_id)
        return heard.record() if heard else None

    def next_deadline(self) -> float | None:
        return self._expiry.next_deadline()

    def poll(self, now: float) -> list[GroupEvent]:
        expired: dict[GroupId, list[DeviceId]] = {}
        for gid, member in self._expiry.expired(now):
            expired.setdefault(gid, []).append(member)
        events: list[GroupEvent] = []
        for gid, members in expired.items():
            heard = self._groups.get(gid)
            if heard is None:
                continue
            before = heard.record()
            for m in members:
                heard.members.pop(m, None)
            if not heard.members:
                del self._groups[gid]
                events.append(GroupGone(before, "expired"))
            else:
                events.append(GroupUpdated(heard.record()))
        return events

    def on_message(self, msg: wg.GroupDatagram, source: Address, now: float) -> list[GroupEvent]:
        if isinstance(msg, wg.PeerDeviceGroupAdvertisement):
            return self._seen(msg.group_id, GroupKind.PEER, msg.name, None, msg.device_id, msg.max_age,
                              source[0], now)
        if isinstance(msg, wg.CentralisedDeviceGroupAdvertisement):
            return self._seen(msg.group_id, GroupKind.CENTRALISED, msg.name, msg.master_id, msg.master_id,
                              msg.max_age, source[0], now, msg.member_count)
        if isinstance(msg, wg.SearchDeviceGroupResponse):
            if msg.requester not in (None, self.device_id):
                self.drops.drop("not_for_us")
                return []
            if msg.kind is GroupKind.CENTRALISED and msg.device_id != msg.master_id:
                self.drops.drop("master_conflict")  # only the master answers for its group
                return []
            return self._seen(msg.group_id, msg.kind, msg.name, msg.master_id, msg.device_id, msg.max_age,
                              source[0], now, msg.member_count)
        if isinstance(msg, wg.QuitPeerDeviceGroupNotify | wg.QuitCentralisedDeviceGroupAdvertisement):
            return self._quit(msg, source, now)
        return []

    def _quit(self, msg: wg.QuitPeerDeviceGroupNotify | wg.QuitCentralisedDeviceGroupAdvertisement,
              source: Address, now: float) -> list[GroupEvent]:
        sender = msg.device_id if isinstance(msg, wg.QuitPeerDeviceGroupNotify) else msg.master_id
        heard = self._groups.get(msg.group_id)
        if heard is None or sender not in heard.members:
            return []
        if heard.members[sender][2] != source[0]:
            self.drops.drop("quit_mismatch")  # only the address a member was seen at may quit for it
            return []
        before = heard.record()
        if isinstance(msg, wg.QuitCentralisedDeviceGroupAdvertisement):
            if heard.master != sender:
                return []
            self._forget(heard)
            return [GroupGone(before, "dissolved")]
        del heard.members[sender]
        self._expiry.discard((msg.group_id, sender))
        if not heard.members:
            del self._groups[msg.group_id]
            return [GroupGone(before, "quit")]
        return [GroupUpdated(heard.record())]

    def _seen(self, group_id: GroupId, kind: GroupKind, name: str, master: DeviceId | None,
              member: DeviceId, max_age: int, address: str, now: float,
              member_count: int | None = None) -> list[GroupEvent]:
        heard = self._groups.get(group_id)
        if heard is None:
            if len(self._groups) >= self.max_groups:
                self.drops.drop("registry_full")
                return []
            heard = _Heard(group_id, kind, name, master, now, member_count=member_count)
            heard.members[member] = (now, now + max_age, address)
            self._groups[group_id] = heard
            self._expiry.set((group_id, member), now + max_age)
            return [GroupAppeared(heard.record())]
        if heard.kind is not kind:
            self.drops.drop("kind_conflict")
            return []
        if kind is GroupKind.CENTRALISED and heard.master != master:
            self.drops.drop("master_conflict")  # another device claims the group: first master wins
            return []
        if member not in heard.members and len(heard.members) >= self.max_members:
            self.drops.drop("members_full")
            return []
        before = heard.record()
        heard.members[member] = (now, now + max_age, address)
        self._expiry.set((group_id, member), now + max_age)
        if name:
            heard.name = name
        if member_count is not None:
            heard.member_count = member_count
        after = heard.record()
        if (before.name, before.members, before.addresses, before.member_count) != \
                (after.name, after.members, after.addresses, after.member_count):
            return [GroupUpdated(after)]
        return []

    def _forget(self, heard: _Heard) -> None:
        del self._groups[heard.group_id]
        for member in heard.members:
            self._expiry.discard((heard.group_id, member))

    def forget(self, group_id: GroupId) -> None:
        heard = self._groups.get(group_id)
        if heard is not None:
            self._forget(heard)


class GroupSearch:
    """The searching side of clause 9.8, for a device's groups and for a control point alike:
    ``SearchDeviceGroupRequest`` with its copies, and the ``GroupRegistry`` the answers and
    the advertisements heard feed. Datagrams pass a per-source rate limit before decoding."""

    def __init__(self, device_id: DeviceId, *, port: int = IGRS_PORT, registry: GroupRegistry | None = None,
                 drops: DropCounter | None = None) -> None:
        self.device_id = device_id
        self.port = port
        self.drops = drops or DropCounter()
        self.registry = registry or GroupRegistry(device_id, drops=self.drops)
        self._interfaces: dict[str, Interface] = {}
        self._repeats = SearchRepeats()
        self._sources = KeyedRateLimiter(SOURCE_RATE, SOURCE_BURST, MAX_TRACKED_SOURCES)

    def set_interfaces(self, interfaces: list[Interface]) -> None:
        self._interfaces = {i.name: i for i in interfaces}

    def search(self, now: float, target: GroupId | None = None, mx: int = DEFAULT_MX,
               retries: int = SEARCH_RETRIES) -> list[SendMulticast]:
        """Multicast SearchDeviceGroupRequest (``target`` None: every group) on every interface."""
        mx = min(max(mx, 1), MAX_MX)
        req = wg.SearchDeviceGroupRequest(target, mx, self.device_id)
        sends = tuple(SendMulticast(name, wg.encode(req, host=group_host(i, self.port)))
                      for name, i in self._interfaces.items())
        self._repeats.schedule(sends, mx, retries, now)
        return list(sends)

    def on_datagram(self, data: bytes, source: Address, now: float) -> tuple[wg.GroupDatagram | None,
                                                                              list[GroupEvent]]:
        """Rate-limit and decode a group datagram; feed the registry. Returns the message
        (None when dropped, not a group datagram, or this device's own) and the registry's
        events. A search request is returned, not registered: answering is not this part's job."""
        if not self._sources.allow(source, now):
            self.drops.drop("source_rate")
            return None, []
        try:
            msg = wg.decode(data)
        except wg.NotGroupDatagram:
            return None, []
        except ProtocolError as exc:
            self.drops.drop("unsupported_version" if exc.return_code == ReturnCode.VERSION_NOT_SUPPORTED
                            else "malformed")
            return None, []
        if isinstance(msg, wg.SearchDeviceGroupRequest):
            return msg, []
        sender = getattr(msg, "device_id", None) or getattr(msg, "master_id", None)
        if sender == self.device_id:
            return None, []  # our own, looped back
        return msg, self.registry.on_message(msg, source, now)

    def next_deadline(self) -> float | None:
        return earliest(self._repeats.next_deadline(), self.registry.next_deadline())

    def poll(self, now: float) -> tuple[list[SendMulticast], list[GroupEvent]]:
        return self._repeats.due(now), self.registry.poll(now)
