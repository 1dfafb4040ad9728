"""``GroupManager``: the asyncio driver of ``igrs.core.device_groups.DeviceGroups`` (specs/groups.md).

Transport-agnostic: it is given two async callables and never opens a socket itself.

* ``execute(actions)`` sends datagram actions (``SendMulticast`` / ``SendUnicast`` of
  ``igrs.core.discovery``); ``IsdpEndpoints.execute`` or ``Device._execute`` fit as they are.
* ``send_request(device_id, message) -> Frame | None`` sends one unicast SOAP message to a
  device (over a secure pipe, in the Device) and returns the answer frame, None for an empty
  200 (an exception or an ``ErrorResponse`` counts as "no usable answer").

The owner feeds it datagrams (``on_datagram``), unicast group requests
(``handle_request``), and device losses (``peer_lost``); the clock is the running loop's.
``igrs.node.device.Device(groups=True)`` is such an owner: ``device.groups``.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import random
from collections.abc import Awaitable, Callable, Sequence

from igrs.constants import (
    DEFAULT_MAX_AGE,
    DEFAULT_MX,
    GROUP_JOIN_TIMEOUT,
    GROUP_LEASE,
    GROUP_REJOIN_WINDOW,
    IGRS_PORT,
)
from igrs.core.datagram_schedule import Interface, SendMulticast, SendUnicast
from igrs.core.device_groups import (
    DeviceGroups,
    GroupError,
    GroupEvent,
    GroupInfo,
    GroupJoined,
    GroupRecord,
    JoinContext,
    JoinedGroupsChanged,
    JoinRefused,
    Out,
    SendRequest,
    allow_all,
)
from igrs.errors import RemoteError
from igrs.net.driver import TimerDriver
from igrs.net.fanout import EventReader, FanOut
from igrs.wire.answers import return_code
from igrs.wire.bodies.groups import JoinCentralisedDeviceGroupRequest, JoinCentralisedDeviceGroupResponse
from igrs.wire.description import GroupRef
from igrs.wire.group_datagrams import GroupId, GroupKind, is_group_datagram
from igrs.wire.ids import DeviceId
from igrs.wire.messages import ErrorResponse, Frame, SoapMessage

log = logging.getLogger(__name__)

DatagramAction = SendMulticast | SendUnicast
Execute = Callable[[Sequence[DatagramAction]], Awaitable[None]]
SendRequestFn = Callable[[DeviceId, SoapMessage], Awaitable[Frame | None]]
Policy = Callable[[JoinContext], bool] | Callable[[JoinContext], Awaitable[bool]]
MAX_CONCURRENT_REQUESTS = 16  # unicast group messages in flight (a dissolve notifies every slave)
POLICY_TIMEOUT = 30.0  # s an asynchronous join policy may take (e.g. asking the user); then refuse

__all__ = ["GroupManager", "is_group_datagram"]


class GroupManager:
    """Device groups of one device, on the event loop.

    >>> async with Device(name="TV", groups=True) as tv:
    ...     info = await tv.groups.create_centralised("Living room")
    """

    def __init__(
        self,
        device_id: DeviceId,
        name: str = "",
        *,
        execute: Execute,
        send_request: SendRequestFn,
        interfaces: Sequence[Interface] = (),
        policy: Policy = allow_all,
        max_age: int = DEFAULT_MAX_AGE,
        lease: int = GROUP_LEASE,
        port: int = IGRS_PORT,
        request_timeout: float = GROUP_JOIN_TIMEOUT,
        rejoin_window: float = GROUP_REJOIN_WINDOW,
        on_joined_groups_changed: Callable[[list[GroupRef]], None] | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self._async_policy = inspect.iscoroutinefunction(policy)
        sync_policy: Callable[[JoinContext], bool] = allow_all if self._async_policy else policy  # type: ignore[assignment]
        self.core = DeviceGroups(device_id, name, max_age=max_age, lease=lease, port=port,
                                 policy=sync_policy, rejoin_window=rejoin_window, rng=rng)
        self.core.set_interfaces(list(interfaces))
        self._policy = policy
        self._execute = execute
        self._send_request = send_request
        self.request_timeout = request_timeout
        self.on_joined_groups_changed = on_joined_groups_changed
        self._driver = TimerDriver(self.core.next_deadline, self._poll)
        self._events: FanOut[GroupEvent] = FanOut()
        self._tasks: set[asyncio.Task[None]] = set()
        self._slots = asyncio.Semaphore(MAX_CONCURRENT_REQUESTS)
        self._waiters: dict[GroupId, asyncio.Future[GroupEvent]] = {}
        self._started = False

    # --- lifecycle ---------------------------------------------------------------------------
    @property
    def device_id(self) -> DeviceId:
        return self.core.device_id

    def set_interfaces(self, interfaces: Sequence[Interface]) -> None:
        self.core.set_interfaces(list(interfaces))

    async def start(self) -> None:
        self._driver.start()
        self._started = True

    async def stop(self, *, dissolve: bool = True) -> None:
        """Leave every group (masters dissolve theirs), send the quit copies, stop timers."""
        if not self._started:
            return
        loop = asyncio.get_running_loop()
        await self._driver.stop()
        await self._apply(self.core.stop(loop.time(), dissolve=dissolve))
        while (deadline := self.core.next_deadline()) is not None and deadline <= loop.time() + 1.0:
            await asyncio.sleep(max(0.0, deadline - loop.time()))
            await self._apply(self.core.poll(loop.time()))
        if self._tasks:  # the quit notifies to the master / the slaves
            await asyncio.wait(list(self._tasks), timeout=self.request_timeout)
        for task in list(self._tasks):
            task.cancel()
        self._started = False
        self._events.close()

    def _now(self) -> float:
        return asyncio.get_running_loop().time()

    # --- views -------------------------------------------------------------------------------
    @property
    def groups(self) -> list[GroupInfo]:
        return self.core.groups

    @property
    def heard(self) -> list[GroupRecord]:
        """Groups heard on the LAN (advertisements and search answers)."""
        return self.core.registry.groups

    def joined_groups(self) -> list[GroupRef]:
        """For the device description's ``joinedGroupList``."""
        return self.core.joined_groups()

    def events(self) -> EventReader[GroupEvent]:
        """Group events from the moment of this call (not of the first read) until the manager
        stops; ``aclose()`` the reader when done. A slow reader loses its oldest events
        (igrs.net.fanout, specs/events.md §9)."""
        return self._events.subscribe()

    @property
    def events_dropped(self) -> int:
        """Events slow ``events()`` readers lost (all readers together)."""
        return self._events.dropped

    # --- inputs from the I/O layer -------------------------------------------------------------
    def on_datagram(self, data: bytes, source: tuple[str, int], interface: str) -> None:
        """A datagram from the ISDP endpoints (non-group ones are ignored)."""
        self._run(self.core.on_datagram(data, source, interface, self._now()))

    async def handle_request(self, frame: Frame, address: str | None = None) -> SoapMessage | None:
        """A unicast JoinCentralisedDeviceGroupRequest (returns the response to send) or
        QuitCentralisedDeviceGroupNotify (returns None: acknowledge with an empty 200)."""
        decision: bool | None = None
        msg = frame.message
        if self._async_policy and isinstance(msg, JoinCentralisedDeviceGroupRequest):
            info = self.core.get(msg.group_id)
            if info is not None and frame.routing.source not in info.members:
                ctx = JoinContext(msg.group_id, frame.routing.source, msg.device_name, len(info.members))
                try:
                    decision = bool(await asyncio.wait_for(self._policy(ctx), POLICY_TIMEOUT))  # type: ignore[arg-type]
                except Exception:
                    log.warning("join policy failed for %s; refusing", frame.routing.source, exc_info=True)
                    decision = False
        response, out = self.core.on_request(frame, self._now(), decision=decision, address=address)
        self._run(out)
        return response

    def peer_lost(self, device_id: DeviceId) -> None:
        """A device is gone (pipe keep-alive time-out, or its DeviceOfflineAdvertisement)."""
        self._run(self.core.peer_lost(device_id, self._now()))

    # --- commands ------------------------------------------------------------------------------
    async def create_peer(self, name: str, group_id: GroupId | None = None) -> GroupInfo:
        gid, out = self.core.create_peer(name, self._now(), group_id)
        await self._apply(out)
        return self._info(gid)

    async def create_centralised(self, name: str, group_id: GroupId | None = None) -> GroupInfo:
        gid, out = self.core.create_centralised(name, self._now(), group_id)
        await self._apply(out)
        return self._info(gid)

    async def join_peer(self, group_id: GroupId, name: str | None = None) -> GroupInfo:
        await self._apply(self.core.join_peer(group_id, self._now(), name))
        return self._info(group_id)

    async def join(self, group_id: GroupId, master: DeviceId | None = None) -> GroupInfo:
        """Join a centralised group through its master (taken from the registry if not given);
        returns when admitted, raises RemoteError (with the ReturnCode) when refused."""
        if master is None:
            record = self.core.registry.get(group_id)
            if record is None or record.master is None:
                raise GroupError(f"unknown centralised group {group_id}: search for it first")
            master = record.master
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[GroupEvent] = loop.create_future()
        self._waiters[group_id] = waiter
        try:
            await self._apply(self.core.join(group_id, master, self._now()))
            event = await asyncio.wait_for(waiter, self.request_timeout + 1.0)
        finally:
            self._waiters.pop(group_id, None)
        if isinstance(event, JoinRefused):
            raise RemoteError(event.reason or f"join refused ({event.return_code})",
                              return_code=return_code(event.return_code))
        return self._info(group_id)

    async def leave(self, group_id: GroupId) -> None:
        await self._apply(self.core.leave(group_id, self._now()))

    async def quit_untracked(self, group_id: GroupId, kind: GroupKind, master: DeviceId | None = None) -> None:
        """Quit a membership held by this device id but not tracked here (e.g. after a restart)."""
        await self._apply(self.core.quit_untracked(group_id, kind, master, self._now()))

    async def dissolve(self, group_id: GroupId) -> None:
        await self._apply(self.core.dissolve(group_id, self._now()))

    async def remove_member(self, group_id: GroupId, device_id: DeviceId) -> None:
        await self._apply(self.core.remove_member(group_id, device_id, self._now()))

    async def search(self, timeout: float = 1.5, target: GroupId | None = None,
                     mx: int = DEFAULT_MX) -> list[GroupRecord]:
        """Multicast SearchDeviceGroupRequest; after ``timeout`` return the groups heard since."""
        started = self._now()
        await self._apply(self.core.search(started, target, mx))
        self._driver.wake()
        await asyncio.sleep(timeout)
        return sorted((g for g in self.core.registry.groups
                       if g.last_seen >= started and (target is None or g.group_id == target)),
                      key=lambda g: (g.name, str(g.group_id)))

    def _info(self, group_id: GroupId) -> GroupInfo:
        info = self.core.get(group_id)
        if info is None:
            raise GroupError(f"not in group {group_id}")
        return info

    # --- output --------------------------------------------------------------------------------
    async def _poll(self, now: float) -> None:
        # No wake-up from here: the driver reads the next deadline after each poll anyway.
        await self._apply(self.core.poll(now), wake=False)

    def _run(self, out: Out) -> None:
        """Apply an output from a synchronous input: events now, sends in a task."""
        self._publish(out.events)
        out.events = []
        if out.actions:
            self._spawn(self._apply(out))
        self._driver.wake()

    async def _apply(self, out: Out, *, wake: bool = True) -> None:
        self._publish(out.events)
        datagrams: list[DatagramAction] = []
        for action in out.actions:
            if isinstance(action, SendRequest):
                self._spawn(self._request(action))
            else:
                datagrams.append(action)
        if datagrams:
            await self._execute(datagrams)
        if wake:
            self._driver.wake()

    def _spawn(self, coro: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _request(self, action: SendRequest) -> None:
        async with self._slots:
            try:
                frame = await asyncio.wait_for(self._send_request(action.device_id, action.message),
                                               self.request_timeout)
            except Exception as exc:  # no route, time-out, refused connection ...
                log.debug("group request %s to %s failed: %s", action.message.message_type,
                          action.device_id, exc)
                out = self.core.on_request_failed(action.device_id, action.message, self._now(),
                                                  reason=str(exc) or type(exc).__name__)
            else:
                if frame is None:
                    return  # a notify's acknowledgement
                reply = frame.message
                if isinstance(reply, JoinCentralisedDeviceGroupResponse):
                    out = self.core.on_response(action.device_id, reply, self._now())
                elif isinstance(reply, ErrorResponse):
                    out = self.core.on_request_failed(action.device_id, action.message, self._now(),
                                                      reply.status.return_code, reply.status.reason)
                else:
                    return  # a notify's acknowledgement
        await self._apply(out)

    def _publish(self, events: list[GroupEvent]) -> None:
        for event in events:
            gid = getattr(event, "group_id", None) or getattr(getattr(event, "group", None), "group_id", None)
            if isinstance(event, GroupJoined | JoinRefused) and gid in self._waiters:
                waiter = self._waiters[gid]
                if not waiter.done():
                    waiter.set_result(event)
            if isinstance(event, JoinedGroupsChanged) and self.on_joined_groups_changed is not None:
                with contextlib.suppress(Exception):
                    self.on_joined_groups_changed(self.core.joined_groups())
            self._events.publish(event)
