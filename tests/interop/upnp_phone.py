"""An IGRS phone for the bridge tests (run in a namespace host): the public API only —
ControlPoint and AvController with the pairings ``igrs pair`` stored in ``--state-dir``.
Prints one JSON object with the result of each step.

Steps (a JSON list of lists):
  ["browse", server]                      every item under "0" (AvController.browse_all, recursive)
  ["play", server, item_title, renderer]  AvController.play (Browse metadata, PlayTo)
  ["call", renderer, action, {args}]      a MediaRenderer action; result or {"error": code}
  ["watch", renderer]                     subscribe to the renderer's attributes (for "until")
  ["until", attribute, value, timeout]    wait for that notification; the seconds it took
  ["until_gt", attribute, value, timeout] wait for a numeric notification above value
  ["sleep", seconds]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import time
from typing import Any

from igrs import ControlPoint
from igrs.errors import IGRSError
from igrs.profiles.av import MEDIA_RENDERER, AvController


async def main(args: argparse.Namespace) -> dict[str, Any]:
    results: list[Any] = []
    async with ControlPoint(interfaces=[args.interface], port=args.port, state_dir=args.state_dir) as cp, \
            contextlib.AsyncExitStack() as stack:
        av = AvController(cp)
        records: dict[str, Any] = {}
        changes: asyncio.Queue[tuple[float, str, Any]] = asyncio.Queue()

        async def find(name: str) -> Any:
            if name not in records:
                for _ in range(10):
                    found = [r for r in await cp.search(timeout=1.0) if r.name == name]
                    if found:
                        records[name] = found[0]
                        break
                else:
                    raise SystemExit(f"{name!r} not found")
            return records[name]

        async def walk(server: Any, oid: str) -> list[dict[str, Any]]:
            out = []
            for e in await av.browse_all(server, oid):
                if e.is_container:
                    out += await walk(server, e.id)
                else:
                    out.append({"id": e.id, "title": e.title, "url": e.url, "protocol": e.protocol_info})
            return out

        sessions: dict[str, Any] = {}

        async def tv(name: str) -> Any:
            if name not in sessions:
                sessions[name] = await stack.enter_async_context(cp.session(await find(name), MEDIA_RENDERER))
            return sessions[name]

        async def pump(subscription: Any) -> None:
            async for change in subscription:
                await changes.put((time.monotonic(), change.name, change.value))

        for step in json.loads(args.steps):
            kind, rest = step[0], step[1:]
            started = time.monotonic()
            try:
                if kind == "browse":
                    results.append(await walk(await find(rest[0]), "0"))
                elif kind == "play":
                    server, renderer = await find(rest[0]), await find(rest[2])
                    item = next(i for i in await walk(server, "0") if i["title"] == rest[1])
                    results.append(await av.play(server, renderer, item["id"]))
                elif kind == "call":
                    session = await tv(rest[0])
                    results.append(await getattr(session, rest[1])(**rest[2]))
                elif kind == "watch":
                    sub = await stack.enter_async_context((await tv(rest[0])).subscribe())
                    stack.callback(asyncio.ensure_future(pump(sub)).cancel)
                    results.append("watching")
                elif kind in ("until", "until_gt"):
                    name, value, timeout = rest
                    got = None
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(timeout):
                            while True:
                                _, n, v = await changes.get()
                                if n == name and (v == value if kind == "until" else float(v) > value):
                                    got = round(time.monotonic() - started, 3)
                                    break
                    results.append(got)
                elif kind == "sleep":
                    await asyncio.sleep(rest[0])
                    results.append("slept")
                else:
                    raise SystemExit(f"unknown step {step}")
            except IGRSError as exc:
                results.append({"error": int(exc.return_code), "reason": exc.reason})
    return {"results": results}


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("steps")
    p.add_argument("--interface", required=True)
    p.add_argument("--port", type=int, default=3880)
    p.add_argument("--state-dir", required=True)
    print(json.dumps(asyncio.run(main(p.parse_args()))), flush=True)
    sys.exit(0)
