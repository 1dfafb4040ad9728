#!/usr/bin/env python3
"""Control point and device in one process, N sealed invocations, 32 in flight (issue 15).

For instruction counts, independent of the machine's load: run it under callgrind twice,

    valgrind --tool=callgrind --callgrind-out-file=a.out python benchmarks/inproc_invoke.py 100
    valgrind --tool=callgrind --callgrind-out-file=b.out python benchmarks/inproc_invoke.py 600

and divide the difference of the totals by 500: user-space instructions per call, both sides.
``PYTHONHASHSEED=0`` keeps two runs of the same code within ≈ 0.5 %. With ``--collect`` (under
``valgrind --tool=callgrind --instr-atstart=no``) the calls after 100 warm-up ones are the only
ones instrumented (``callgrind_control -i on/off``): a profile of the calls alone for
callgrind_annotate.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

CONCURRENCY = 32


def _instrument(on: bool) -> None:
    subprocess.run(["callgrind_control", "-i", "on" if on else "off", str(os.getpid())],
                   check=True, stdout=subprocess.DEVNULL)


async def main(calls: int, collect: bool) -> None:
    from bench_core import LO, PAYLOAD, SERVICE, _make_service

    from igrs import ControlPoint, Device

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with tempfile.TemporaryDirectory(prefix="igrs-inproc-") as tmp:
        pins: asyncio.Queue[str] = asyncio.Queue()
        service = _make_service()()
        dev = Device(name="Bench TV", device_type="TV", interfaces=LO, port=port, http_port=0,
                     state_dir=Path(tmp) / "device", watch_interfaces=False, on_pin=pins.put_nowait)
        service.device = dev
        dev.add_service(service)
        async with dev:
            cp = ControlPoint(interfaces=LO, port=port, keepalive_interval=0, state_dir=Path(tmp) / "cp")
            await cp.start()
            try:
                for _ in range(10):
                    if await cp.search(timeout=0.5, target=dev.device_id, mx=1):
                        break

                async def typed(_digits: int) -> str:
                    return await pins.get()

                await cp.pair(dev.device_id, typed)
                agent = await cp.agent(dev.device_id)
                proxy = await agent.open(SERVICE)

                async def run(total: int) -> None:
                    counter = iter(range(total))

                    async def worker() -> None:
                        for i in counter:
                            got = await proxy.Echo(text=PAYLOAD, n=i)
                            assert got == f"{PAYLOAD}{i}", got

                    await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))

                if collect:
                    await run(100)
                    _instrument(True)
                await run(calls)
                if collect:
                    _instrument(False)
                await proxy.close()
            finally:
                await cp.stop()


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if a != "--collect"]
    asyncio.run(main(int(args[0]) if args else 600, "--collect" in sys.argv[1:]))
