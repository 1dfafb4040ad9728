#!/usr/bin/env python3
"""File profile benchmarks: get / put throughput of one large file against aiohttp's static
file response (``web.FileResponse``) and a plain streaming PUT handler -- over plain HTTP, and
inside TLS 1.3 against the same aiohttp handlers behind TLS with the same certificates and
cipher (between paired devices the File client uses TLS) -- and the time to browse a
directory of 10,000 entries against one plain JSON listing, all on loopback in the same
process and the same event loop (server and client alike).

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
import ssl
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


def report(name: str, value: float, baseline: str, baseline_value: float, goal: float, note: str) -> None:
    Result(name, value, "MiB/s", baseline, baseline_value, "higher", f">= {goal}x",
           value >= goal * baseline_value, note).emit()


async def serve(app: web.Application, context: ssl.SSLContext | None = None) -> tuple[web.AppRunner, int]:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context).start()
    return runner, int(runner.addresses[0][1])


async def negotiated(port: int, context: ssl.SSLContext) -> str:
    """The TLS version and cipher a connection to ``port`` with ``context`` negotiates."""
    _, writer = await asyncio.open_connection("127.0.0.1", port, ssl=context, server_hostname="")
    ssl_object = writer.get_extra_info("ssl_object")
    writer.close()
    return f"{ssl_object.version()} {ssl_object.cipher()[0]}"


async def main(quick: bool) -> None:
    import aiohttp

    from igrs import ControlPoint, Device
    from igrs.core.security.identity import LocalIdentity
    from igrs.net.tls import PinnedTls
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
        plain_site = await serve(app)
        base = f"http://127.0.0.1:{plain_site[1]}"

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
            # the baseline inside TLS: the same aiohttp handlers, TLS 1.3 with the same kind of
            # certificates (a device certificate each, client certificate required, pinned keys)
            server_tls, client_tls = PinnedTls(LocalIdentity.generate()), PinnedTls(cp.identity)
            server_tls.trust(cp.identity.public_key)
            tls_site = await serve(app, server_tls.server_context())
            tls_base = f"https://127.0.0.1:{tls_site[1]}"
            tls_ctx = client_tls.client_context(server_tls.identity.public_key)
            async with FileClient.connect(cp, dev.device_id, tls=False) as files, \
                    FileClient.connect(cp, dev.device_id, tls=True) as tls_files, \
                    aiohttp.ClientSession() as http:
                def plain_get(url: str, context: ssl.SSLContext | None) -> Callable[[], Awaitable[None]]:
                    async def run() -> None:
                        async with http.get(url + "/big.bin", ssl=context or True) as r:
                            with open(out / "plain-get.bin", "wb") as f:
                                async for chunk in r.content.iter_chunked(1 << 20):
                                    f.write(chunk)
                    return run

                def plain_put(url: str, context: ssl.SSLContext | None) -> Callable[[], Awaitable[None]]:
                    async def run() -> None:
                        async def body():  # type: ignore[no-untyped-def]
                            with open(big, "rb") as f:
                                while block := f.read(1 << 20):
                                    yield block

                        async with http.put(url + "/upload", data=body(), ssl=context or True) as r:
                            assert r.status == 201
                    return run

                def igrs_get(client: FileClient, verify: bool = False) -> Callable[[], Awaitable[None]]:
                    async def run() -> None:
                        await client.get("/share/big.bin", out / "igrs-get.bin", resume=False, verify=verify)
                    return run

                def igrs_put(client: FileClient, digest: str | None = digest) -> Callable[[], Awaitable[None]]:
                    async def run() -> None:
                        await client.put(big, "/share/up.bin", overwrite=True, sha256=digest)
                    return run

                async def plain_list() -> None:
                    async with http.get(base + "/list") as r:
                        assert len(await r.json()) == 10_000

                async def igrs_list() -> None:
                    assert len(await files.ls("/share/many")) == 10_000

                subjects: dict[str, Callable[[], Awaitable[None]]] = {
                    "plain get": plain_get(base, None), "igrs get": igrs_get(files),
                    "igrs get+verify": igrs_get(files, verify=True),
                    "plain put": plain_put(base, None), "igrs put": igrs_put(files),
                    "igrs put+hash": igrs_put(files, None),
                    "TLS plain get": plain_get(tls_base, tls_ctx), "TLS igrs get": igrs_get(tls_files),
                    "TLS plain put": plain_put(tls_base, tls_ctx), "TLS igrs put": igrs_put(tls_files),
                }
                t: dict[str, list[float]] = {k: [] for k in subjects}
                for _ in range(rounds):  # alternate subject and baseline within each round
                    for name, fn in subjects.items():
                        t[name].append(await best(1, fn))
                tl: dict[str, list[float]] = {"plain list": [], "igrs list": []}
                for _ in range(rounds):
                    for name, fn in (("plain list", plain_list), ("igrs list", igrs_list)):
                        tl[name].append(await best(1, fn))
                assert tls_files.transport == "tls" and files.transport == "http"
                own_ctx = client_tls.client_context(dev.identity.public_key)  # as the File client's
                ciphers = {"igrs": await negotiated(dev.http.tls_port, own_ctx),
                           "aiohttp": await negotiated(tls_site[1], tls_ctx)}
            await tls_site[0].cleanup()
        await plain_site[0].cleanup()

        mib = size / (1 << 20)
        rate = {k: mib / min(v) for k, v in t.items()}
        for k, v in rate.items():
            print(f"  {k:18s} {v:8.1f} MiB/s", flush=True)
        for k, v in tl.items():
            print(f"  {k:18s} {min(v) * 1000:8.1f} ms (10,000 entries)", flush=True)
        print(f"  TLS: igrs {ciphers['igrs']}, aiohttp {ciphers['aiohttp']}", flush=True)
        same = "same cipher" if ciphers["igrs"] == ciphers["aiohttp"] else "CIPHERS DIFFER"
        report("File get", rate["igrs get"], "aiohttp web.FileResponse GET", rate["plain get"], 0.9,
               "capability URL + FileResponse (sendfile); the client writes a .igrs-part file in a thread, "
               "fsyncs and renames")
        Result("File get, SHA-256 verified", rate["igrs get+verify"], "MiB/s", "aiohttp web.FileResponse GET",
               rate["plain get"], "higher",
               note="client hashes while receiving; the server's hash is cached after the first round").emit()
        report("File put (server verifies SHA-256, durable rename)", rate["igrs put"],
               "aiohttp plain streaming PUT", rate["plain put"], 0.7,
               "the server writes and hashes the partial in a thread, fsync + rename; client hash precomputed")
        Result("File put incl. client hashing", rate["igrs put+hash"], "MiB/s", "aiohttp plain streaming PUT",
               rate["plain put"], "higher",
               note="the client reads the file once more to compute its SHA-256 first").emit()
        report("File get inside TLS (paired devices)", rate["TLS igrs get"],
               "aiohttp web.FileResponse GET over TLS", rate["TLS plain get"], 0.9,
               f"TLS 1.3, pinned Ed25519 certificates both ways, {ciphers['igrs']} ({same})")
        report("File put inside TLS (paired devices)", rate["TLS igrs put"],
               "aiohttp streaming PUT over TLS", rate["TLS plain put"], 0.7,
               f"TLS 1.3, pinned Ed25519 certificates both ways, {ciphers['igrs']} ({same}); SHA-256, fsync, "
               "rename")
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
