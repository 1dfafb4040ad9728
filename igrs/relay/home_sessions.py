"""The gateway's LAN side kept across remote calls: open service sessions and remote watches.

``SessionCache``: one IGRS session per (device, service) stays open between remote calls
(a CreateSession + pipe per call costs several LAN round trips); closed after ``idle``
seconds unused, and dropped on a failure so the next call opens a fresh one.

``Watches``: a remote party watches a home service's evented attributes. Each watch holds its
own session and IGRS subscription (renewed by the ``EventStream``) and forwards every change
to the party as a message in ``GATEWAY_EVENTS_NS`` (specs/relay.md, "Remote access to a
home"). A watch ends when the party unsubscribes, when an event cannot be delivered (the party
went offline or is no longer related), or when the device ends it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable
from contextlib import AsyncExitStack
from typing import Any

from igrs.relay.errors import RelayError
from igrs.relay.ids import Principal
from igrs.relay.transport import Transport
from igrs.wire.typed_text import encode_value

log = logging.getLogger(__name__)

GATEWAY_EVENTS_NS = "urn:IGRS:relay:gateway:event"  # project choice: events beside the answers
SESSION_IDLE = 60.0  # s, a LAN session unused this long is closed (project choice)
MAX_WATCHES_PER_PARTY = 8  # project choice: each holds a LAN session and subscription
MAX_WATCHES = 64  # project choice: all parties together

SessionKey = tuple[str, str | int]


class SessionCache:
    """``async with cache.use(record, service) as svc`` — an open ServiceProxy, reused."""

    def __init__(self, cp: Any, *, idle: float = SESSION_IDLE,
                 clock: Callable[[], float] | None = None) -> None:
        self.cp = cp
        self.idle = idle
        self.clock = clock or time.monotonic
        self.opened = 0  # sessions opened so far (tests: reuse is visible)
        self._open: dict[SessionKey, tuple[AsyncExitStack, Any]] = {}
        self._used: dict[SessionKey, float] = {}
        self._locks: dict[SessionKey, asyncio.Lock] = {}

    async def _get(self, key: SessionKey, record: Any, service: str | int) -> tuple[Any, bool]:
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:
            entry = self._open.get(key)
            if entry is not None:
                return entry[1], True
            stack = AsyncExitStack()
            try:
                svc = await stack.enter_async_context(self.cp.session(record, service))
            except BaseException:
                await stack.aclose()
                raise
            self.opened += 1
            self._open[key] = (stack, svc)
            return svc, False

    async def call(self, record: Any, service: str | int, fn: Callable[[Any], Any]) -> Any:
        """``await fn(svc)`` on the cached session. A failure drops the session; when a reused
        session failed below the application (the pipe or connection: OSError), the call is
        retried once on a fresh one — the device never saw it."""
        key = (str(record.device_id), service)
        for attempt in (0, 1):
            svc, reused = await self._get(key, record, service)
            self._used[key] = self.clock()
            try:
                return await fn(svc)
            except OSError:
                await self.drop(key)
                if not reused or attempt:
                    raise
            except BaseException:
                await self.drop(key)
                raise
        raise AssertionError("unreachable")

    async def drop(self, key: SessionKey) -> None:
        entry = self._open.pop(key, None)
        self._used.pop(key, None)
        if entry is not None:
            with contextlib.suppress(Exception):
                await entry[0].aclose()

    async def sweep(self) -> None:
        """Close the sessions idle longer than ``idle``."""
        now = self.clock()
        for key in [k for k, t in self._used.items() if now - t > self.idle]:
            await self.drop(key)

    async def close(self) -> None:
        for key in list(self._open):
            await self.drop(key)

    def __len__(self) -> int:
        return len(self._open)


class Watches:
    """The gateway's remote watches, by (party, watch id chosen by the party)."""

    def __init__(self, client: Transport, cp: Any) -> None:
        self.client = client
        self.cp = cp
        self._tasks: dict[tuple[str, int], asyncio.Task[None]] = {}

    def count(self, party: Principal | None = None) -> int:
        if party is None:
            return len(self._tasks)
        return sum(1 for p, _ in self._tasks if p == str(party))

    async def start(self, party: Principal, wid: int, record: Any, service: str | int,
                    names: list[str]) -> None:
        """Subscribe on the LAN (errors raise to the caller), then forward in the background."""
        key = (str(party), wid)
        if key in self._tasks:
            raise ValueError(f"watch {wid} exists")
        stack = AsyncExitStack()
        try:
            svc = await stack.enter_async_context(self.cp.session(record, service))
            stream = await stack.enter_async_context(svc.subscribe(*names))
        except BaseException:
            await stack.aclose()
            raise
        task = asyncio.create_task(self._forward(party, wid, stack, stream))
        self._tasks[key] = task
        task.add_done_callback(lambda _t: self._tasks.pop(key, None))

    async def _forward(self, party: Principal, wid: int, stack: AsyncExitStack, stream: Any) -> None:
        reason = "ended by the device"
        try:
            async for change in stream:
                body = {"watch": wid, "name": change.name, "value": encode_value(change.value),
                        "seq": change.sequence}
                await self.client.send(party, json.dumps(body, separators=(",", ":")),
                                       namespace=GATEWAY_EVENTS_NS)
        except RelayError as e:  # the party is gone or no longer related: stop watching
            log.info("watch %s of %s ended: %s", wid, party, e)
            reason = ""
        except asyncio.CancelledError:
            reason = ""
            raise
        except Exception as e:
            reason = f"{type(e).__name__}: {e}"
        finally:
            with contextlib.suppress(Exception):
                await stack.aclose()
            if reason:
                with contextlib.suppress(RelayError):
                    await self.client.send(party, json.dumps({"watch": wid, "end": reason}),
                                           namespace=GATEWAY_EVENTS_NS, wait=False)

    async def stop(self, party: Principal, wid: int) -> bool:
        task = self._tasks.pop((str(party), wid), None)
        if task is None:
            return False
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        return True

    async def close(self) -> None:
        for party, wid in list(self._tasks):
            await self.stop(Principal.parse(party), wid)
