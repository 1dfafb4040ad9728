"""The sample service that ``igrs device run --sample-service`` and the demo TV share: a
volume to call and watch from a control point."""

from __future__ import annotations

from igrs.node.service import Service, action, attribute


class Volume(Service):
    """A sample service: a TV's volume, to call and watch from a control point."""

    service_type = "urn:IGRS:ServiceType:Volume:1"
    name = "Volume"
    level = attribute(int, 20, notifiable=True)
    muted = attribute(bool, False, notifiable=True)

    @action
    async def SetLevel(self, level: int) -> int:
        self.level = max(0, min(100, level))
        return self.level

    @action
    async def Mute(self, muted: bool) -> bool:
        self.muted = muted
        return self.muted
