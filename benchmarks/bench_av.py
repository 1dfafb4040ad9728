#!/usr/bin/env python3
"""AV profile benchmark: streaming throughput of the stream transport (``/av/res/…`` of a
``MediaServer`` on an ``igrs.Device``) against aiohttp's plain ``web.FileResponse`` serving
the same file on the same machine — one client, then 20 concurrent clients. Clients are curl
processes (``-o /dev/null``) so the Python server is the only thing measured in Python.

    python benchmarks/bench_av.py            # 512 MiB file, 3 rounds
    python benchmarks/bench_av.py --quick    # 128 MiB, 2 rounds

Multicast: none (the device uses ``interfaces=["lo"]`` and a random free UDP port).
One ``BENCH-RESULT {json}`` line per figure (benchmarks/README.md).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from _result import BenchResult
from aiohttp import web

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from igrs import Device
from igrs.profiles.av import attach_media_server
from igrs.profiles.av.didl import from_didl

BENCH = "av"
QUICK = os.environ.get("IGRS_BENCH_QUICK", "") not in ("", "0")


@dataclass
class Result(BenchResult):
    bench: str = BENCH


async def curl_many(url: str, clients: int) -> tuple[float, int]:
    """Wall time and total bytes for ``clients`` concurrent full downloads of ``url``."""
    start = time.perf_counter()
    procs = [
        await asyncio.create_subprocess_exec(
            "curl", "-s", "-o", "/dev/null", "-w", "%{size_download}", url, stdout=asyncio.subprocess.PIPE
        )
        for _ in range(clients)
    ]
    outs = [await p.communicate() for p in procs]
    wall = time.perf_counter() - start
    return wall, sum(int(o[0] or b"0") for o in outs)


async def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--size-mib", type=int, default=0)
    parser.add_argument("--clients", type=int, default=20)
    args = parser.parse_args()
    quick = args.quick or QUICK
    size = (args.size_mib or (128 if quick else 512)) << 20
    rounds = 2 if quick else 3
    if shutil.which("curl") is None:
        print("curl not installed (apt-get install curl)", file=sys.stderr)
        return 1
    tmp = Path(tempfile.mkdtemp(prefix="igrs-bench-av-"))
    try:
        media = tmp / "media"
        media.mkdir()
        big = media / "big.ts"
        with big.open("wb") as f:  # sparse-free, not all zeros
            block = os.urandom(1 << 20)
            for _ in range(size >> 20):
                f.write(block)
        print(f"file: {size >> 20} MiB; rounds: {rounds}; concurrent clients: {args.clients}", flush=True)

        async def plain(request: web.Request) -> web.StreamResponse:
            return web.FileResponse(big, chunk_size=256 * 1024)

        app = web.Application()
        app.router.add_get("/big.ts", plain)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        base_url = f"http://127.0.0.1:{runner.addresses[0][1]}/big.ts"

        port = random.randint(20000, 30000)
        async with Device(
            name="Bench PC", interfaces=["lo"], port=port, http_port=0, watch_interfaces=False
        ) as dev:
            server = await attach_media_server(dev, [media], watch_interval=None, use_ffprobe=False)
            try:
                share = from_didl((await server.Browse("0"))["Result"])[0].id
                url = from_didl((await server.Browse(share))["Result"])[0].url
                for clients, label in ((1, "1 client"), (args.clients, f"{args.clients} clients")):
                    best_subject = best_base = 0.0
                    for _ in range(rounds):  # alternate, keep the best round of each
                        wall, n = await curl_many(base_url, clients)
                        assert n == size * clients, (n, size * clients)
                        best_base = max(best_base, n / wall / 1e6)
                        wall, n = await curl_many(url, clients)
                        assert n == size * clients, (n, size * clients)
                        best_subject = max(best_subject, n / wall / 1e6)
                    ratio = best_subject / best_base
                    print(
                        f"{label:>12}: igrs /av/ {best_subject:8.0f} MB/s   aiohttp FileResponse "
                        f"{best_base:8.0f} MB/s   ratio {ratio:.2f}",
                        flush=True,
                    )
                    Result(
                        f"stream throughput, {label}",
                        round(best_subject, 1),
                        "MB/s",
                        "aiohttp web.FileResponse",
                        round(best_base, 1),
                        goal=">= 0.9x",
                        met=ratio >= 0.9,
                        note=f"{size >> 20} MiB file over loopback, curl clients",
                    ).emit()
            finally:
                await server.aclose()
        await runner.cleanup()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
