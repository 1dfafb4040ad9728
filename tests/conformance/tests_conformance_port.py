"""A free UDP port for module-scoped fixtures (the ``free_udp_port`` fixture is per test)."""

import netbed


def free_udp() -> int:
    return netbed.free_port("udp")
