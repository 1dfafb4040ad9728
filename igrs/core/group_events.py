"""What device groups say and decide (clauses 9.5 and 9.8), shared by the parts of
``igrs.core.device_groups``: the actions and events they return, the snapshots they give,
the join policy they ask. Rules: specs/groups.md.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum

from igrs.constants import ReturnCode
from igrs.core.datagram_schedule import SendMulticast, SendUnicast
from igrs.errors import IGRSError
from igrs.wire.bodies.groups import GroupSoapMessage
from igrs.wire.description import GroupRef
from igrs.wire.group_datagrams import GroupId, GroupKind
from igrs.wire.ids import DeviceId

__all__ = [
    "Action", "GroupAppeared", "GroupDissolved", "GroupError", "GroupEvent", "GroupFormed", "GroupGone",
    "GroupInfo", "GroupJoined", "GroupLeft", "GroupRecord", "GroupUpdated", "JoinContext", "JoinPolicy",
    "JoinRefused", "JoinedGroupsChanged", "MasterLost", "MasterReturned", "MemberJoined", "MemberLeft", "Out",
    "Role", "SendRequest", "State", "allow_all",
]


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
    # centralised: the slaves in the master's table, by its latest advertisement or search
    # answer (None until it said); peer: None (the members are the devices heard)
    member_count: int | None = None


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

