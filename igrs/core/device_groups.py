"""Device groups (clauses 9.5 and 9.8), sans-IO. Rules: specs/groups.md.

``DeviceGroups`` is the group state of one device: the groups it created or joined
(peer-to-peer member, centralised master, centralised slave), the master's membership
table, the slave's lease and master-loss handling, the re-advertisement schedule, the
``SearchDeviceGroupRequest`` responder, and a ``GroupRegistry`` of the groups heard on the
LAN. Inputs carry ``now`` (monotonic seconds); outputs are ``Out(actions, events)``:

* actions: ``SendMulticast`` / ``SendUnicast`` (datagrams, the types of
  ``igrs.core.discovery`` that ``IsdpEndpoints.execute`` sends) and ``SendRequest`` (a
  unicast SOAP message to a device, which the I/O layer sends over a pipe; the answer comes
  back through ``on_response`` or ``on_request_failed``);
* events: the ``GroupEvent`` dataclasses below.

Timers: ``next_deadline()`` + ``poll(now)``, as in discovery.
"""

from __future__ import annotations

import ipaddress
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum

from igrs.constants import (
    COPY_SPACING,
    DEFAULT_MAX_AGE,
    DEFAULT_MX,
    GROUP_JOIN_TIMEOUT,
    GROUP_LEASE,
    GROUP_MAX_LOCAL,
    GROUP_MAX_MEMBERS,
    GROUP_REGISTRY_MAX,
    GROUP_REJOIN_WINDOW,
    GROUP_RETRY_DELAY,
    IGRS_PORT,
    MAX_MX,
    MAX_NAME_LENGTH,
    MAX_PENDING_RESPONSES,
    MAX_RESPONSE_BYTES_PER_REQUEST,
    MAX_TRACKED_SOURCES,
    REANNOUNCE_FRACTION,
    REANNOUNCE_JITTER,
    RESPONDER_BURST,
    RESPONDER_RATE,
    SEARCH_RETRIES,
    SOURCE_BURST,
    SOURCE_RATE,
    STARTUP_COPIES,
    ReturnCode,
)
from igrs.core.discovery import Address, DropCounter, Interface, SendMulticast, SendUnicast, _Timers, group_host
from igrs.core.ratelimit import KeyedRateLimiter
from igrs.errors import IGRSError, ProtocolError
from igrs.wire import group_datagrams as wg
from igrs.wire.bodies.groups import (
    GroupSoapMessage,
    JoinCentralisedDeviceGroupRequest,
    JoinCentralisedDeviceGroupResponse,
    QuitCentralisedDeviceGroupNotify,
)
from igrs.wire.description import GroupRef
from igrs.wire.group_datagrams import GroupId, GroupKind
from igrs.wire.ids import DeviceId
from igrs.wire.messages import Frame, Status


class GroupError(IGRSError):
    """A local group operation that cannot be done (unknown group, wrong role, caps)."""

    return_code = ReturnCode.CONFLICT


# --- actions -------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class SendRequest:
    """Send ``message`` (SOAP, unicast) to ``device_id``. For a join request, feed the answer
    to ``on_response`` (or ``on_request_failed`` if none came); notifies need no answer."""

    device_id: DeviceId
    message: GroupSoapMessage


Action = SendMulticast | SendUnicast | SendRequest


# --- events --------------------------------------------------------------------------------------
class Role(StrEnum):
    PEER = "peer"  # member of a peer-to-peer group
    MASTER = "master"  # master of a centralised group
    SLAVE = "slave"  # member of a centralised group


class State(StrEnum):
    JOINING = "joining"  # slave: join request sent, no answer yet
    JOINED = "joined"
    ORPHANED = "orphaned"  # slave: master lost, waiting GROUP_REJOIN_WINDOW for it to return


@dataclass(frozen=True, slots=True)
class GroupInfo:
    """A snapshot of one local group."""

    group_id: GroupId
    kind: GroupKind
    role: Role
    name: str
    master: DeviceId | None
    members: tuple[DeviceId, ...]  # master: its slaves; slave: as of the last answer; peer: others heard
    state: State

    @property
    def ref(self) -> GroupRef:
        return GroupRef(str(self.group_id), self.name)


@dataclass(frozen=True, slots=True)
class GroupFormed:
    group: GroupInfo  # this device created a group (peer member or centralised master)


@dataclass(frozen=True, slots=True)
class GroupJoined:
    group: GroupInfo  # this device joined (peer group; or the master accepted it)


@dataclass(frozen=True, slots=True)
class JoinRefused:
    group_id: GroupId
    master: DeviceId
    return_code: int  # 403 refused by policy, 404 no such group, 503 full or no answer ...
    reason: str = ""


@dataclass(frozen=True, slots=True)
class GroupLeft:
    group_id: GroupId  # this device left the group on its own


@dataclass(frozen=True, slots=True)
class GroupDissolved:
    group_id: GroupId
    reason: str  # "dissolved" (by its master) | "removed" (master removed us) | "master_lost"


@dataclass(frozen=True, slots=True)
class MemberJoined:
    group_id: GroupId
    device_id: DeviceId
    name: str = ""


@dataclass(frozen=True, slots=True)
class MemberLeft:
    group_id: GroupId
    device_id: DeviceId
    reason: str  # "quit" | "expired" | "removed" | "lost"


@dataclass(frozen=True, slots=True)
class MasterLost:
    group_id: GroupId
    master: DeviceId
    reason: str  # "silent" (no advertisement/renewal for the lease) | "lost" (reported by the I/O layer)


@dataclass(frozen=True, slots=True)
class MasterReturned:
    group: GroupInfo  # the lost master came back within GROUP_REJOIN_WINDOW and re-admitted us


@dataclass(frozen=True, slots=True)
class JoinedGroupsChanged:
    """``joined_groups()`` changed: re-announce the description (NTS isdp:update)."""

    groups: tuple[GroupRef, ...]


@dataclass(frozen=True, slots=True)
class GroupRecord:
    """A group heard on the LAN (registry snapshot)."""

    group_id: GroupId
    kind: GroupKind
    name: str
    master: DeviceId | None
    members: frozenset[DeviceId]  # peer: members heard; centralised: the master
    addresses: frozenset[str]
    first_seen: float
    last_seen: float
    expires_at: float


@dataclass(frozen=True, slots=True)
class GroupAppeared:
    group: GroupRecord


@dataclass(frozen=True, slots=True)
class GroupUpdated:
    group: GroupRecord


@dataclass(frozen=True, slots=True)
class GroupGone:
    group: GroupRecord
    reason: str  # "quit" (last peer member left) | "dissolved" | "expired"


GroupEvent = (
    GroupFormed | GroupJoined | JoinRefused | GroupLeft | GroupDissolved | MemberJoined | MemberLeft
    | MasterLost | MasterReturned | JoinedGroupsChanged | GroupAppeared | GroupUpdated | GroupGone
)


@dataclass(slots=True)
class Out:
    actions: list[Action] = field(default_factory=list)
    events: list[GroupEvent] = field(default_factory=list)

    def add(self, other: Out) -> Out:
        self.actions += other.actions
        self.events += other.events
        return self


@dataclass(frozen=True, slots=True)
class JoinContext:
    """What a master's join policy decides on."""

    group_id: GroupId
    device_id: DeviceId
    device_name: str
    member_count: int


JoinPolicy = Callable[[JoinContext], bool]


def allow_all(ctx: JoinContext) -> bool:
    return True


# --- internal state ------------------------------------------------------------------------------
@dataclass(slots=True)
class _Member:
    device_id: DeviceId
    name: str
    joined_at: float
    expires_at: float
    address: str | None = None


@dataclass(slots=True)
class _Local:
    group_id: GroupId
    kind: GroupKind
    role: Role
    name: str
    master: DeviceId | None
    state: State = State.JOINED
    members: dict[DeviceId, _Member] = field(default_factory=dict)
    known_members: tuple[DeviceId, ...] = ()  # slave: list from the last answer
    lease: float = GROUP_LEASE
    last_proof: float = 0.0  # slave: last sign of life of the master
    master_addresses: set[str] = field(default_factory=set)
    request_due: float | None = None  # slave: when to send the next join/renewal
    request_deadline: float | None = None  # slave: a request is out until then
    orphaned_at: float | None = None

    def info(self) -> GroupInfo:
        members = tuple(self.members) if self.role is not Role.SLAVE else self.known_members
        return GroupInfo(self.group_id, self.kind, self.role, self.name, self.master, members, self.state)

    @property
    def advertised(self) -> bool:
        return self.role in (Role.PEER, Role.MASTER)

    @property
    def listed(self) -> bool:
        """Shown in joinedGroupList."""
        return self.role is not Role.SLAVE or self.state is State.JOINED


@dataclass(frozen=True, slots=True)
class _Advertise:
    group_id: GroupId
    quit: bool = False
    kind: GroupKind = GroupKind.PEER


@dataclass(frozen=True, slots=True)
class _Readvertise:
    generation: int


@dataclass(frozen=True, slots=True)
class _Respond:
    key: tuple[str, int, str]
    actions: tuple[SendUnicast, ...]


@dataclass(frozen=True, slots=True)
class _SearchCopy:
    payloads: tuple[tuple[str, bytes], ...]


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text.partition("%")[0])
    except ValueError:
        return None


# --- the registry of groups heard on the LAN ------------------------------------------------------
@dataclass(slots=True)
class _Heard:
    group_id: GroupId
    kind: GroupKind
    name: str
    master: DeviceId | None
    first_seen: float
    members: dict[DeviceId, tuple[float, float, str]] = field(default_factory=dict)  # last, expires, addr

    def record(self) -> GroupRecord:
        return GroupRecord(
            self.group_id, self.kind, self.name, self.master, frozenset(self.members),
            frozenset(a for _, _, a in self.members.values()), self.first_seen,
            max((s for s, _, _ in self.members.values()), default=self.first_seen),
            max((e for _, e, _ in self.members.values()), default=self.first_seen),
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

    @property
    def groups(self) -> list[GroupRecord]:
        return [g.record() for g in self._groups.values()]

    def get(self, group_id: GroupId) -> GroupRecord | None:
        heard = self._groups.get(group_id)
        return heard.record() if heard else None

    def next_deadline(self) -> float | None:
        return min((e for g in self._groups.values() for _, e, _ in g.members.values()), default=None)

    def poll(self, now: float) -> list[GroupEvent]:
        events: list[GroupEvent] = []
        for gid, heard in list(self._groups.items()):
            expired = [m for m, (_, e, _) in heard.members.items() if e <= now]
            if not expired:
                continue
            before = heard.record()
            for m in expired:
                del heard.members[m]
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
                              msg.max_age, source[0], now)
        if isinstance(msg, wg.SearchDeviceGroupResponse):
            if msg.requester not in (None, self.device_id):
                self.drops.drop("not_for_us")
                return []
            if msg.kind is GroupKind.CENTRALISED and msg.device_id != msg.master_id:
                self.drops.drop("master_conflict")  # only the master answers for its group
                return []
            return self._seen(msg.group_id, msg.kind, msg.name, msg.master_id, msg.device_id, msg.max_age,
                              source[0], now)
        if isinstance(msg, wg.QuitPeerDeviceGroupNotify | wg.QuitCentralisedDeviceGroupAdvertisement):
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
                del self._groups[msg.group_id]
                return [GroupGone(before, "dissolved")]
            del heard.members[sender]
            if not heard.members:
                del self._groups[msg.group_id]
                return [GroupGone(before, "quit")]
            return [GroupUpdated(heard.record())]
        return []

    def _seen(self, group_id: GroupId, kind: GroupKind, name: str, master: DeviceId | None,
              member: DeviceId, max_age: int, address: str, now: float) -> list[GroupEvent]:
        heard = self._groups.get(group_id)
        if heard is None:
            if len(self._groups) >= self.max_groups:
                self.drops.drop("registry_full")
                return []
            heard = _Heard(group_id, kind, name, master, now)
            heard.members[member] = (now, now + max_age, address)
            self._groups[group_id] = heard
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
        if name:
            heard.name = name
        after = heard.record()
        if (before.name, before.members, before.addresses) != (after.name, after.members, after.addresses):
            return [GroupUpdated(after)]
        return []

    def forget(self, group_id: GroupId) -> None:
        self._groups.pop(group_id, None)


# --- the group state of one device ---------------------------------------------------------------
class DeviceGroups:
    """Groups of one local device: peer member, centralised master or slave; responder; registry."""

    def __init__(
        self,
        device_id: DeviceId,
        name: str = "",
        *,
        max_age: int = DEFAULT_MAX_AGE,
        lease: int = GROUP_LEASE,
        port: int = IGRS_PORT,
        policy: JoinPolicy = allow_all,
        max_local: int = GROUP_MAX_LOCAL,
        max_members: int = GROUP_MAX_MEMBERS,
        registry: GroupRegistry | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.device_id = device_id
        self.name = name
        self.max_age = max_age
        self.lease = lease
        self.port = port
        self.policy = policy
        self.max_local = max_local
        self.max_members = max_members
        self.rng = rng or random.Random()
        self.drops = DropCounter()
        self.registry = registry or GroupRegistry(device_id, drops=self.drops)
        self.running = True
        self._interfaces: dict[str, Interface] = {}
        self._groups: dict[GroupId, _Local] = {}
        self._timers = _Timers()
        self._generation = 0
        self._readvertise_scheduled = False
        self._pending: set[tuple[str, int, str]] = set()
        self._requesters = KeyedRateLimiter(RESPONDER_RATE, RESPONDER_BURST, MAX_TRACKED_SOURCES)
        self._sources = KeyedRateLimiter(SOURCE_RATE, SOURCE_BURST, MAX_TRACKED_SOURCES)
        self._listed: tuple[GroupRef, ...] = ()

    # --- interfaces and views -------------------------------------------------------------------
    def set_interfaces(self, interfaces: list[Interface]) -> None:
        self._interfaces = {i.name: i for i in interfaces}

    @property
    def groups(self) -> list[GroupInfo]:
        return [g.info() for g in self._groups.values()]

    def get(self, group_id: GroupId) -> GroupInfo | None:
        local = self._groups.get(group_id)
        return local.info() if local else None

    def joined_groups(self) -> list[GroupRef]:
        """The description's ``joinedGroupList``: groups this device is in right now."""
        return [GroupRef(str(g.group_id), g.name) for g in self._groups.values() if g.listed]

    def _finish(self, out: Out) -> Out:
        listed = tuple(self.joined_groups())
        if listed != self._listed:
            self._listed = listed
            out.events.append(JoinedGroupsChanged(listed))
        return out

    def _new_local(self, local: _Local) -> None:
        if local.group_id in self._groups:
            raise GroupError(f"already in group {local.group_id}")
        if len(self._groups) >= self.max_local:
            raise GroupError(f"this device is already in {self.max_local} groups")
        self._groups[local.group_id] = local

    def _local(self, group_id: GroupId) -> _Local:
        local = self._groups.get(group_id)
        if local is None:
            raise GroupError(f"not in group {group_id}")
        return local

    # --- commands -------------------------------------------------------------------------------
    def create_peer(self, name: str, now: float, group_id: GroupId | None = None) -> tuple[GroupId, Out]:
        """Create a peer-to-peer group (``group_id`` to re-create a persisted one)."""
        gid = group_id or GroupId.new()
        local = _Local(gid, GroupKind.PEER, Role.PEER, wg.check_group_name(name[:MAX_NAME_LENGTH]), None)
        self._new_local(local)
        out = Out(self._advertise_burst(gid, now), [GroupFormed(local.info())])
        return gid, self._finish(out)

    def join_peer(self, group_id: GroupId, now: float, name: str | None = None) -> Out:
        """Join a peer-to-peer group: start advertising it (no handshake: peer groups are open)."""
        if name is None:
            heard = self.registry.get(group_id)
            if heard is not None and heard.kind is GroupKind.CENTRALISED:
                raise GroupError(f"{group_id} is a centralised group: join it through its master")
            name = heard.name if heard else ""
        local = _Local(group_id, GroupKind.PEER, Role.PEER, wg.check_group_name(name[:MAX_NAME_LENGTH]), None)
        self._new_local(local)
        return self._finish(Out(self._advertise_burst(group_id, now), [GroupJoined(local.info())]))

    def create_centralised(self, name: str, now: float,
                           group_id: GroupId | None = None) -> tuple[GroupId, Out]:
        """Create a centralised group with this device as master."""
        gid = group_id or GroupId.new()
        local = _Local(gid, GroupKind.CENTRALISED, Role.MASTER, wg.check_group_name(name[:MAX_NAME_LENGTH]),
                       self.device_id)
        self._new_local(local)
        out = Out(self._advertise_burst(gid, now), [GroupFormed(local.info())])
        return gid, self._finish(out)

    def join(self, group_id: GroupId, master: DeviceId, now: float) -> Out:
        """Ask ``master`` to admit this device (a JoinCentralisedDeviceGroupRequest)."""
        if master == self.device_id:
            raise GroupError("a master cannot join its own group")
        heard = self.registry.get(group_id)
        if heard is not None and heard.kind is GroupKind.PEER:
            raise GroupError(f"{group_id} is a peer-to-peer group: use join_peer")
        local = _Local(group_id, GroupKind.CENTRALISED, Role.SLAVE, "", master, State.JOINING,
                       lease=self.lease, last_proof=now)
        if heard is not None:
            local.name = heard.name
            local.master_addresses |= set(heard.addresses)
        self._new_local(local)
        return self._finish(Out([self._send_join(local, now)]))

    def leave(self, group_id: GroupId, now: float) -> Out:
        """Leave a group. For a group this device masters, leaving is dissolving it."""
        local = self._local(group_id)
        if local.role is Role.MASTER:
            return self.dissolve(group_id, now)
        del self._groups[group_id]
        out = Out(events=[GroupLeft(group_id)])
        if local.role is Role.PEER:
            out.actions += self._quit_burst(group_id, GroupKind.PEER, now)
        elif local.state is not State.ORPHANED and local.master is not None:
            out.actions.append(SendRequest(local.master, QuitCentralisedDeviceGroupNotify(group_id)))
        return self._finish(out)

    def quit_untracked(self, group_id: GroupId, kind: GroupKind, master: DeviceId | None, now: float) -> Out:
        """Quit a membership this device holds but no longer tracks (e.g. after a restart):
        the peer quit copies, or the quit notify to the master."""
        if group_id in self._groups:
            return self.leave(group_id, now)
        if kind is GroupKind.PEER:
            return Out(self._quit_burst(group_id, kind, now))
        if master is None or master == self.device_id:
            raise GroupError("a centralised quit needs the master's device id")
        return Out([SendRequest(master, QuitCentralisedDeviceGroupNotify(group_id))])

    def dissolve(self, group_id: GroupId, now: float) -> Out:
        """Master: end the group. Multicast quit (copies) and a unicast notify to each slave."""
        local = self._local(group_id)
        if local.role is not Role.MASTER:
            raise GroupError(f"not the master of {group_id}")
        del self._groups[group_id]
        out = Out(self._quit_burst(group_id, GroupKind.CENTRALISED, now),
                  [GroupDissolved(group_id, "dissolved")])
        out.actions += [SendRequest(m, QuitCentralisedDeviceGroupNotify(group_id, dissolved=True))
                        for m in local.members]
        return self._finish(out)

    def remove_member(self, group_id: GroupId, device_id: DeviceId, now: float) -> Out:
        """Master: remove a slave (it gets a QuitCentralisedDeviceGroupNotify)."""
        local = self._local(group_id)
        if local.role is not Role.MASTER or device_id not in local.members:
            raise GroupError(f"{device_id} is not a member of {group_id} under this master")
        del local.members[device_id]
        return self._finish(Out([SendRequest(device_id, QuitCentralisedDeviceGroupNotify(group_id))],
                                [MemberLeft(group_id, device_id, "removed")]))

    def stop(self, now: float, *, dissolve: bool = True) -> Out:
        """Clean shutdown: leave every group (masters dissolve theirs). ``dissolve=False``
        just falls silent (an application that re-creates its groups with the same ids at
        start-up lets its slaves re-join within GROUP_REJOIN_WINDOW)."""
        self._timers.clear()
        self._pending.clear()
        out = Out()
        if dissolve:
            for gid in list(self._groups):
                out.add(self.leave(gid, now))  # the extra quit copies stay on the timer heap
        self.running = False
        return out

    def search(self, now: float, target: GroupId | None = None, mx: int = DEFAULT_MX,
               retries: int = SEARCH_RETRIES) -> Out:
        """Multicast SearchDeviceGroupRequest (``target`` None: every group)."""
        mx = min(max(mx, 1), MAX_MX)
        req = wg.SearchDeviceGroupRequest(target, mx, self.device_id)
        payloads = tuple((name, wg.encode(req, host=group_host(i, self.port)))
                         for name, i in self._interfaces.items())
        spacing = min(0.25, mx / max(retries, 1) / 2)
        for copy in range(1, retries):
            self._timers.add(now + copy * spacing, _SearchCopy(payloads))
        return Out([SendMulticast(name, p) for name, p in payloads])

    # --- advertisements -------------------------------------------------------------------------
    def _advertisement(self, local: _Local, iface: Interface) -> SendMulticast:
        msg: wg.GroupDatagram
        if local.role is Role.MASTER:
            msg = wg.CentralisedDeviceGroupAdvertisement(local.group_id, self.device_id, self.max_age,
                                                         local.name, len(local.members))
        else:
            msg = wg.PeerDeviceGroupAdvertisement(local.group_id, self.device_id, self.max_age, local.name)
        return SendMulticast(iface.name, wg.encode(msg, host=group_host(iface, self.port)))

    def _quit(self, group_id: GroupId, kind: GroupKind, iface: Interface) -> SendMulticast:
        msg: wg.GroupDatagram
        if kind is GroupKind.PEER:
            msg = wg.QuitPeerDeviceGroupNotify(group_id, self.device_id)
        else:
            msg = wg.QuitCentralisedDeviceGroupAdvertisement(group_id, self.device_id)
        return SendMulticast(iface.name, wg.encode(msg, host=group_host(iface, self.port)))

    def _advertise_burst(self, group_id: GroupId, now: float) -> list[Action]:
        for copy in range(1, STARTUP_COPIES):
            self._timers.add(now + copy * COPY_SPACING, _Advertise(group_id))
        if not self._readvertise_scheduled:
            self._schedule_readvertise(now)
        local = self._groups[group_id]
        return [self._advertisement(local, i) for i in self._interfaces.values()]

    def _quit_burst(self, group_id: GroupId, kind: GroupKind, now: float) -> list[Action]:
        for copy in range(1, STARTUP_COPIES):
            self._timers.add(now + copy * COPY_SPACING, _Advertise(group_id, quit=True, kind=kind))
        return [self._quit(group_id, kind, i) for i in self._interfaces.values()]

    def _schedule_readvertise(self, now: float) -> None:
        self._generation += 1
        self._readvertise_scheduled = True
        delay = self.max_age * REANNOUNCE_FRACTION - self.rng.uniform(0, REANNOUNCE_JITTER * self.max_age)
        self._timers.add(now + max(delay, 0.5), _Readvertise(self._generation))

    # --- slave requests -------------------------------------------------------------------------
    def _send_join(self, local: _Local, now: float) -> SendRequest:
        assert local.master is not None
        local.request_due = None
        local.request_deadline = now + GROUP_JOIN_TIMEOUT
        return SendRequest(local.master, JoinCentralisedDeviceGroupRequest(local.group_id, self.name))

    def _renew_due(self, local: _Local, now: float) -> float:
        return now + local.lease * REANNOUNCE_FRACTION - self.rng.uniform(0, REANNOUNCE_JITTER * local.lease)

    def on_response(self, device_id: DeviceId, message: object, now: float) -> Out:
        """The answer to a join/renewal request this machine asked for (``SendRequest``)."""
        if not isinstance(message, JoinCentralisedDeviceGroupResponse):
            self.drops.drop("unexpected_response")
            return Out()
        local = self._groups.get(message.group_id)
        if (local is None or local.role is not Role.SLAVE or local.master != device_id
                or local.request_deadline is None):
            self.drops.drop("unexpected_response")
            return Out()
        local.request_deadline = None
        out = Out()
        code = message.status.return_code
        if message.status.ok:
            previous = local.state
            local.state, local.orphaned_at, local.last_proof = State.JOINED, None, now
            local.lease = float(message.lease or self.lease)
            local.known_members = message.members
            if message.group_name:
                local.name = message.group_name
            local.request_due = self._renew_due(local, now)
            if previous is State.JOINING:
                out.events.append(GroupJoined(local.info()))
            elif previous is State.ORPHANED:
                out.events.append(MasterReturned(local.info()))
            return self._finish(out)
        if code >= 500 and local.state is not State.JOINING:
            return self._request_failed(local, now)  # busy master: try again later
        if local.state is State.JOINING:
            del self._groups[local.group_id]
            out.events.append(JoinRefused(local.group_id, device_id, code, message.status.reason))
        else:
            # The master no longer has us: the group is gone (404) or we were removed.
            del self._groups[local.group_id]
            out.events.append(GroupDissolved(local.group_id, "dissolved" if code == 404 else "removed"))
        return self._finish(out)

    def on_request_failed(self, device_id: DeviceId, message: object, now: float,
                          return_code: int = ReturnCode.BUSY, reason: str = "no answer") -> Out:
        """A ``SendRequest`` got no usable answer (no route, time-out, ErrorResponse)."""
        if not isinstance(message, JoinCentralisedDeviceGroupRequest):
            return Out()  # a notify that did not arrive: nothing to undo
        local = self._groups.get(message.group_id)
        if local is None or local.role is not Role.SLAVE or local.master != device_id:
            return Out()
        if local.state is State.JOINING:
            del self._groups[local.group_id]
            return self._finish(Out(events=[JoinRefused(local.group_id, device_id, return_code, reason)]))
        return self._request_failed(local, now)

    def _request_failed(self, local: _Local, now: float) -> Out:
        local.request_deadline = None
        local.request_due = now + GROUP_RETRY_DELAY
        return Out()

    # --- requests arriving (unicast SOAP) -------------------------------------------------------
    def on_request(self, frame: Frame, now: float, *, decision: bool | None = None,
                   address: str | None = None) -> tuple[JoinCentralisedDeviceGroupResponse | None, Out]:
        """A JoinCentralisedDeviceGroupRequest (answer returned) or QuitCentralisedDeviceGroupNotify
        (None returned: acknowledge with an empty 200). ``decision`` overrides the join policy
        (the I/O layer evaluated an asynchronous policy first)."""
        msg, source = frame.message, frame.routing.source
        if isinstance(msg, JoinCentralisedDeviceGroupRequest):
            return self._on_join(msg, source, frame.routing.sequence_id, now, decision, address)
        if isinstance(msg, QuitCentralisedDeviceGroupNotify):
            return None, self._on_quit_notify(msg, source, now)
        raise ProtocolError(f"{frame.routing.message_type} is not a group request")

    def _on_join(self, msg: JoinCentralisedDeviceGroupRequest, source: DeviceId, seq: int, now: float,
                 decision: bool | None, address: str | None) -> tuple[JoinCentralisedDeviceGroupResponse, Out]:
        local = self._groups.get(msg.group_id)

        def answer(code: int, reason: str = "") -> JoinCentralisedDeviceGroupResponse:
            return JoinCentralisedDeviceGroupResponse(Status(seq, code, reason), msg.group_id,
                                                      local.name if local else "")

        if local is None or local.role is not Role.MASTER:
            return answer(ReturnCode.NOT_FOUND, "no such group here"), Out()
        if source == self.device_id:
            return answer(ReturnCode.CONFLICT, "the master is not its own member"), Out()
        member = local.members.get(source)
        out = Out()
        if member is None:  # a new member: caps, then policy
            if len(local.members) >= self.max_members:
                return answer(ReturnCode.BUSY, "group is full"), Out()
            ctx = JoinContext(msg.group_id, source, msg.device_name, len(local.members))
            allowed = decision if decision is not None else self._ask_policy(ctx)
            if not allowed:
                return answer(ReturnCode.FORBIDDEN, "refused by the master"), Out()
            member = _Member(source, msg.device_name, now, now, address)
            local.members[source] = member
            out.events.append(MemberJoined(msg.group_id, source, msg.device_name))
        member.expires_at = now + self.lease  # join or renewal: the lease starts again
        if msg.device_name:
            member.name = msg.device_name
        response = JoinCentralisedDeviceGroupResponse(
            Status(seq), msg.group_id, local.name, int(self.lease),
            tuple(m for m in local.members if m != source))
        return response, out

    def _ask_policy(self, ctx: JoinContext) -> bool:
        try:
            return bool(self.policy(ctx))
        except Exception:  # a failing policy refuses; it never admits by accident
            self.drops.drop("policy_error")
            return False

    def _on_quit_notify(self, msg: QuitCentralisedDeviceGroupNotify, source: DeviceId, now: float) -> Out:
        local = self._groups.get(msg.group_id)
        if local is None:
            return Out()
        if local.role is Role.MASTER and source in local.members:
            del local.members[source]
            return self._finish(Out(events=[MemberLeft(msg.group_id, source, "quit")]))
        if local.role is Role.SLAVE and source == local.master:
            del self._groups[msg.group_id]
            reason = "dissolved" if msg.dissolved else "removed"
            return self._finish(Out(events=[GroupDissolved(msg.group_id, reason)]))
        self.drops.drop("quit_not_member")
        return Out()

    # --- the I/O layer says a device is gone (keep-alive time-out, byebye) ---------------------
    def peer_lost(self, device_id: DeviceId, now: float) -> Out:
        out = Out()
        for local in list(self._groups.values()):
            if local.role is Role.SLAVE and local.master == device_id and local.state is State.JOINED:
                out.add(self._master_lost(local, now, "lost"))
            elif local.role is not Role.SLAVE and device_id in local.members:
                del local.members[device_id]
                out.events.append(MemberLeft(local.group_id, device_id, "lost"))
        return self._finish(out)

    def _master_lost(self, local: _Local, now: float, reason: str) -> Out:
        assert local.master is not None
        local.state, local.orphaned_at = State.ORPHANED, now
        local.request_deadline = None
        local.request_due = now + GROUP_RETRY_DELAY
        return Out(events=[MasterLost(local.group_id, local.master, reason)])

    # --- datagrams ------------------------------------------------------------------------------
    def on_datagram(self, data: bytes, source: Address, interface: str, now: float) -> Out:
        """A datagram received on ``interface`` (non-group datagrams are ignored silently)."""
        if not self._sources.allow(source, now):
            self.drops.drop("source_rate")
            return Out()
        try:
            msg = wg.decode(data)
        except wg.NotGroupDatagram:
            return Out()
        except ProtocolError as exc:
            self.drops.drop("unsupported_version" if exc.return_code == ReturnCode.VERSION_NOT_SUPPORTED
                            else "malformed")
            return Out()
        if isinstance(msg, wg.SearchDeviceGroupRequest):
            self._on_search(msg, source, interface, now)
            return Out()
        sender = getattr(msg, "device_id", None) or getattr(msg, "master_id", None)
        if sender == self.device_id:
            return Out()  # our own, looped back
        out = Out(events=self.registry.on_message(msg, source, now))
        out.add(self._local_view(msg, source, now))
        return self._finish(out)

    def _local_view(self, msg: wg.GroupDatagram, source: Address, now: float) -> Out:
        """What a datagram means for the groups this device is in."""
        local = self._groups.get(msg.group_id) if hasattr(msg, "group_id") else None
        if local is None:
            return Out()
        out = Out()
        if isinstance(msg, wg.SearchDeviceGroupResponse):  # an answer counts as an advertisement
            if msg.kind is GroupKind.PEER:
                msg = wg.PeerDeviceGroupAdvertisement(msg.group_id, msg.device_id, msg.max_age, msg.name)
            elif msg.master_id is not None:
                msg = wg.CentralisedDeviceGroupAdvertisement(msg.group_id, msg.master_id, msg.max_age, msg.name)
        if local.role is Role.PEER:
            if isinstance(msg, wg.PeerDeviceGroupAdvertisement):
                member = local.members.get(msg.device_id)
                if member is None:
                    if len(local.members) >= self.max_members:
                        self.drops.drop("members_full")
                        return out
                    local.members[msg.device_id] = _Member(msg.device_id, "", now, now + msg.max_age, source[0])
                    out.events.append(MemberJoined(local.group_id, msg.device_id))
                else:
                    member.expires_at, member.address = now + msg.max_age, source[0]
                if msg.name and not local.name:
                    local.name = msg.name
            elif isinstance(msg, wg.QuitPeerDeviceGroupNotify):
                member = local.members.get(msg.device_id)
                if member is None:
                    return out
                if member.address != source[0]:
                    return out  # counted once, by the registry ("quit_mismatch")
                del local.members[msg.device_id]
                out.events.append(MemberLeft(local.group_id, msg.device_id, "quit"))
            elif isinstance(msg, wg.CentralisedDeviceGroupAdvertisement):
                self.drops.drop("kind_conflict")
            return out
        if local.role is Role.SLAVE:
            if isinstance(msg, wg.CentralisedDeviceGroupAdvertisement):
                if msg.master_id != local.master:
                    self.drops.drop("master_conflict")
                    return out
                local.master_addresses.add(source[0])
                if local.state is State.JOINED:
                    local.last_proof = now
                elif local.state is State.ORPHANED and local.request_deadline is None:
                    out.actions.append(self._send_join(local, now))  # it is back: re-join at once
            elif isinstance(msg, wg.QuitCentralisedDeviceGroupAdvertisement) and msg.master_id == local.master:
                if source[0] in local.master_addresses:
                    del self._groups[local.group_id]
                    out.events.append(GroupDissolved(local.group_id, "dissolved"))
                elif local.state is State.JOINED and local.request_deadline is None:
                    # Unknown sender address: ask the master itself (a spoofed quit must not
                    # dissolve our membership). A 404 answer dissolves it.
                    self.drops.drop("quit_unverified")
                    out.actions.append(self._send_join(local, now))
            return out
        # master: another device advertising our group id is a conflict; ours wins
        if isinstance(msg, wg.CentralisedDeviceGroupAdvertisement | wg.PeerDeviceGroupAdvertisement):
            self.drops.drop("master_conflict")
        return out

    def _on_search(self, req: wg.SearchDeviceGroupRequest, source: Address, interface: str, now: float) -> None:
        if not self.running or req.source_device_id == self.device_id:
            return
        answering = [g for g in self._groups.values()
                     if g.advertised and (req.target is None or g.group_id == req.target)]
        if not answering:
            return
        iface = self._interfaces.get(interface)
        if iface is None:
            self.drops.drop("unknown_interface")
            return
        src_ip = _ip(source[0])
        if src_ip is None:
            self.drops.drop("bad_source")
            return
        if src_ip not in iface.network:
            self.drops.drop("off_subnet")
            return
        key = (str(src_ip), source[1], str(req.target))
        if key in self._pending:
            return
        if len(self._pending) >= MAX_PENDING_RESPONSES:
            self.drops.drop("responder_busy")
            return
        if not self._requesters.allow(str(src_ip), now):
            self.drops.drop("requester_rate")
            return
        # Mastered groups first (only their master answers for them), then peer groups.
        answering.sort(key=lambda g: (g.role is not Role.MASTER, str(g.group_id)))
        actions: list[SendUnicast] = []
        budget = MAX_RESPONSE_BYTES_PER_REQUEST
        for local in answering:
            response = wg.SearchDeviceGroupResponse(
                local.group_id, self.device_id, local.kind, self.max_age, req.target, local.name,
                self.device_id if local.role is Role.MASTER else None, req.source_device_id)
            payload = wg.encode(response, host="")
            if len(payload) > budget:
                self.drops.drop("byte_cap")
                break
            budget -= len(payload)
            actions.append(SendUnicast(interface, source, payload))
        if not actions:
            return
        self._pending.add(key)
        self._timers.add(now + self.rng.uniform(0, min(max(req.mx, 0), MAX_MX)), _Respond(key, tuple(actions)))

    # --- timers ---------------------------------------------------------------------------------
    def _local_deadlines(self) -> list[float]:
        out: list[float] = []
        for g in self._groups.values():
            if g.role is Role.SLAVE:
                out += [d for d in (g.request_due, g.request_deadline) if d is not None]
                if g.state is State.JOINED:
                    out.append(g.last_proof + g.lease)
                elif g.state is State.ORPHANED and g.orphaned_at is not None:
                    out.append(g.orphaned_at + GROUP_REJOIN_WINDOW)
            else:
                out += [m.expires_at for m in g.members.values()]
        return out

    def next_deadline(self) -> float | None:
        candidates = [d for d in (self._timers.next_deadline(), self.registry.next_deadline()) if d is not None]
        candidates += self._local_deadlines()
        return min(candidates) if candidates else None

    def poll(self, now: float) -> Out:
        out = Out()
        for item in self._timers.due(now):
            if isinstance(item, _Advertise):
                if item.quit:
                    out.actions += [self._quit(item.group_id, item.kind, i) for i in self._interfaces.values()]
                elif (local := self._groups.get(item.group_id)) is not None and local.advertised:
                    out.actions += [self._advertisement(local, i) for i in self._interfaces.values()]
            elif isinstance(item, _Readvertise):
                if item.generation == self._generation and self.running:
                    for local in self._groups.values():
                        if local.advertised:
                            out.actions += [self._advertisement(local, i) for i in self._interfaces.values()]
                    self._schedule_readvertise(now)
            elif isinstance(item, _Respond):
                self._pending.discard(item.key)
                if self.running:
                    out.actions += list(item.actions)
            elif isinstance(item, _SearchCopy):
                out.actions += [SendMulticast(name, p) for name, p in item.payloads]
        out.events += self.registry.poll(now)
        for local in list(self._groups.values()):
            out.add(self._poll_local(local, now))
        return self._finish(out)

    def _poll_local(self, local: _Local, now: float) -> Out:
        out = Out()
        if local.role is not Role.SLAVE:
            for device_id, member in list(local.members.items()):
                if member.expires_at <= now:
                    del local.members[device_id]
                    out.events.append(MemberLeft(local.group_id, device_id, "expired"))
            return out
        if local.request_deadline is not None and local.request_deadline <= now:
            assert local.master is not None
            out.add(self.on_request_failed(local.master, JoinCentralisedDeviceGroupRequest(local.group_id),
                                           now, ReturnCode.BUSY, "no answer"))
            if local.group_id not in self._groups:
                return out
        if local.state is State.JOINED and local.last_proof + local.lease <= now:
            out.add(self._master_lost(local, now, "silent"))
        elif local.state is State.ORPHANED and local.orphaned_at is not None \
                and local.orphaned_at + GROUP_REJOIN_WINDOW <= now:
            del self._groups[local.group_id]
            out.events.append(GroupDissolved(local.group_id, "master_lost"))
            return out
        if local.request_due is not None and local.request_due <= now and local.request_deadline is None:
            out.actions.append(self._send_join(local, now))
        return out


__all__ = [
    "Action", "DeviceGroups", "GroupAppeared", "GroupDissolved", "GroupError", "GroupEvent", "GroupFormed",
    "GroupGone", "GroupInfo", "GroupJoined", "GroupLeft", "GroupRecord", "GroupRegistry", "GroupUpdated",
    "JoinContext", "JoinPolicy", "JoinRefused", "JoinedGroupsChanged", "MasterLost", "MasterReturned",
    "MemberJoined", "MemberLeft", "Out", "Role", "SendRequest", "State", "allow_all",
]
