"""Is a known device still at its own address? The probe behind the registry's
``ProbeLocation`` action (specs/isdp.md §11a)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence

from igrs.constants import REPOINT_PROBE_TIMEOUT
from igrs.core.discovery import ControlPointDiscovery, DiscoveryEvent, ProbeLocation
from igrs.errors import IGRSError
from igrs.net.http import IgrsHttpClient
from igrs.wire import messages
from igrs.wire.ids import DeviceId

log = logging.getLogger(__name__)


async def answers_at(http: IgrsHttpClient, location: str, device_id: DeviceId,
                     timeout: float = REPOINT_PROBE_TIMEOUT) -> bool:
    """True when ``device_id`` answers a GetDeviceDescriptionRequest at ``location`` (any IGRS
    answer it sends counts, an error or a busy one included: it is still there); False when
    the connection fails, times out, or someone else or something else answers."""
    try:
        async with asyncio.timeout(timeout):
            _, frame = await http.send(location, messages.GetDeviceDescriptionRequest(), device_id)
    except (IGRSError, OSError, TimeoutError) as exc:
        log.debug("probe of %s at %s: no answer (%s)", device_id, location, exc)
        return False
    return frame is not None and frame.routing.source == device_id


class ProbeRunner:
    """Runs a registry's ``ProbeLocation`` actions in the background and feeds each result
    back to it (``probe_result``); ``on_events`` receives the events that follow."""

    def __init__(self, http: IgrsHttpClient, registry: ControlPointDiscovery,
                 on_events: Callable[[list[DiscoveryEvent]], None]) -> None:
        self.http = http
        self.registry = registry
        self.on_events = on_events
        self._tasks: set[asyncio.Task[None]] = set()

    def run(self, actions: Sequence[object]) -> None:
        for action in actions:
            if isinstance(action, ProbeLocation):
                task = asyncio.create_task(self._probe(action), name="igrs-location-probe")
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)

    async def _probe(self, probe: ProbeLocation) -> None:
        answered = await answers_at(self.http, probe.location, probe.device_id)
        now = asyncio.get_running_loop().time()
        self.on_events(self.registry.probe_result(probe.device_id, probe.location, answered, now))

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await task
