"""Bridges from IGRS to other discovery ecosystems (optional dependencies, loaded on use).

``igrs.bridges.dnssd``: announce devices and find them over mDNS/DNS-SD (needs ``zeroconf``,
``pip install igrs[dnssd]``).
``igrs.bridges.upnp``: UPnP AV / DLNA both ways — igrs media servers and renderers as DLNA
devices, DLNA devices as IGRS devices (needs ``pip install igrs[upnp]``).
"""
