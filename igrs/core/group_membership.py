"""The groups one device is in (clause 9.5), sans-IO: what it created or joined, the
master's membership table and join policy, the slave's lease, renewals and master loss
(specs/groups.md §5.2-§5.4, §5.7). Advertising, answering searches and routing datagrams
are ``igrs.core.device_groups``' job; this part decides, and returns ``Out`` (unicast
``SendRequest``s and events). Every group's next deadline sits in one ``ExpiryQueue``.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from igrs.constants import (
    GROUP_JOIN_TIMEOUT,
    GROUP_LEASE,
    GROUP_MAX_LOCAL,
    GROUP_MAX_MEMBERS,
    GROUP_REJOIN_WINDOW,
    GROUP_RETRY_DELAY,
    MAX_NAME_LENGTH,
    REANNOUNCE_FRACTION,
    REANNOUNCE_JITTER,
    ReturnCode,
)
from igrs.core.datagram_schedule import Address, DropCounter
from igrs.core.group_events import (
    GroupDissolved,
    GroupError,
    GroupFormed,
    GroupInfo,
    GroupJoined,
    GroupLeft,
    GroupRecord,
    JoinContext,
    JoinedGroupsChanged,
    JoinPolicy,
    JoinRefused,
    MasterLost,
    MasterReturned,
    MemberJoined,
    MemberLeft,
    Out,
    Role,
    SendRequest,
    State,
    allow_all,
)
from igrs.core.timers import ExpiryQueue
from igrs.errors import ProtocolError
from igrs.wire import group_datagrams as wg
from igrs.wire.bodies.groups import (
    JoinCentralisedDeviceGroupRequest,
    JoinCentralisedDeviceGroupResponse,
    QuitCentralisedDeviceGroupNotify,
)
from igrs.wire.description import GroupRef
from igrs.wire.group_datagrams import GroupId, GroupKind
from igrs.wire.ids import DeviceId
from igrs.wire.messages import Frame, Status


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

    def deadline(self, rejoin_window: float) -> float | None:
        """When this group next needs ``poll``: a member's lease, a request due or overdue,
        the master's silence, the end of the rejoin window."""
        if self.role is not Role.SLAVE:
            return min((m.expires_at for m in self.members.values()), default=None)
        times = [t for t in (self.request_due, self.request_deadline) if t is not None]
        if self.state is State.JOINED:
            times.append(self.last_proof + self.lease)
        elif self.state is State.ORPHANED and self.orphaned_at is not None:
            times.append(self.orphaned_at + rejoin_window)
        return min(times, default=None)


class Memberships:
    """The groups of one device and what it decides about them."""

    def __init__(self, device_id: DeviceId, name: str, *, lease: int, policy: JoinPolicy = allow_all,
                 max_local: int = GROUP_MAX_LOCAL, max_members: int = GROUP_MAX_MEMBERS,
                 rejoin_window: float = GROUP_REJOIN_WINDOW, rng: random.Random, drops: DropCounter) -> None:
        self.device_id = device_id
        self.name = name
        self.lease = lease
        self.policy = policy
        self.max_local = max_local
        self.max_members = max_members
        self.rejoin_window = rejoin_window
        self.rng = rng
        self.drops = drops
        self._groups: dict[GroupId, _Local] = {}
        self._deadlines: ExpiryQueue[GroupId] = ExpiryQueue()
        self._dirty: set[GroupId] = set()
        self._listed: tuple[GroupRef, ...] = ()

    # --- views ----------------------------------------------------------------------------------
    @property
    def groups(self) -> list[GroupInfo]:
        return [g.info() for g in self._groups.values()]

    def get(self, group_id: GroupId) -> GroupInfo | None:
        local = self._groups.get(group_id)
        return local.info() if local else None

    def role_of(self, group_id: GroupId) -> Role | None:
        local = self._groups.get(group_id)
        return local.role if local else None

    def advertised(self) -> list[GroupInfo]:
        """The groups this device advertises and answers for: peer groups, mastered groups."""
        return [g.info() for g in self._groups.values() if g.advertised]

    def joined_groups(self) -> list[GroupRef]:
        """The description's ``joinedGroupList``: groups this device is in right now."""
        return [GroupRef(str(g.group_id), g.name) for g in self._groups.values() if g.listed]

    def finish(self, out: Out) -> Out:
        """Add ``JoinedGroupsChanged`` when ``joined_groups()`` changed."""
        listed = tuple(self.joined_groups())
        if listed != self._listed:
            self._listed = listed
            out.events.append(JoinedGroupsChanged(listed))
        return out

    def _changed(self, group_id: GroupId) -> None:
        self._dirty.add(group_id)

    def _add(self, local: _Local) -> None:
        if local.group_id in self._groups:
            raise GroupError(f"already in group {local.group_id}")
        if len(self._groups) >= self.max_local:
            raise GroupError(f"this device is already in {self.max_local} groups")
        self._groups[local.group_id] = local
        self._changed(local.group_id)

    def _drop(self, group_id: GroupId) -> _Local:
        local = self._groups.pop(group_id)
        self._changed(group_id)
        return local

    def _local(self, group_id: GroupId) -> _Local:
        local = self._groups.get(group_id)
        if local is None:
            raise GroupError(f"not in group {group_id}")
        return local

    # --- commands -------------------------------------------------------------------------------
    def create_peer(self, name: str, group_id: GroupId | None) -> tuple[GroupId, Out]:
        gid = group_id or GroupId.new()
        local = _Local(gid, GroupKind.PEER, Role.PEER, wg.check_group_name(name[:MAX_NAME_LENGTH]), None)
        self._add(local)
        return gid, self.finish(Out(events=[GroupFormed(local.info())]))

    def join_peer(self, group_id: GroupId, heard: GroupRecord | None, name: str | None) -> Out:
        if name is None:
            if heard is not None and heard.kind is GroupKind.CENTRALISED:
                raise GroupError(f"{group_id} is a centralised group: join it through its master")
            name = heard.name if heard else ""
        local = _Local(group_id, GroupKind.PEER, Role.PEER, wg.check_group_name(name[:MAX_NAME_LENGTH]), None)
        self._add(local)
        return self.finish(Out(events=[GroupJoined(local.info())]))

    def create_centralised(self, name: str, group_id: GroupId | None) -> tuple[GroupId, Out]:
        gid = group_id or GroupId.new()
        local = _Local(gid, GroupKind.CENTRALISED, Role.MASTER, wg.check_group_name(name[:MAX_NAME_LENGTH]),
                       self.device_id)
        self._add(local)
        return gid, self.finish(Out(events=[GroupFormed(local.info())]))

    def join(self, group_id: GroupId, master: DeviceId, heard: GroupRecord | None, now: float) -> Out:
        if master == self.device_id:
            raise GroupError("a master cannot join its own group")
        if heard is not None and heard.kind is GroupKind.PEER:
            raise GroupError(f"{group_id} is a peer-to-peer group: use join_peer")
        local = _Local(group_id, GroupKind.CENTRALISED, Role.SLAVE, "", master, State.JOINING,
                       lease=self.lease, last_proof=now)
        if heard is not None:
            local.name = heard.name
            local.master_addresses |= set(heard.addresses)
        self._add(local)
        return self.finish(Out([self._send_join(local, now)]))

    def leave(self, group_id: GroupId) -> tuple[_Local, Out]:
        """Leave a peer group or a centralised group as its slave (a master dissolves)."""
        local = self._local(group_id)
        if local.role is Role.MASTER:
            raise GroupError(f"this device masters {group_id}: dissolve it")
        self._drop(group_id)
        out = Out(events=[GroupLeft(group_id)])
        if local.role is Role.SLAVE and local.state is not State.ORPHANED and local.master is not None:
            out.actions.append(SendRequest(local.master, QuitCentralisedDeviceGroupNotify(group_id)))
        return local, self.finish(out)

    def quit_untracked(self, group_id: GroupId, master: DeviceId | None) -> Out:
        """The quit notify of a centralised membership this device holds but does not track."""
        if master is None or master == self.device_id:
            raise GroupError("a centralised quit needs the master's device id")
        return Out([SendRequest(master, QuitCentralisedDeviceGroupNotify(group_id))])

    def dissolve(self, group_id: GroupId) -> Out:
        local = self._local(group_id)
        if local.role is not Role.MASTER:
            raise GroupError(f"not the master of {group_id}")
        self._drop(group_id)
        out = Out(events=[GroupDissolved(group_id, "dissolved")])
        out.actions += [SendRequest(m, QuitCentralisedDeviceGroupNotify(group_id, dissolved=True))
                        for m in local.members]
        return self.finish(out)

    def remove_member(self, group_id: GroupId, device_id: DeviceId) -> Out:
        local = self._local(group_id)
        if local.role is not Role.MASTER or device_id not in local.members:
            raise GroupError(f"{device_id} is not a member of {group_id} under this master")
        del local.members[device_id]
        self._changed(group_id)
        return self.finish(Out([SendRequest(device_id, QuitCentralisedDeviceGroupNotify(group_id))],
                               [MemberLeft(group_id, device_id, "removed")]))

    # --- slave requests -------------------------------------------------------------------------
    def _send_join(self, local: _Local, now: float) -> SendRequest:
        assert local.master is not None
        local.request_due = None
        local.request_deadline = now + GROUP_JOIN_TIMEOUT
        self._changed(local.group_id)
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
        self._changed(local.group_id)
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
            return self.finish(out)
        if code >= 500 and local.state is not State.JOINING:
            return self._request_failed(local, now)  # busy master: try again later
        self._drop(local.group_id)
        if local.state is State.JOINING:
            out.events.append(JoinRefused(local.group_id, device_id, code, message.status.reason))
        else:
            # The master no longer has us: the group is gone (404) or we were removed.
            out.events.append(GroupDissolved(local.group_id, "dissolved" if code == 404 else "removed"))
        return self.finish(out)

    def on_request_failed(self, device_id: DeviceId, message: object, now: float,
                          return_code: int = ReturnCode.BUSY, reason: str = "no answer") -> Out:
        """A ``SendRequest`` got no usable answer (no route, time-out, ErrorResponse)."""
        if not isinstance(message, JoinCentralisedDeviceGroupRequest):
            return Out()  # a notify that did not arrive: nothing to undo
        local = self._groups.get(message.group_id)
        if local is None or local.role is not Role.SLAVE or local.master != device_id:
            return Out()
        if local.state is State.JOINING:
            self._drop(local.group_id)
            return self.finish(Out(events=[JoinRefused(local.group_id, device_id, return_code, reason)]))
        return self._request_failed(local, now)

    def _request_failed(self, local: _Local, now: float) -> Out:
        local.request_deadline = None
        local.request_due = now + GROUP_RETRY_DELAY
        self._changed(local.group_id)
        return Out()

    # --- requests arriving (unicast SOAP) -------------------------------------------------------
    def on_request(self, frame: Frame, now: float, *, decision: bool | None = None,
                   address: str | None = None) -> tuple[JoinCentralisedDeviceGroupResponse | None, Out]:
        """A JoinCentralisedDeviceGroupRequest (answer returned) or QuitCentralisedDeviceGroupNotify
        (None returned: acknowledge with an empty 200; GroupError 404 when the sender is not
        in the group with this device). ``decision`` overrides the join policy (the I/O layer
        evaluated an asynchronous policy first)."""
        msg, source = frame.message, frame.routing.source
        if isinstance(msg, JoinCentralisedDeviceGroupRequest):
            return self._on_join(msg, source, frame.routing.sequence_id, now, decision, address)
        if isinstance(msg, QuitCentralisedDeviceGroupNotify):
            return None, self._on_quit_notify(msg, source)
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
        if address is not None:
            member.address = address
        if msg.device_name:
            member.name = msg.device_name
        self._changed(local.group_id)
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

    def _on_quit_notify(self, msg: QuitCentralisedDeviceGroupNotify, source: DeviceId) -> Out:
        local = self._groups.get(msg.group_id)
        if local is not None and local.role is Role.MASTER and source in local.members:
            del local.members[source]
            self._changed(local.group_id)
            return self.finish(Out(events=[MemberLeft(msg.group_id, source, "quit")]))
        if local is not None and local.role is Role.SLAVE and source == local.master:
            self._drop(msg.group_id)
            reason = "dissolved" if msg.dissolved else "removed"
            return self.finish(Out(events=[GroupDissolved(msg.group_id, reason)]))
        self.drops.drop("quit_not_member")
        if msg.dissolved:
            return Out()  # the dissolution is known already (its multicast came first)
        raise GroupError(f"{source} is not in group {msg.group_id} with this device",
                         return_code=ReturnCode.NOT_FOUND)

    # --- the I/O layer says a device is gone (keep-alive time-out, byebye) ---------------------
    def peer_lost(self, device_id: DeviceId, now: float) -> Out:
        out = Out()
        for local in list(self._groups.values()):
            if local.role is Role.SLAVE and local.master == device_id and local.state is State.JOINED:
                out.add(self._master_lost(local, now, "lost"))
            elif local.role is not Role.SLAVE and device_id in local.members:
                del local.members[device_id]
                self._changed(local.group_id)
                out.events.append(MemberLeft(local.group_id, device_id, "lost"))
        return self.finish(out)

    def _master_lost(self, local: _Local, now: float, reason: str) -> Out:
        assert local.master is not None
        local.state, local.orphaned_at = State.ORPHANED, now
        local.request_deadline = None
        local.request_due = now + GROUP_RETRY_DELAY
        self._changed(local.group_id)
        return Out(events=[MasterLost(local.group_id, local.master, reason)])

    # --- what a group datagram from another device means for our groups --------------------------
    def on_datagram(self, msg: wg.GroupDatagram, source: Address, now: float) -> Out:
        local = self._groups.get(msg.group_id) if hasattr(msg, "group_id") else None
        if local is None:
            return Out()
        if isinstance(msg, wg.SearchDeviceGroupResponse):  # an answer counts as an advertisement
            if msg.kind is GroupKind.PEER:
                msg = wg.PeerDeviceGroupAdvertisement(msg.group_id, msg.device_id, msg.max_age, msg.name)
            elif msg.master_id is not None:
                msg = wg.CentralisedDeviceGroupAdvertisement(msg.group_id, msg.master_id, msg.max_age, msg.name)
        if local.role is Role.PEER:
            return self._peer_view(local, msg, source, now)
        if local.role is Role.SLAVE:
            return self._slave_view(local, msg, source, now)
        # master: another device advertising our group id is a conflict; ours wins
        if isinstance(msg, wg.CentralisedDeviceGroupAdvertisement | wg.PeerDeviceGroupAdvertisement):
            self.drops.drop("master_conflict")
        return Out()

    def _peer_view(self, local: _Local, msg: wg.GroupDatagram, source: Address, now: float) -> Out:
        out = Out()
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
            self._changed(local.group_id)
        elif isinstance(msg, wg.QuitPeerDeviceGroupNotify):
            member = local.members.get(msg.device_id)
            if member is None or member.address != source[0]:
                return out  # a foreign address is counted once, by the registry ("quit_mismatch")
            del local.members[msg.device_id]
            self._changed(local.group_id)
            out.events.append(MemberLeft(local.group_id, msg.device_id, "quit"))
        elif isinstance(msg, wg.CentralisedDeviceGroupAdvertisement):
            self.drops.drop("kind_conflict")
        return out

    def _slave_view(self, local: _Local, msg: wg.GroupDatagram, source: Address, now: float) -> Out:
        out = Out()
        if isinstance(msg, wg.CentralisedDeviceGroupAdvertisement):
            if msg.master_id != local.master:
                self.drops.drop("master_conflict")
                return out
            local.master_addresses.add(source[0])
            if local.state is State.JOINED:
                local.last_proof = now
                self._changed(local.group_id)
            elif local.state is State.ORPHANED and local.request_deadline is None:
                out.actions.append(self._send_join(local, now))  # it is back: re-join at once
        elif isinstance(msg, wg.QuitCentralisedDeviceGroupAdvertisement) and msg.master_id == local.master:
            if source[0] in local.master_addresses:
                self._drop(local.group_id)
                out.events.append(GroupDissolved(local.group_id, "dissolved"))
            elif local.state is State.JOINED and local.request_deadline is None:
                # Unknown sender address: ask the master itself (a spoofed quit must not
                # dissolve our membership). A 404 answer dissolves it.
                self.drops.drop("quit_unverified")
                out.actions.append(self._send_join(local, now))
        return out

    # --- timers ---------------------------------------------------------------------------------
    def next_deadline(self) -> float | None:
        for gid in self._dirty:
            local = self._groups.get(gid)
            deadline = local.deadline(self.rejoin_window) if local is not None else None
            if deadline is None:
                self._deadlines.discard(gid)
            else:
                self._deadlines.set(gid, deadline)
        self._dirty.clear()
        return self._deadlines.next_deadline()

    def poll(self, now: float) -> Out:
        self.next_deadline()  # settle the changed groups' deadlines
        out = Out()
        for gid in self._deadlines.expired(now):
            local = self._groups.get(gid)
            if local is not None:
                out.add(self._poll_local(local, now))
                self._changed(gid)
        return self.finish(out)

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
                and local.orphaned_at + self.rejoin_window <= now:
            self._drop(local.group_id)
            out.events.append(GroupDissolved(local.group_id, "master_lost"))
            return out
        if local.request_due is not None and local.request_due <= now and local.request_deadline is None:
            out.actions.append(self._send_join(local, now))
        return out

    def stop(self) -> None:
        self._groups.clear()
        self._deadlines = ExpiryQueue()
        self._dirty.clear()

    def forget_group(self, group_id: GroupId) -> None:
        """Drop a group without any message (a test or an application resetting its state)."""
        if group_id in self._groups:
            self._drop(group_id)
