"""Rules checked across ISDP datagrams: search answers within MX + GRACE, re-announcement
within max-age (specs/conformance/passive.md §3)."""

from __future__ import annotations

from collections import OrderedDict, deque
from dataclasses import dataclass
from typing import Any, Final

from igrs.conformance.capture import Endpoint
from igrs.conformance.cases import GRACE
from igrs.conformance.passive.datagram_rules import RESPONSES, SEARCHES
from igrs.conformance.passive.limits import MAX_ANNOUNCERS, MAX_SEARCHERS, SEARCHES_PER_SEARCHER
from igrs.conformance.passive.violations import Problem, Violation
from igrs.constants import GROUP_ST_ALL
from igrs.wire import group_datagrams as groups
from igrs.wire import isdp
from igrs.wire.ids import DeviceId


@dataclass(frozen=True, slots=True)
class _Search:
    ts: float
    kind: str
    mx: int
    source: DeviceId | None
    target: str


@dataclass(frozen=True, slots=True)
class _Announcement:
    ts: float
    max_age: int
    rule: str
    where: str
    what: str


_KIND: Final = {
    isdp.SearchDeviceRequest: "device", isdp.SearchDeviceResponse: "device",
    isdp.SearchServiceRequest: "service", isdp.SearchServiceResponse: "service",
    groups.SearchDeviceGroupRequest: "group", groups.SearchDeviceGroupResponse: "group",
}


def _announcement_key(msg: Any) -> tuple[tuple[str, ...], str] | None:
    """(schedule key, rule) of an announcement; None for other datagrams."""
    if isinstance(msg, isdp.DeviceOnlineAdvertisement):
        return ("device", str(msg.device_id)), "isdp.md §8"
    if isinstance(msg, isdp.ServiceOnlineAdvertisement):
        return ("service", str(msg.device_id), str(msg.service_id)), "isdp.md §6a"
    if isinstance(msg, groups.PeerDeviceGroupAdvertisement):
        return ("group", str(msg.group_id), str(msg.device_id)), "groups.md §5.1"
    if isinstance(msg, groups.CentralisedDeviceGroupAdvertisement):
        return ("group", str(msg.group_id), str(msg.master_id)), "groups.md §5.1"
    return None


def _farewell(msg: Any) -> tuple[str, ...] | None:
    """What a byebye/quit ends: a key, or ("*", device) for every schedule of a device."""
    if isinstance(msg, isdp.DeviceOfflineAdvertisement):
        return ("*", str(msg.device_id))
    if isinstance(msg, isdp.ServiceOfflineAdvertisement):
        return ("service", str(msg.device_id), str(msg.service_id))
    if isinstance(msg, groups.QuitPeerDeviceGroupNotify):
        return ("group", str(msg.group_id), str(msg.device_id))
    if isinstance(msg, groups.QuitCentralisedDeviceGroupAdvertisement):
        return ("group", str(msg.group_id), str(msg.master_id))
    return None


class IsdpTiming:
    """Search-response deadlines (MX + GRACE) and re-announcement before max-age."""

    def __init__(self, grace: float = GRACE) -> None:
        self.grace = grace
        self.searches: OrderedDict[Endpoint, deque[_Search]] = OrderedDict()
        self.announced: OrderedDict[tuple[str, ...], _Announcement] = OrderedDict()

    def is_searcher(self, endpoint: Endpoint) -> bool:
        return endpoint in self.searches

    def observe(self, ts: float, msg: Any, src: Endpoint, dst: Endpoint, where: str,
                what: str) -> list[Problem]:
        """Follow one decoded datagram; the timing violations it shows."""
        if isinstance(msg, SEARCHES):
            self._search(ts, msg, src)
            return []
        if isinstance(msg, RESPONSES):
            return self._response(ts, msg, dst)
        farewell = _farewell(msg)
        if farewell is not None:
            ended = [k for k in self.announced if k == farewell or (farewell[0] == "*" and farewell[1] in k)]
            for key in ended:
                del self.announced[key]
            return []
        found = _announcement_key(msg)
        return [] if found is None else self._announce(ts, msg, found[0], found[1], where, what)

    def _search(self, ts: float, msg: Any, src: Endpoint) -> None:
        target = str(msg.target) if not isinstance(msg, groups.SearchDeviceGroupRequest) else (
            GROUP_ST_ALL if msg.target is None else str(msg.target))
        queue = self.searches.pop(src, None) or deque(maxlen=SEARCHES_PER_SEARCHER)
        queue.append(_Search(ts, _KIND[type(msg)], msg.mx, msg.source_device_id, target))
        self.searches[src] = queue
        while len(self.searches) > MAX_SEARCHERS:
            self.searches.popitem(last=False)

    def _response(self, ts: float, msg: Any, dst: Endpoint) -> list[Problem]:
        kind = _KIND[type(msg)]
        rule = "groups.md §5.5 rule 7" if kind == "group" else "isdp.md §9 rule 7"
        candidates = [s for s in self.searches.get(dst, ()) if s.kind == kind and s.ts <= ts]
        if not candidates:
            return []  # no search of this capture asked for it
        out: list[Problem] = []
        requester = msg.requester
        ids = {s.source for s in candidates if s.source is not None}
        if requester is not None and ids and requester not in ids:
            return [(f"01-TargetDeviceId {requester} is not the searcher's 01-SourceDeviceId "
                     f"{sorted(map(str, ids))[0]}", "isdp.md §9 rule 8")]
        if requester is None and ids:
            out.append((f"no 01-TargetDeviceId although the search carried 01-SourceDeviceId "
                        f"{sorted(map(str, ids))[0]}", "isdp.md §9 rule 8"))
        if kind == "device" and all(s.target != str(msg.target) for s in candidates):
            out.append((f"ST {msg.target} does not echo the search's target {candidates[-1].target}",
                        "isdp.md §5"))
        latest = max(candidates, key=lambda s: s.ts)
        delay = ts - latest.ts
        if delay > latest.mx + self.grace:
            out.append((f"answered {delay:.2f} s after the search, later than MX {latest.mx} s + "
                        f"{self.grace:g} s grace", rule))
        return out

    def _announce(self, ts: float, msg: Any, key: tuple[str, ...], rule: str, where: str,
                  what: str) -> list[Problem]:
        out: list[Problem] = []
        prev = self.announced.pop(key, None)
        if prev is not None and ts - prev.ts > prev.max_age:
            out.append((f"re-announced {ts - prev.ts:.1f} s after the previous announcement, "
                        f"beyond its max-age {prev.max_age} s", rule))
        self.announced[key] = _Announcement(ts, msg.max_age, rule, where, what)
        while len(self.announced) > MAX_ANNOUNCERS:
            self.announced.popitem(last=False)
        return out

    def overdue(self, now: float) -> list[Violation]:
        """Announcements whose max-age passed by ``now`` without another or a byebye (each
        reported once)."""
        late = [(k, a) for k, a in self.announced.items() if now - a.ts > a.max_age]
        for key, _ in late:
            del self.announced[key]
        return [Violation(a.ts + a.max_age, a.where, a.what,
                          f"no re-announcement (and no byebye) within max-age {a.max_age} s of the "
                          f"announcement at {a.ts:.6f}", a.rule) for _, a in late]
