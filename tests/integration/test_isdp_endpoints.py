"""ISDP endpoints on loopback: receive buffers, delivery from the read callback."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path
from typing import Any

from igrs.constants import ISDP_RECV_BUFFER, MAX_DATAGRAM
from igrs.core.discovery import Interface
from igrs.net import isdp as isdp_net
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


async def test_a_burst_is_read_in_batches_of_the_socket(free_udp_port: int, monkeypatch: Any) -> None:
    """Datagrams already queued in the socket are read by one read callback, up to
    _READ_BATCH of them, instead of one event-loop iteration each; sizes are checked on the
    datagrams read so (one larger than MAX_DATAGRAM arrives cut and is still counted)."""
    callbacks = 0
    received = isdp_net._DirectProtocol.datagram_received

    def counting(self: isdp_net._DirectProtocol, data: bytes, addr: Any) -> None:
        nonlocal callbacks
        callbacks += 1
        received(self, data, addr)

    monkeypatch.setattr(isdp_net._DirectProtocol, "datagram_received", counting)
    got: list[bytes] = []
    done = asyncio.Event()
    burst = [b"%d" % i for i in range(100)]  # within the receive buffer of any rmem_max
    sizes = [MAX_DATAGRAM, MAX_DATAGRAM + 1, 10 * MAX_DATAGRAM]

    def handler(data: bytes, source: tuple[str, int], interface: str) -> None:
        got.append(data)
        if data == b"end":
            done.set()

    endpoints = IsdpEndpoints([LO], free_udp_port, handler)
    await endpoints.start()
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            for payload in [*burst, *(b"y" * n for n in sizes), b"end"]:
                s.sendto(payload, endpoints.local_address("lo"))  # all queued before the loop reads
        await asyncio.wait_for(done.wait(), 2.0)
        assert got == [*burst, b"y" * MAX_DATAGRAM, b"end"]
        assert endpoints.drops["oversized"] == 2
        assert callbacks <= len(got) // isdp_net._READ_BATCH + 3, callbacks  # not one per datagram
    finally:
        await endpoints.close()


async def test_a_handler_closing_the_endpoints_stops_the_batch(free_udp_port: int) -> None:
    got: list[bytes] = []
    endpoints: IsdpEndpoints

    def handler(data: bytes, source: tuple[str, int], interface: str) -> None:
        got.append(data)
        if data == b"close":
            asyncio.get_running_loop().create_task(endpoints.close())
            for stream in endpoints._streams:
                stream.close()

    endpoints = IsdpEndpoints([LO], free_udp_port, handler)
    await endpoints.start()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for payload in (b"a", b"close", b"b", b"c"):
            s.sendto(payload, endpoints.local_address("lo"))
    await asyncio.sleep(0.2)
    assert got == [b"a", b"close"]  # nothing read from a closed transport
    await endpoints.close()
