"""Device groups (clauses 9.5 and 9.8), sans-IO. Rules: specs/groups.md.

``DeviceGroups`` is the group state of one device, in three parts with one job each:

* ``Memberships`` (``igrs.core.group_membership``): the groups it created or joined (peer
  member, centralised master, centralised slave), the master's table and policy, the
  slave's lease and master-loss handling;
* ``GroupRegistry`` (``igrs.core.group_registry``): the groups heard on the LAN;
* this class: routing the group datagrams to both, advertising the groups it is in and
  answering ``SearchDeviceGroupRequest`` (with the ``AdvertisementSchedule`` and the
  ``SearchResponder`` of ``igrs.core.datagram_schedule``, which device discovery uses too);
  searching and decoding are ``GroupSearch``'s (also a control point's, ``ControlPoint.search_groups``).

Inputs carry ``now`` (monotonic seconds); outputs are ``Out(actions, events)``:

* actions: ``SendMulticast`` / ``SendUnicast`` (datagrams, which ``IsdpEndpoints.execute``
  sends) and ``SendRequest`` (a unicast SOAP message to a device, which the I/O layer sends
  over a pipe; the answer comes back through ``on_response`` or ``on_request_failed``);
* events: the ``GroupEvent`` dataclasses of ``igrs.core.group_events``.

Timers: ``next_deadline()`` + ``poll(now)``, as in discovery.
"""

from __future__ import annotations

import random

from igrs.constants import (
    DEFAULT_MAX_AGE,
    DEFAULT_MX,
    GROUP_LEASE,
    GROUP_MAX_LOCAL,
    GROUP_MAX_MEMBERS,
    GROUP_REJOIN_WINDOW,
    IGRS_PORT,
    SEARCH_RETRIES,
    ReturnCode,
)
from igrs.core.datagram_schedule import (
    Address,
    AdvertisementSchedule,
    Answer,
    Copy,
    DropCounter,
    Interface,
    SearchResponder,
    SendMulticast,
    earliest,
    group_host,
)
from igrs.core.group_events import (
    Action,
    GroupAppeared,
    GroupDissolved,
    GroupError,
    GroupEvent,
    GroupFormed,
    GroupGone,
    GroupInfo,
    GroupJoined,
    GroupLeft,
    GroupRecord,
    GroupUpdated,
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
from igrs.core.group_membership import Memberships
from igrs.core.group_registry import GroupRegistry, GroupSearch
from igrs.wire import group_datagrams as wg
from igrs.wire.bodies.groups import JoinCentralisedDeviceGroupResponse
from igrs.wire.description import GroupRef
from igrs.wire.group_datagrams import GroupId, GroupKind
from igrs.wire.ids import DeviceId
from igrs.wire.messages import Frame

__all__ = [
    "Action",
    "DeviceGroups",
    "GroupAppeared",
    "GroupDissolved",
    "GroupError",
    "GroupEvent",
    "GroupFormed",
    "GroupGone",
    "GroupInfo",
    "GroupJoined",
    "GroupLeft",
    "GroupRecord",
    "GroupRegistry",
    "GroupSearch",
    "GroupUpdated",
    "JoinContext",
    "JoinPolicy",
    "JoinRefused",
    "JoinedGroupsChanged",
    "MasterLost",
    "MasterReturned",
    "MemberJoined",
    "MemberLeft",
    "Memberships",
    "Out",
    "Role",
    "SendRequest",
    "State",
    "allow_all",
]

Subject = tuple[GroupId, GroupKind]  # what an advertisement copy is about


class DeviceGroups:
    """Groups of one local device: its memberships, the groups heard, advertising, answering."""

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
        rejoin_window: float = GROUP_REJOIN_WINDOW,
        registry: GroupRegistry | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.device_id = device_id
        self.name = name
        self.max_age = max_age
        self.port = port
        self.rng = rng or random.Random()
        self.drops = DropCounter()
        self.finder = GroupSearch(device_id, port=port, registry=registry, drops=self.drops)
        self.registry = self.finder.registry
        self.memberships = Memberships(device_id, name, lease=lease, policy=policy, max_local=max_local,
                                       max_members=max_members, rejoin_window=rejoin_window, rng=self.rng,
                                       drops=self.drops)
        self.running = True
        self._interfaces: dict[str, Interface] = {}
        self._schedule: AdvertisementSchedule[Subject] = AdvertisementSchedule(max_age, self.rng)
        self._responder = SearchResponder(self.rng, self.drops)

    @property
    def lease(self) -> int:
        return self.memberships.lease

    @property
    def policy(self) -> JoinPolicy:
        return self.memberships.policy

    @policy.setter
    def policy(self, policy: JoinPolicy) -> None:
        self.memberships.policy = policy

    # --- interfaces and views -------------------------------------------------------------------
    def set_interfaces(self, interfaces: list[Interface]) -> None:
        self._interfaces = {i.name: i for i in interfaces}
        self.finder.set_interfaces(interfaces)

    @property
    def groups(self) -> list[GroupInfo]:
        return self.memberships.groups

    def get(self, group_id: GroupId) -> GroupInfo | None:
        return self.memberships.get(group_id)

    def joined_groups(self) -> list[GroupRef]:
        """The description's ``joinedGroupList``: groups this device is in right now."""
        return self.memberships.joined_groups()

    # --- commands -------------------------------------------------------------------------------
    def create_peer(self, name: str, now: float, group_id: GroupId | None = None) -> tuple[GroupId, Out]:
        """Create a peer-to-peer group (``group_id`` to re-create a persisted one)."""
        gid, out = self.memberships.create_peer(name, group_id)
        out.actions += self._advertise_burst(gid, now)
        return gid, out

    def join_peer(self, group_id: GroupId, now: float, name: str | None = None) -> Out:
        """Join a peer-to-peer group: start advertising it (no handshake: peer groups are open)."""
        out = self.memberships.join_peer(group_id, self.registry.get(group_id), name)
        out.actions += self._advertise_burst(group_id, now)
        return out

    def create_centralised(self, name: str, now: float,
                           group_id: GroupId | None = None) -> tuple[GroupId, Out]:
        """Create a centralised group with this device as master."""
        gid, out = self.memberships.create_centralised(name, group_id)
        out.actions += self._advertise_burst(gid, now)
        return gid, out

    def join(self, group_id: GroupId, master: DeviceId, now: float) -> Out:
        """Ask ``master`` to admit this device (a JoinCentralisedDeviceGroupRequest)."""
        return self.memberships.join(group_id, master, self.registry.get(group_id), now)

    def leave(self, group_id: GroupId, now: float) -> Out:
        """Leave a group. For a group this device masters, leaving is dissolving it."""
        if self.memberships.role_of(group_id) is Role.MASTER:
            return self.dissolve(group_id, now)
        local, out = self.memberships.leave(group_id)
        if local.role is Role.PEER:
            out.actions += self._quit_burst(group_id, GroupKind.PEER, now)
        return out

    def quit_untracked(self, group_id: GroupId, kind: GroupKind, master: DeviceId | None, now: float) -> Out:
        """Quit a membership this device holds but no longer tracks (e.g. after a restart):
        the peer quit copies, or the quit notify to the master."""
        if self.memberships.get(group_id) is not None:
            return self.leave(group_id, now)
        if kind is GroupKind.PEER:
            return Out(self._quit_burst(group_id, kind, now))
        return self.memberships.quit_untracked(group_id, master)

    def dissolve(self, group_id: GroupId, now: float) -> Out:
        """Master: end the group. Multicast quit (copies) and a unicast notify to each slave."""
        out = self.memberships.dissolve(group_id)
        out.actions[:0] = self._quit_burst(group_id, GroupKind.CENTRALISED, now)
        return out

    def remove_member(self, group_id: GroupId, device_id: DeviceId, now: float) -> Out:
        """Master: remove a slave (it gets a QuitCentralisedDeviceGroupNotify)."""
        return self.memberships.remove_member(group_id, device_id)

    def stop(self, now: float, *, dissolve: bool = True) -> Out:
        """Clean shutdown: leave every group (masters dissolve theirs). ``dissolve=False``
        just falls silent (an application that re-creates its groups with the same ids at
        start-up lets its slaves re-join within the rejoin window)."""
        self._schedule.clear()
        self._responder.clear()
        out = Out()
        if dissolve:
            for info in self.memberships.groups:
                out.add(self.leave(info.group_id, now))  # the extra quit copies stay scheduled
        self.running = False
        return out

    def search(self, now: float, target: GroupId | None = None, mx: int = DEFAULT_MX,
               retries: int = SEARCH_RETRIES) -> Out:
        """Multicast SearchDeviceGroupRequest (``target`` None: every group)."""
        return Out(list(self.finder.search(now, target, mx, retries)))

    # --- advertisements -------------------------------------------------------------------------
    def _advertisement(self, info: GroupInfo, iface: Interface) -> SendMulticast:
        msg: wg.GroupDatagram
        if info.role is Role.MASTER:
            msg = wg.CentralisedDeviceGroupAdvertisement(info.group_id, self.device_id, self.max_age,
                                                         info.name, len(info.members))
        else:
            msg = wg.PeerDeviceGroupAdvertisement(info.group_id, self.device_id, self.max_age, info.name)
        return SendMulticast(iface.name, wg.encode(msg, host=group_host(iface, self.port)))

    def _quit(self, group_id: GroupId, kind: GroupKind, iface: Interface) -> SendMulticast:
        msg: wg.GroupDatagram
        if kind is GroupKind.PEER:
            msg = wg.QuitPeerDeviceGroupNotify(group_id, self.device_id)
        else:
            msg = wg.QuitCentralisedDeviceGroupAdvertisement(group_id, self.device_id)
        return SendMulticast(iface.name, wg.encode(msg, host=group_host(iface, self.port)))

    def _advertise_burst(self, group_id: GroupId, now: float) -> list[Action]:
        info = self.memberships.get(group_id)
        assert info is not None
        self._schedule.burst((group_id, info.kind), now)
        if not self._schedule.rounds_running:
            self._schedule.start_rounds(now)
        return [self._advertisement(info, i) for i in self._interfaces.values()]

    def _quit_burst(self, group_id: GroupId, kind: GroupKind, now: float) -> list[Action]:
        self._schedule.burst((group_id, kind), now, "goodbye")
        return [self._quit(group_id, kind, i) for i in self._interfaces.values()]

    # --- slave requests: the answers ------------------------------------------------------------
    def on_response(self, device_id: DeviceId, message: object, now: float) -> Out:
        """The answer to a join/renewal request this machine asked for (``SendRequest``)."""
        return self.memberships.on_response(device_id, message, now)

    def on_request_failed(self, device_id: DeviceId, message: object, now: float,
                          return_code: int = ReturnCode.BUSY, reason: str = "no answer") -> Out:
        """A ``SendRequest`` got no usable answer (no route, time-out, ErrorResponse)."""
        return self.memberships.on_request_failed(device_id, message, now, return_code, reason)

    # --- requests arriving (unicast SOAP) -------------------------------------------------------
    def on_request(self, frame: Frame, now: float, *, decision: bool | None = None,
                   address: str | None = None) -> tuple[JoinCentralisedDeviceGroupResponse | None, Out]:
        """A JoinCentralisedDeviceGroupRequest (answer returned) or QuitCentralisedDeviceGroupNotify
        (None returned: acknowledge with an empty 200). ``decision`` overrides the join policy
        (the I/O layer evaluated an asynchronous policy first)."""
        return self.memberships.on_request(frame, now, decision=decision, address=address)

    def peer_lost(self, device_id: DeviceId, now: float) -> Out:
        """The I/O layer says a device is gone (keep-alive time-out, byebye)."""
        return self.memberships.peer_lost(device_id, now)

    # --- datagrams ------------------------------------------------------------------------------
    def on_datagram(self, data: bytes, source: Address, interface: str, now: float) -> Out:
        """A datagram received on ``interface`` (non-group datagrams are ignored silently)."""
        msg, events = self.finder.on_datagram(data, source, now)
        if isinstance(msg, wg.SearchDeviceGroupRequest):
            self._on_search(msg, source, interface, now, len(data))
            return Out()
        out = Out(events=events)
        if msg is not None:
            out.add(self.memberships.on_datagram(msg, source, now))
        return self.memberships.finish(out)

    def _on_search(self, req: wg.SearchDeviceGroupRequest, source: Address, interface: str, now: float,
                   request_size: int) -> None:
        if not self.running or req.source_device_id == self.device_id:
            return
        answering = [g for g in self.memberships.advertised()
                     if req.target is None or g.group_id == req.target]
        if not answering:
            return
        # Mastered groups first (only their master answers for them), then peer groups.
        answering.sort(key=lambda g: (g.role is not Role.MASTER, str(g.group_id)))

        def encoded() -> list[Answer]:
            out: list[Answer] = []
            for info in answering:
                master = info.role is Role.MASTER
                response = wg.SearchDeviceGroupResponse(
                    info.group_id, self.device_id, info.kind, self.max_age, req.target, info.name,
                    self.device_id if master else None, req.source_device_id,
                    len(info.members) if master else None)
                out.append((wg.encode(response, host=""), wg.encode(response, host="", compact=True)))
            return out

        self._responder.respond(encoded, target=str(req.target), mx=req.mx, request_size=request_size,
                                source=source, iface=self._interfaces.get(interface), now=now)

    # --- timers ---------------------------------------------------------------------------------
    def next_deadline(self) -> float | None:
        return earliest(self._schedule.next_deadline(), self._responder.next_deadline(),
                        self.finder.next_deadline(), self.memberships.next_deadline())

    def poll(self, now: float) -> Out:
        out = Out()
        for item in self._schedule.due(now):
            if isinstance(item, Copy):
                (group_id, kind) = item.subject
                if item.kind == "goodbye":
                    out.actions += [self._quit(group_id, kind, i) for i in self._interfaces.values()]
                elif (info := self.memberships.get(group_id)) is not None and info.role is not Role.SLAVE:
                    out.actions += [self._advertisement(info, i) for i in self._interfaces.values()]
            elif self.running:  # the periodic round
                for info in self.memberships.advertised():
                    out.actions += [self._advertisement(info, i) for i in self._interfaces.values()]
        if self.running:
            out.actions += self._responder.due(now)
        copies, heard = self.finder.poll(now)
        out.actions += copies
        out.events += heard
        out.add(self.memberships.poll(now))
        return self.memberships.finish(out)

