"""igrs — the IGRS (ISO/IEC 14543-5, GB/T 29265) home-network protocol stack.

The public API is imported lazily so that ``import igrs`` stays cheap on small devices:

    from igrs import Device, ControlPoint
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_LAZY = {
    "Device": "igrs.node.device",
    "ControlPoint": "igrs.node.control",
    "Service": "igrs.node.service",
    "action": "igrs.node.service",
    "attribute": "igrs.node.service",
    "discover": "igrs.node.control",
    "DeviceRecord": "igrs.core.discovery",
    "DeviceAppeared": "igrs.core.discovery",
    "DeviceUpdated": "igrs.core.discovery",
    "DeviceGone": "igrs.core.discovery",
    "DeviceDescription": "igrs.wire.description",
    "DeviceId": "igrs.wire.ids",
    "DeviceType": "igrs.wire.ids",
    "ServiceType": "igrs.wire.ids",
    "IGRSError": "igrs.errors",
    "ProtocolError": "igrs.errors",
    "SecurityError": "igrs.errors",
    "ReturnCode": "igrs.constants",
}

__all__ = [*_LAZY, "__version__"]

if TYPE_CHECKING:
    from igrs.constants import ReturnCode
    from igrs.core.discovery import DeviceAppeared, DeviceGone, DeviceRecord, DeviceUpdated
    from igrs.errors import IGRSError, ProtocolError, SecurityError
    from igrs.node.control import ControlPoint, discover
    from igrs.node.device import Device
    from igrs.node.service import Service, action, attribute
    from igrs.wire.description import DeviceDescription
    from igrs.wire.ids import DeviceId, DeviceType, ServiceType


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'igrs' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value
