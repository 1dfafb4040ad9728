"""A UPnP AV control point for the bridge tests, on async-upnp-client and python-didl-lite (run
in a namespace host by upnp_peers.cp). Prints one JSON object.

``walk LOCATION [--count N]``  walk a ContentDirectory to every leaf (pages of N), every page
    parsed by python-didl-lite in strict mode; also BrowseMetadata("0"), an unknown object and a
    bad sort criterion (their UPnP error codes).
``dmr LOCATION STEPS_JSON [--callback ADDR]``  drive a MediaRenderer: steps are lists —
    ["subscribe"], ["set", url, metadata], ["next", url, metadata], ["play"], ["pause"],
    ["stop"], ["seek", "H:MM:SS"], ["volume", n], ["sleep", s], ["wait", state, timeout],
    ["reach", seconds, timeout], ["position"], ["media"], ["error", action, {args}]; events
    (LastChange) are recorded.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from typing import Any

from async_upnp_client.aiohttp import AiohttpNotifyServer, AiohttpRequester
from async_upnp_client.client import UpnpDevice, UpnpService
from async_upnp_client.client_factory import UpnpFactory
from async_upnp_client.exceptions import UpnpActionResponseError, UpnpError
from async_upnp_client.profiles.dlna import DmrDevice
from didl_lite import didl_lite


def seconds(hms: str) -> float:
    try:
        h, m, s = (float(x) for x in hms.split(":"))
    except ValueError:
        return 0.0
    return h * 3600 + m * 60 + s


def service(device: UpnpDevice, kind: str) -> UpnpService:
    for svc in device.all_services:
        if f":service:{kind}:" in svc.service_type:
            return svc
    raise SystemExit(f"no {kind} service")


async def walk(args: argparse.Namespace) -> dict[str, Any]:
    device = await UpnpFactory(AiohttpRequester(10), non_strict=False).async_create_device(args.location)
    browse = service(device, "ContentDirectory").action("Browse")
    items: list[dict[str, Any]] = []
    pages = containers = 0
    problems: list[str] = []

    async def call(oid: str, flag: str, start: int = 0, count: int = 0, sort: str = "") -> dict[str, Any]:
        return await browse.async_call(ObjectID=oid, BrowseFlag=flag, Filter="*", StartingIndex=start,
                                       RequestedCount=count, SortCriteria=sort)

    queue = ["0"]
    while queue:
        oid, start, total = queue.pop(0), 0, None
        while True:
            res = await call(oid, "BrowseDirectChildren", start, args.count)
            pages += 1
            objs = didl_lite.from_xml_string(res["Result"], strict=True)
            if len(objs) != res["NumberReturned"] or res["NumberReturned"] > args.count:
                problems.append(f"{oid}@{start}: NumberReturned {res['NumberReturned']}, {len(objs)} objects")
            if total is not None and res["TotalMatches"] not in (total, 0):
                problems.append(f"{oid}: TotalMatches changed {total} -> {res['TotalMatches']}")
            total = res["TotalMatches"] or total
            for obj in objs:
                if isinstance(obj, didl_lite.Container):
                    containers += 1
                    queue.append(obj.id)
                    continue
                for r in obj.res:
                    items.append({"id": obj.id, "title": obj.title, "url": r.uri, "protocol": r.protocol_info,
                                  "didl": didl_lite.to_xml_string(obj).decode(), "class": obj.upnp_class})
            start += len(objs)
            if not objs or (total and start >= total):
                break
    meta = didl_lite.from_xml_string((await call("0", "BrowseMetadata"))["Result"], strict=True)[0]
    codes = {}
    for name, kwargs in (("unknown", {"oid": "no-such-object", "flag": "BrowseMetadata"}),
                         ("bad_sort", {"oid": "0", "flag": "BrowseDirectChildren", "sort": "+no:such"})):
        try:
            await call(**kwargs)  # type: ignore[arg-type]
            codes[name] = 0
        except UpnpActionResponseError as exc:
            codes[name] = exc.error_code or -1
    heads = await dlna_heads(items) if args.heads else {}
    return {"items": items, "pages": pages, "containers": containers, "root_parent": meta.parent_id,
            "problems": problems, "heads": heads, **codes}


async def dlna_heads(items: list[dict[str, Any]]) -> dict[str, Any]:
    """HEAD of every item asking for contentFeatures.dlna.org; on the first: a byte range,
    a time-seek range and transferMode requests."""
    import aiohttp

    out: dict[str, Any] = {"features": {}, "checks": {}}
    async with aiohttp.ClientSession() as http:
        for item in items:
            async with http.head(item["url"], headers={"getcontentFeatures.dlna.org": "1",
                                                       "transferMode.dlna.org": "Streaming"}) as r:
                out["features"][item["url"]] = [r.status, r.headers.get("contentFeatures.dlna.org"),
                                                r.headers.get("transferMode.dlna.org")]
        first = next((i["url"] for i in items if "video" in i["protocol"]), items[0]["url"])
        for name, headers in (("range", {"Range": "bytes=100-1123"}),
                              ("timeseek", {"TimeSeekRange.dlna.org": "npt=1-"}),
                              ("interactive", {"transferMode.dlna.org": "Interactive"})):
            async with http.get(first, headers=headers) as r:
                out["checks"][name] = [r.status, len(await r.read()), r.headers.get("Content-Range")]
    return out


async def dmr(args: argparse.Namespace) -> dict[str, Any]:
    requester = AiohttpRequester(10)
    device = await UpnpFactory(requester, non_strict=True).async_create_device(args.location)
    notify = AiohttpNotifyServer(requester, (args.callback, 0))
    await notify.async_start_server()
    renderer = DmrDevice(device, notify.event_handler)
    events: list[dict[str, Any]] = []
    t0 = time.monotonic()

    def on_event(svc: UpnpService, variables: list[Any]) -> None:
        for var in variables:
            if var.name != "LastChange":
                events.append({"t": round(time.monotonic() - t0, 3),
                               "service": svc.service_id.rsplit(":", 1)[-1],
                               "name": var.name, "value": var.value if isinstance(var.value, int | bool) else
                               str(var.value)})

    renderer.on_event = on_event
    avt, rcs = service(device, "AVTransport"), service(device, "RenderingControl")
    results: list[Any] = []
    try:
        for step in json.loads(args.steps):
            kind, rest = step[0], step[1:]
            started = time.monotonic()
            if kind == "subscribe":
                try:
                    await renderer.async_subscribe_services(auto_resubscribe=False)
                    results.append("subscribed")
                except UpnpError as exc:
                    results.append(f"refused: {exc!r}")
            elif kind in ("set", "next"):
                action = "SetAVTransportURI" if kind == "set" else "SetNextAVTransportURI"
                names = ("CurrentURI", "CurrentURIMetaData") if kind == "set" else \
                    ("NextURI", "NextURIMetaData")
                await avt.action(action).async_call(InstanceID=0, **dict(zip(names, rest, strict=True)))
                results.append("ok")
            elif kind == "play":
                await avt.action("Play").async_call(InstanceID=0, Speed="1")
                results.append(round(time.monotonic() - t0, 3))
            elif kind in ("pause", "stop"):
                await avt.action(kind.capitalize()).async_call(InstanceID=0)
                results.append("ok")
            elif kind == "seek":
                await avt.action("Seek").async_call(InstanceID=0, Unit="REL_TIME", Target=rest[0])
                results.append("ok")
            elif kind == "volume":
                await rcs.action("SetVolume").async_call(InstanceID=0, Channel="Master",
                                                         DesiredVolume=int(rest[0]))
                got = await rcs.action("GetVolume").async_call(InstanceID=0, Channel="Master")
                results.append(got["CurrentVolume"])
            elif kind == "sleep":
                await asyncio.sleep(float(rest[0]))
                results.append("slept")
            elif kind == "wait":
                state, timeout = rest[0], float(rest[1])
                seen = None
                while time.monotonic() - started < timeout:
                    info = await avt.action("GetTransportInfo").async_call(InstanceID=0)
                    seen = info["CurrentTransportState"]
                    if seen == state:
                        break
                    await asyncio.sleep(0.1)
                results.append({"state": seen, "after": round(time.monotonic() - started, 3)})
            elif kind == "reach":  # GetPositionInfo until RelTime >= the target (a real decoder
                target, timeout = float(rest[0]), float(rest[1])  # takes its time to start)
                rel = "0:00:00"
                while time.monotonic() - started < timeout:
                    rel = (await avt.action("GetPositionInfo").async_call(InstanceID=0))["RelTime"]
                    if seconds(rel) >= target:
                        break
                    await asyncio.sleep(0.1)
                results.append({"rel": rel, "after": round(time.monotonic() - started, 3)})
            elif kind == "position":
                pos = await avt.action("GetPositionInfo").async_call(InstanceID=0)
                results.append({"rel": pos["RelTime"], "duration": pos["TrackDuration"],
                                "uri": pos["TrackURI"]})
            elif kind == "media":
                media = await avt.action("GetMediaInfo").async_call(InstanceID=0)
                results.append({k: str(v) for k, v in media.items()})
            elif kind == "error":
                try:
                    await (avt if rest[0] != "SetVolume" else rcs).action(rest[0]).async_call(**rest[1])
                    results.append(0)
                except UpnpActionResponseError as exc:
                    results.append(exc.error_code)
            else:
                raise SystemExit(f"unknown step {step}")
        await asyncio.sleep(0.3)
    finally:
        await notify.async_stop_server()
    return {"results": results, "events": events}


def main() -> None:
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="command", required=True)
    w = sub.add_parser("walk")
    w.add_argument("location")
    w.add_argument("--count", type=int, default=2)
    w.add_argument("--heads", action="store_true", help="also the DLNA HTTP checks of every item")
    d = sub.add_parser("dmr")
    d.add_argument("location")
    d.add_argument("steps")
    d.add_argument("--callback", default="0.0.0.0")
    args = p.parse_args()
    result = asyncio.run(walk(args) if args.command == "walk" else dmr(args))
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    sys.exit(main())
