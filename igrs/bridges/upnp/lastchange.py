"""LastChange events (public source: AVTransport:1 §2.2.1 / RenderingControl:1 §2.2.1, the
``urn:schemas-upnp-org:metadata-1-0/AVT/`` and ``.../RCS/`` event schemas): a service's state as
``{variable: (value, attributes)}``; the first event of a subscriber carries all of it, later
events only what changed, at most one every LASTCHANGE_INTERVAL (specs/upnp-bridge.md §4)."""

from __future__ import annotations

import asyncio
import xml.etree.ElementTree as ET
from collections.abc import Callable

from igrs.bridges.upnp.constants import LASTCHANGE_INTERVAL

AVT_EVENT_NS = "urn:schemas-upnp-org:metadata-1-0/AVT/"
RCS_EVENT_NS = "urn:schemas-upnp-org:metadata-1-0/RCS/"

# variable -> (value, extra attributes such as channel="Master")
State = dict[str, tuple[str, tuple[tuple[str, str], ...]]]


def event_xml(namespace: str, state: State) -> str:
    root = ET.Element("Event", {"xmlns": namespace})
    instance = ET.SubElement(root, "InstanceID", {"val": "0"})
    for name, (value, extra) in state.items():
        ET.SubElement(instance, name, {**dict(extra), "val": value})
    return ET.tostring(root, encoding="unicode")


class LastChange:
    """Keeps the last evented state of one service; ``changed()`` schedules an event of the
    difference (``publish(xml)`` sets the service's LastChange variable, which sends it)."""

    def __init__(self, namespace: str, state: Callable[[], State], publish: Callable[[str], None]) -> None:
        self.namespace = namespace
        self.state = state
        self.publish = publish
        self.sent: State = state()
        self._timer: asyncio.TimerHandle | None = None
        self._last = 0.0

    def full(self) -> str:
        """The whole current state (the first event of a subscriber)."""
        return event_xml(self.namespace, self.state())

    def changed(self) -> None:
        if self._timer is not None:
            return
        loop = asyncio.get_running_loop()
        at = max(loop.time(), self._last + LASTCHANGE_INTERVAL)
        self._timer = loop.call_at(at, self.flush)

    def flush(self) -> None:
        self._timer = None
        self._last = asyncio.get_running_loop().time()
        now = self.state()
        delta = {k: v for k, v in now.items() if self.sent.get(k) != v}
        self.sent = now
        if delta:
            self.publish(event_xml(self.namespace, delta))

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
