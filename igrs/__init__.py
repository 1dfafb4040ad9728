"""igrs — the IGRS (ISO/IEC 14543-5, GB/T 29265) home-network protocol stack.

The public API is imported lazily so that ``import igrs`` stays cheap on small devices:

    from igrs import Device, ControlPoint

It names what an application builds (``Device``, ``ControlPoint``, ``Service``), what it
receives (records, events, the group manager, service agents and proxies, event readers),
what it must catch (the exception hierarchy), ``current_peer`` (who is calling an action),
the profile and bridge attach functions, and the extension hook types.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_LAZY = {
    # building
    "Device": "igrs.node.device",
    "ControlPoint": "igrs.node.control",
    "discover": "igrs.node.control",
    "Service": "igrs.node.service",
    "action": "igrs.node.service",
    "attribute": "igrs.node.service",
    "current_peer": "igrs.node.service_host",
    "PeerInfo": "igrs.node.service_host",
    # received
    "DeviceRecord": "igrs.core.discovery",
    "DeviceAppeared": "igrs.core.discovery",
    "DeviceUpdated": "igrs.core.discovery",
    "DeviceGone": "igrs.core.discovery",
    "DeviceDescription": "igrs.wire.description",
    "DeviceId": "igrs.wire.ids",
    "DeviceType": "igrs.wire.ids",
    "ServiceType": "igrs.wire.ids",
    "EventReader": "igrs.net.fanout",
    "GroupManager": "igrs.node.group_manager",
    "ServiceAgent": "igrs.node.service_agent",
    "ServiceProxy": "igrs.node.service_agent",
    "EventStream": "igrs.node.service_agent",
    "Change": "igrs.node.service_agent",
    "PairedDevice": "igrs.node.keystore",
    # caught
    "IGRSError": "igrs.errors",
    "ProtocolError": "igrs.errors",
    "SecurityError": "igrs.errors",
    "RemoteError": "igrs.errors",
    "DeviceNotFound": "igrs.errors",
    "IGRSTimeoutError": "igrs.errors",
    "GroupError": "igrs.core.device_groups",
    "SubscriptionEnded": "igrs.node.service_agent",
    "DeviceLost": "igrs.node.service_agent",
    "ReturnCode": "igrs.constants",
    # profiles and bridges, plugged into a Device / ControlPoint
    "attach_file_server": "igrs.profiles.file.server",
    "attach_media_server": "igrs.profiles.av.server",
    "attach_renderer": "igrs.profiles.av.renderer",
    "attach_recorder": "igrs.profiles.av.recorder",
    "attach_multicast_group": "igrs.profiles.av.multicast",
    "attach_dnssd": "igrs.bridges.dnssd",
    # extension hooks
    "DeviceExtension": "igrs.node.extensions",
    "DiscoverySource": "igrs.node.extensions",
}

__all__ = [*_LAZY, "__version__"]

if TYPE_CHECKING:
    from igrs.bridges.dnssd import attach_dnssd
    from igrs.constants import ReturnCode
    from igrs.core.device_groups import GroupError
    from igrs.core.discovery import DeviceAppeared, DeviceGone, DeviceRecord, DeviceUpdated
    from igrs.errors import (
        DeviceNotFound,
        IGRSError,
        IGRSTimeoutError,
        ProtocolError,
        RemoteError,
        SecurityError,
    )
    from igrs.net.fanout import EventReader
    from igrs.node.control import ControlPoint, discover
    from igrs.node.device import Device
    from igrs.node.extensions import DeviceExtension, DiscoverySource
    from igrs.node.group_manager import GroupManager
    from igrs.node.keystore import PairedDevice
    from igrs.node.service import Service, action, attribute
    from igrs.node.service_agent import (
        Change,
        DeviceLost,
        EventStream,
        ServiceAgent,
        ServiceProxy,
        SubscriptionEnded,
    )
    from igrs.node.service_host import PeerInfo, current_peer
    from igrs.profiles.av.multicast import attach_multicast_group
    from igrs.profiles.av.recorder import attach_recorder
    from igrs.profiles.av.renderer import attach_renderer
    from igrs.profiles.av.server import attach_media_server
    from igrs.profiles.file.server import attach_file_server
    from igrs.wire.description import DeviceDescription
    from igrs.wire.ids import DeviceId, DeviceType, ServiceType


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'igrs' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
