"""Bridges from IGRS to other discovery ecosystems (optional dependencies, loaded on use).

``igrs.bridges.dnssd``: announce devices and find them over mDNS/DNS-SD (needs ``zeroconf``,
``pip install igrs[dnssd]``).
"""
