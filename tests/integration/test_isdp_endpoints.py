"""ISDP endpoints on loopback: receive buffers, delivery from the read callback."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

from igrs.constants import ISDP_RECV_BUFFER, MAX_DATAGRAM
from igrs.core.discovery import Interface
from igrs.net.isdp import IsdpEndpoints

LO = Interface.from_cidr("lo", "127.0.0.1/8")


def rmem_max() -> int:
    return int(Path("/proc/sys/net/core/rmem_max").read_text())


async def test_every_isdp_socket_asks_for_the_receive_buffer(free_udp_port: int) -> None:
    endpoints = IsdpEndpoints([LO], free_udp_port, lambda *_: None)
    await endpoints.start()
    try:
        # Linux doubles what is asked (its bookkeeping), capped at rmem_max
        expected = 2 * min(ISDP_RECV_BUFFER, rmem_max())
        sizes = [stream._transport.get_extra_info("socket").getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
                 for stream in endpoints._streams]
        assert len(sizes) == 3 and all(size == expected for size in sizes), sizes  # two groups, unicast
    finally:
        await endpoints.close()


async def test_datagrams_reach_the_handler_in_order_despite_a_failing_call(free_udp_port: int) -> None:
    got: list[bytes] = []
    arrived = asyncio.Event()

    def handler(data: bytes, source: tuple[str, int], interface: str) -> None:
        got.append(data)
        assert source[0] == "127.0.0.1" and interface == "lo"
        if data == b"boom":
            raise RuntimeError("a handler bug")
        if data == b"last":
            arrived.set()

    endpoints = IsdpEndpoints([LO], free_udp_port, handler)
    await endpoints.start()
    try:
        address = endpoints.local_address("lo")
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            for payload in (b"first", b"boom", b"x" * (MAX_DATAGRAM + 1), b"last"):
                s.sendto(payload, address)
        await asyncio.wait_for(arrived.wait(), 2.0)
        assert got == [b"first", b"boom", b"last"]
        assert endpoints.drops["oversized"] == 1
    finally:
        await endpoints.close()
