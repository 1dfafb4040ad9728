#!/usr/bin/env python3
"""File profile benchmarks: get / put throughput of one large file against aiohttp's plain
static file response (``web.FileResponse``) and a plain streaming PUT handler, and the time
to browse a directory of 10,000 entries against one plain JSON listing, all on loopback in
the same process and the same event loop (server and client alike).

    python benchmarks/bench_file.py            # 256 MiB file, 3 rounds
    python benchmarks/bench_file.py --quick    # 64 MiB, 2 rounds (or IGRS_BENCH_QUICK=1)

Each round alternates subject and baseline; the best round of each is kept. Machine-readable
results: one ``BENCH-RESULT {json}`` line per figure (benchmarks/README.md).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import random
import socket
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from _result import BenchResult
from aiohttp import web

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

BENCH = "file"
QUICK = os.environ.get("IGRS_BENCH_QUICK", "") not in ("", "0")


@dataclass
class Result(BenchResult):
    bench: str = BENCH


def free_udp_port() -> int:
    for _ in range(100):
        port = random.randint(20000, 30000)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            try:
                s.bind(("0.0.0.0", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port")


async def best(rounds: int, fn: Callable[[], Awaitable[None]]) -> float:
    times = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        await fn()
        times.append(time.perf_counter() - t0)
    return min(times)


async def main(quick: bool) -> None:
    import aiohttp

    from igrs import ControlPoint, Device
    from igrs.profiles.file import SharedFolder, attach_file_server
    from igrs.profiles.file.client import FileClient

    size = (64 if quick else 256) << 20
    rounds = 2 if quick else 3
    tmp = Path(tempfile.mkdtemp(prefix="igrs-bench-file-"))
    try:
        share, out = tmp / "share", tmp / "out"
        share.mkdir()
        out.mkdir()
        big = share / "big.bin"
        with open(big, "wb") as f:
            block = os.urandom(1 << 20)
            for _ in range(size >> 20):
                f.write(block)
        digest = hashlib.sha256(big.read_bytes()).hexdigest()
        many = share / "many"
        many.mkdir()
        for i in range(10_000):
            (many / f"photo-{i:05d}.jpg").write_bytes(b"")
        print(f"file of {size >> 20} MiB, {rounds} rounds; directory of 10,000 entries", flush=True)

        # baseline: plain aiohttp on loopback
        async def static(request: web.Request) -> web.StreamResponse:
            return web.FileResponse(big, chunk_size=1 << 20)

        async def upload(request: web.Request) -> web.StreamResponse:
            with open(out / "plain.bin", "wb") as f:
                async for chunk in request.content.iter_chunked(1 << 20):
                    f.write(chunk)
            return web.Response(status=201)

        async def listing(request: web.Request) -> web.StreamResponse:
            rows = []
            with os.scandir(many) as it:
                for e in it:
                    s = e.stat()
                    rows.append({"name": e.name, "size": s.st_size, "mtime": s.st_mtime})
            rows.sort(key=lambda r: r["name"])
            return web.json_response(rows)

        app = web.Application(client_max_size=1 << 40)
        app.router.add_get("/big.bin", static)
        app.router.add_put("/upload", upload)
        app.router.add_get("/list", listing)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        base = f"http://127.0.0.1:{runner.addresses[0][1]}"

        port = free_udp_port()
        pins: list[str] = []
        async with Device(name="Bench PC", interfaces=["lo"], port=port, http_port=0, on_pin=pins.append,
                          watch_interfaces=False) as dev, \
                ControlPoint(interfaces=["lo"], port=port, keepalive_interval=0) as cp:
            attach_file_server(dev, [SharedFolder("share", share, writable=True)])
            await cp.search(timeout=1.0, mx=1)

            async def pin(_digits: int) -> str:
                return pins[-1]

            await cp.pair(dev.device_id, pin)
            async with FileClient.connect(cp, dev.device_id) as files, aiohttp.ClientSession() as http:
                async def plain_get() -> None:
                    async with http.get(base + "/big.bin") as r:
                        with open(out / "plain-get.bin", "wb") as f:
                            async for chunk in r.content.iter_chunked(1 << 20):
                                f.write(chunk)

                async def igrs_get() -> None:
                    await files.get("/share/big.bin", out / "igrs-get.bin", resume=False, verify=False)

                async def igrs_get_verified() -> None:
                    await files.get("/share/big.bin", out / "igrs-getv.bin", resume=False, verify=True)

                async def plain_put() -> None:
                    async def body():  # type: ignore[no-untyped-def]
                        with open(big, "rb") as f:
                            while block := f.read(1 << 20):
                                yield block

                    async with http.put(base + "/upload", data=body()) as r:
                        assert r.status == 201

                async def igrs_put() -> None:
                    await files.put(big, "/share/up.bin", overwrite=True, sha256=digest)

                async def igrs_put_hashing() -> None:
                    await files.put(big, "/share/up2.bin", overwrite=True)

                async def plain_list() -> None:
                    async with http.get(base + "/list") as r:
                        assert len(await r.json()) == 10_000

                async def igrs_list() -> None:
                    assert len(await files.ls("/share/many")) == 10_000

                t: dict[str, list[float]] = {k: [] for k in ("plain get", "igrs get", "igrs get+verify",
                                                              "plain put", "igrs put", "igrs put+hash")}
                for _ in range(rounds):  # alternate subject and baseline within each round
                    for name, fn in (("plain get", plain_get), ("igrs get", igrs_get),
                                     ("igrs get+verify", igrs_get_verified), ("plain put", plain_put),
                                     ("igrs put", igrs_put), ("igrs put+hash", igrs_put_hashing)):
                        t[name].append(await best(1, fn))
                tl: dict[str, list[float]] = {"plain list": [], "igrs list": []}
                for _ in range(rounds):
                    for name, fn in (("plain list", plain_list), ("igrs list", igrs_list)):
                        tl[name].append(await best(1, fn))
        await runner.cleanup()

        mib = size / (1 << 20)
        rate = {k: mib / min(v) for k, v in t.items()}
        for k, v in rate.items():
            print(f"  {k:18s} {v:8.1f} MiB/s", flush=True)
        for k, v in tl.items():
            print(f"  {k:18s} {min(v) * 1000:8.1f} ms (10,000 entries)", flush=True)
        Result("file get throughput", rate["igrs get"], "MiB/s", "aiohttp web.FileResponse GET",
               rate["plain get"], "higher", ">= 0.9x", rate["igrs get"] >= 0.9 * rate["plain get"],
               "capability URL + FileResponse; client writes to a .igrs-part file and renames").emit()
        Result("file get throughput, SHA-256 verified", rate["igrs get+verify"], "MiB/s",
               "aiohttp web.FileResponse GET", rate["plain get"], "higher",
               note="client hashes while receiving; the server's hash is cached after the first round").emit()
        Result("file put throughput", rate["igrs put"], "MiB/s", "aiohttp plain streaming PUT",
               rate["plain put"], "higher", ">= 0.9x", rate["igrs put"] >= 0.9 * rate["plain put"],
               "server hashes (SHA-256) and writes a partial, fsync + rename; client hash precomputed").emit()
        Result("file put throughput incl. client hashing", rate["igrs put+hash"], "MiB/s",
               "aiohttp plain streaming PUT", rate["plain put"], "higher",
               note="the client reads the file once more to compute its SHA-256 first").emit()
        Result("browse 10,000 entries", min(tl["igrs list"]) * 1000, "ms", "one plain aiohttp JSON listing",
               min(tl["plain list"]) * 1000, "lower", "< 1 s", min(tl["igrs list"]) < 1.0,
               "Browse pages of 250 over a secure pipe (41 invocations)").emit()
    finally:
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    asyncio.run(main(args.quick or QUICK))
