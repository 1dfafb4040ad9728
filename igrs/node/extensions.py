"""Plugging into a ``Device`` or a ``ControlPoint`` from above.

The device layer imports nothing above it. A bridge to another ecosystem (igrs.bridges.dnssd
today, a UPnP bridge later) or any add-on hands the node an object; the node calls it at its
lifecycle points and offers it a small public surface. specs/dnssd.md ("Extension hooks").

**Device** — a ``DeviceExtension`` (announce the device elsewhere, mirror its services, ...)::

    await device.add_extension(ext)     # started now if the device runs, else by start()
    await device.remove_extension(ext)  # stopped now if the device runs

* ``start()`` — in ``device.start()`` once its endpoints are open (``device.http.port``,
  ``device.interfaces``, ``device.locations`` are known) and before its first ISDP
  announcement; an exception aborts the start (extensions already started are stopped).
* ``update()`` — after what the device publishes changed: its interfaces or addresses (so its
  LOCATIONs) or its service list. Errors are logged, never raised into the device.
* ``stop()`` — first thing in ``device.stop()``, before the ISDP byebye (so an extension says
  its own goodbye while the device still answers); errors are logged.

**ControlPoint** — a ``DiscoverySource``, another way to find devices (mDNS, a directory)::

    await cp.add_discovery_source(src)     # started now if the control point runs, else by start()
    await cp.remove_discovery_source(src)

* ``start()`` / ``stop()`` — with the control point (its ``interfaces`` known at start).
* ``searching(target)`` — at the start of every ``cp.search()``: offer what you hold now.

A source feeds what it finds back through ``cp.offer(record)`` (a device seen: merged into
the registry like an ISDP sighting of the same id, ``DeviceAppeared``/``DeviceUpdated`` to
``events()`` readers) and ``cp.withdraw(device_id, address, reason)`` (gone: forgotten only if
it had been seen at that address, as an ISDP byebye). ``ControlPoint(isdp_search=False)``
leaves finding devices to the sources alone.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from igrs.wire.isdp import SearchTarget


@runtime_checkable
class DeviceExtension(Protocol):
    """Called by the ``Device`` it was added to at its lifecycle points (module docstring)."""

    async def start(self) -> None: ...

    async def update(self) -> None: ...

    async def stop(self) -> None: ...


@runtime_checkable
class DiscoverySource(Protocol):
    """A way for a ``ControlPoint`` to find devices besides ISDP (module docstring)."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    def searching(self, target: SearchTarget) -> None: ...


__all__ = ["DeviceExtension", "DiscoverySource"]
