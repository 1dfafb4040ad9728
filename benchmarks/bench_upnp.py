#!/usr/bin/env python3
"""UPnP bridge benchmark (specs/upnp-bridge.md), against real DLNA peers in the same run:

a. Browse of 1,000 items: an igrs MediaServer exposed over UPnP (``igrs device run --upnp``)
   against minidlna serving the same 1,000 files — a UPnP control point (async-upnp-client)
   lists the folder, 100 per page; best of N rounds each, alternated.
b. The same 1,000 items of minidlna through the import bridge (``igrs bridge upnp``; an IGRS
   phone's ``AvController.browse_all``) against minidlna's own Browse.
c. Play → PLAYING: a UPnP control point sends SetAVTransportURI and Play; time from Play to
   the LastChange event saying PLAYING, on an igrs TV (``--renderer ffmpeg --upnp``) against
   gmediarender; median of N.

Everything runs in network namespaces (tests/netbed.py; needs root, minidlna, gmediarender,
ffmpeg): SSDP never touches the root namespace. One ``BENCH-RESULT {json}`` line per figure.

    python benchmarks/bench_upnp.py [--quick] [--items 1000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from _result import BenchResult

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "tests" / "interop"))

BENCH = "upnp"
QUICK = os.environ.get("IGRS_BENCH_QUICK", "") not in ("", "0")
FF = ["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-y"]


@dataclass
class Result(BenchResult):
    bench: str = BENCH


def emit(**kw: Any) -> None:
    Result(**kw).emit()


# --- the measuring clients (run inside a namespace host: this file with --client) ----------------
async def client_browse(location: str, rounds: int) -> dict[str, Any]:
    """Seconds to list every child of the container holding the files (100 per page)."""
    from async_upnp_client.aiohttp import AiohttpRequester
    from async_upnp_client.client_factory import UpnpFactory
    from didl_lite import didl_lite

    device = await UpnpFactory(AiohttpRequester(30)).async_create_device(location)
    cds = next(s for s in device.all_services if ":ContentDirectory:" in s.service_type)
    browse = cds.action("Browse")

    async def children(oid: str) -> list[Any]:
        out: list[Any] = []
        while True:
            res = await browse.async_call(ObjectID=oid, BrowseFlag="BrowseDirectChildren", Filter="*",
                                          StartingIndex=len(out), RequestedCount=100, SortCriteria="")
            page = didl_lite.from_xml_string(res["Result"], strict=False)
            out += page
            if not page or (res["TotalMatches"] and len(out) >= res["TotalMatches"]):
                return out

    # find the container with the most items (minidlna: Music/All Music or a folder view)
    best, queue, seen = ("", 0), ["0"], 0
    while queue and seen < 50:
        oid = queue.pop(0)
        seen += 1
        kids = await children(oid)
        items = sum(1 for k in kids if not isinstance(k, didl_lite.Container))
        if items > best[1]:
            best = (oid, items)
        queue += [k.id for k in kids if isinstance(k, didl_lite.Container)]
    times = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        n = len(await children(best[0]))
        times.append(time.perf_counter() - t0)
    return {"times": times, "items": n, "container": best[0]}


async def client_play(location: str, url: str, callback: str, rounds: int) -> dict[str, Any]:
    """Seconds from Play to the LastChange event TransportState=PLAYING."""
    from async_upnp_client.aiohttp import AiohttpNotifyServer, AiohttpRequester
    from async_upnp_client.client_factory import UpnpFactory
    from async_upnp_client.profiles.dlna import DmrDevice

    requester = AiohttpRequester(30)
    device = await UpnpFactory(requester, non_strict=True).async_create_device(location)
    notify = AiohttpNotifyServer(requester, (callback, 0))
    await notify.async_start_server()
    dmr = DmrDevice(device, notify.event_handler)
    playing = asyncio.Event()

    def on_event(_svc: Any, variables: Any) -> None:
        if any(v.name == "TransportState" and v.value == "PLAYING" for v in variables):
            playing.set()

    dmr.on_event = on_event
    await dmr.async_subscribe_services()
    avt = next(s for s in device.all_services if ":AVTransport:" in s.service_type)
    times = []
    try:
        for _ in range(rounds):
            await avt.action("Stop").async_call(InstanceID=0)
            await avt.action("SetAVTransportURI").async_call(InstanceID=0, CurrentURI=url,
                                                             CurrentURIMetaData="")
            await asyncio.sleep(0.5)
            playing.clear()
            t0 = time.perf_counter()
            await avt.action("Play").async_call(InstanceID=0, Speed="1")
            await asyncio.wait_for(playing.wait(), 10)
            times.append(time.perf_counter() - t0)
            await asyncio.sleep(0.3)
        await avt.action("Stop").async_call(InstanceID=0)
    finally:
        await dmr.async_unsubscribe_services()
        await notify.async_stop_server()
    return {"times": times}


async def client_igrs_browse(
    name: str, interface: str, state_dir: str, pins: str, rounds: int
) -> dict[str, Any]:
    """Seconds for AvController.browse_all of the biggest container of an IGRS MediaServer."""
    from igrs import ControlPoint
    from igrs.profiles.av import AvController

    async with ControlPoint(interfaces=[interface], state_dir=state_dir) as cp:
        record = None
        for _ in range(20):
            record = next((r for r in await cp.search(timeout=1.0) if r.name == name), None)
            if record:
                break
        assert record is not None, f"{name} not found"

        async def pin(_digits: int) -> str:
            for _ in range(100):
                found = [json.loads(x)["pin"] for x in Path(pins).read_text().splitlines() if '"pin"' in x]
                if found:
                    return str(found[-1])
                await asyncio.sleep(0.1)
            raise RuntimeError("no PIN")

        await cp.pair(record, pin)
        av = AvController(cp)
        best, queue = ("", 0), ["0"]
        while queue:
            oid = queue.pop(0)
            kids = await av.browse_all(record, oid)
            items = sum(1 for k in kids if not k.is_container)
            if items > best[1]:
                best = (oid, items)
            queue += [k.id for k in kids if k.is_container][:20]
        times = []
        for _ in range(rounds):
            t0 = time.perf_counter()
            n = len(await av.browse_all(record, best[0]))
            times.append(time.perf_counter() - t0)
    return {"times": times, "items": n}


# --- orchestration ---------------------------------------------------------------------------------
def make_files(folder: Path, items: int) -> None:
    folder.mkdir(parents=True)
    one = folder / "t0000.mp3"
    subprocess.run([*FF, "-f", "lavfi", "-i", "sine=duration=0.3", "-c:a", "libmp3lame", "-b:a", "32k",
                    str(one)], check=True, timeout=60)
    for i in range(1, items):
        shutil.copy(one, folder / f"t{i:04d}.mp3")


def client(host: Any, *args: str, timeout: float = 300, meanwhile: Any = None) -> dict[str, Any]:
    """This file's --client in ``host``; ``meanwhile()`` is called while it runs."""
    proc = host.popen([sys.executable, __file__, "--client", *args], stdout=subprocess.PIPE,
                      stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + timeout
    while proc.poll() is None and time.monotonic() < deadline:
        if meanwhile is not None:
            meanwhile()
        time.sleep(0.1)
    out, err = proc.communicate(timeout=10)
    lines = [x for x in out.splitlines() if x.startswith("{")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"client {args[0]} failed: {err[-2000:]}")
    return json.loads(lines[-1])  # type: ignore[no-any-return]


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--quick", action="store_true")
    p.add_argument("--items", type=int, default=1000)
    p.add_argument("--client", nargs=argparse.REMAINDER)
    args = p.parse_args()
    if args.client:
        kind, rest = args.client[0], args.client[1:]
        coro = {"browse": lambda: client_browse(rest[0], int(rest[1])),
                "play": lambda: client_play(rest[0], rest[1], rest[2], int(rest[3])),
                "igrs-browse": lambda: client_igrs_browse(*rest[:4], int(rest[4]))}[kind]
        print(json.dumps(asyncio.run(coro())), flush=True)
        return 0
    from netbed import NetBed, netns_unavailable_reason
    from upnp_peers import make_media, on_lan, start_gmediarender, start_igrs, start_minidlna

    reason = netns_unavailable_reason()
    missing = [c for c in ("minidlnad", "gmediarender", "ffmpeg") if shutil.which(c) is None]
    if reason or missing:
        print(f"cannot run: {reason or 'missing ' + ', '.join(missing)}", file=sys.stderr)
        return 1
    quick = args.quick or QUICK
    rounds = 3 if quick else 7
    tmp = Path(tempfile.mkdtemp(prefix="igrs-bench-upnp-"))
    try:
        files = tmp / "media" / "Music"
        print(f"{args.items} files; {rounds} rounds per figure", flush=True)
        make_files(files, args.items)
        clip = make_media(tmp / "clip", 10)["clip"]
        with NetBed() as bed:
            lan = bed.lan("home")
            a, b, c, d = (on_lan(bed.host(n, lan), lan) for n in ("a", "b", "c", "d"))
            t0 = time.monotonic()
            pc = start_igrs(a, ["device", "run", "--name", "bench PC", "--interface", a.addr, "--json",
                                "--no-pairing", "--state-dir", str(tmp / "pc"), "--media-folder",
                                f"Music={files}", "--upnp"], timeout=600)
            print(f"igrs PC scanned {args.items} files in {time.monotonic() - t0:.1f} s", flush=True)
            t0 = time.monotonic()
            dms = start_minidlna(b, lan, tmp / "media", tmp / "minidlna", name="bench minidlna")
            print(f"minidlna scanned them in {time.monotonic() - t0:.1f} s", flush=True)
            server = next(u for u in pc.ready["upnp"] if "/server/" in u)
            igrs_t, dms_t = [], []
            for _ in range(2):  # alternate subject and baseline
                r = client(c, "browse", server, str(rounds))
                igrs_t += r["times"]
                assert r["items"] == args.items, r
                r = client(c, "browse", dms.url, str(rounds))
                dms_t += r["times"]
            a_igrs, a_dms = min(igrs_t), min(dms_t)
            print(f"a. browse {args.items}: igrs over UPnP {a_igrs * 1000:.0f} ms, "
                  f"minidlna {a_dms * 1000:.0f} ms", flush=True)
            emit(name=f"UPnP Browse of {args.items} items (exposed igrs MediaServer)", value=round(a_igrs, 4),
                 unit="s", baseline="minidlna 1.3.0, same files", baseline_value=round(a_dms, 4),
                 better="lower", note="async-upnp-client control point, 100 per page, best round")

            bridge = start_igrs(d, ["bridge", "upnp", "--interface", d.addr, "--json", "--state-dir",
                                    str(tmp / "bridge"), "--search-interval", "5"], timeout=60)
            bridge.wait(lambda o: o.get("event") == "appeared" and o.get("name") == "bench minidlna", 30)
            pins = tmp / "bridge.log"  # the phone reads the PIN the bridge prints from here
            result = client(c, "igrs-browse", "bench minidlna", c.addr, str(tmp / "phone"), str(pins),
                            str(rounds), meanwhile=lambda: pins.write_text(bridge.lines.text()))
            b_bridge = min(result["times"])
            print(f"b. browse {result['items']} via the import bridge {b_bridge * 1000:.0f} ms "
                  f"(minidlna direct {a_dms * 1000:.0f} ms)", flush=True)
            emit(name=f"IGRS browse_all of {result['items']} minidlna items through the import bridge",
                 value=round(b_bridge, 4), unit="s", baseline="minidlna's own Browse (UPnP control point)",
                 baseline_value=round(a_dms, 4), better="lower",
                 note="AvController.browse_all over a secure pipe vs async-upnp-client direct")
            bridge.stop()
            pc.stop()

            tv = start_igrs(a, ["device", "run", "--name", "bench TV", "--type", "TV", "--interface", a.addr,
                                "--json", "--no-pairing", "--state-dir", str(tmp / "tv"),
                                "--renderer", "ffmpeg", "--upnp"], timeout=60)
            gmr = start_gmediarender(b, lan, tmp / "gmr")
            web = c.popen([sys.executable, "-m", "http.server", "--bind", c.addr, "8088", "--directory",
                           str(clip.parent)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(0.5)
            url = f"http://{c.addr}:8088/{clip.name}"
            renderer = next(u for u in tv.ready["upnp"] if "/renderer/" in u)
            igrs_p, gmr_p = [], []
            for _ in range(2):
                igrs_p += client(c, "play", renderer, url, c.addr, str(rounds))["times"]
                gmr_p += client(c, "play", gmr.url, url, c.addr, str(rounds))["times"]
            web.terminate()
            c_igrs, c_gmr = statistics.median(igrs_p), statistics.median(gmr_p)
            print(f"c. Play -> PLAYING: igrs TV {c_igrs * 1000:.0f} ms, gmediarender {c_gmr * 1000:.0f} ms",
                  flush=True)
            emit(name="UPnP Play -> LastChange PLAYING (igrs TV, ffmpeg output)", value=round(c_igrs, 4),
                 unit="s", baseline="gmediarender (gmrender-resurrect, GStreamer)",
                 baseline_value=round(c_gmr, 4), better="lower",
                 note="median; event seen by an async-upnp-client control point")
            tv.stop()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
