"""The UPnP AV / DLNA bridge, both ways (specs/upnp-bridge.md). Optional: ``pip install
igrs[upnp]`` (async-upnp-client, python-didl-lite); nothing here is imported until used.

* ``await attach_upnp(device)`` -- IGRS -> UPnP: the device's MediaServer and MediaRenderer
  appear as UPnP ``MediaServer:1`` / ``MediaRenderer:1`` (``igrs device run --upnp``).
* ``UpnpImportBridge`` -- UPnP -> IGRS: each DLNA server and renderer on the LAN appears as a
  virtual IGRS device, pairable by PIN (``igrs bridge upnp``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from igrs.errors import IGRSError

if TYPE_CHECKING:
    from igrs.bridges.upnp.expose import UpnpExposure
    from igrs.node.device import Device


async def attach_upnp(device: Device, **kwargs: Any) -> UpnpExposure:
    """See :func:`igrs.bridges.upnp.expose.attach_upnp`."""
    try:
        from igrs.bridges.upnp.expose import attach_upnp as attach
    except ImportError as exc:  # the extra is not installed
        raise IGRSError(f"the UPnP bridge needs igrs[upnp] (pip install 'igrs[upnp]'): {exc}") from None
    return await attach(device, **kwargs)
