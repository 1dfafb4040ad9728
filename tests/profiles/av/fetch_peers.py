"""Processes of the fetch-policy test (test_fetch_policy_netns.py), each run in a namespace host.

``tv``: a TV with a renderer (virtual output, ffprobe duration probe on), a recorder and a media
server sharing one folder; prints JSON lines ``ready`` (with the own clip's URL) and ``pin``.
``phone``: pairs with the TV (PIN read from the TV's output file), runs the JSON list of cases
``[{"name", "service", "action", "args"}]`` and prints one JSON line per case.
``web``: a plain HTTP server: ``/redirect`` answers 302 to ``--redirect``, any other path the
file ``--file``; every request is printed (``{"path", "client"}``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import http.server
import json
import signal
import sys
from pathlib import Path
from typing import Any

from igrs import ControlPoint, Device
from igrs.errors import IGRSError


def say(**obj: Any) -> None:
    print(json.dumps(obj), flush=True)


async def tv(args: argparse.Namespace) -> None:
    from igrs.profiles.av import attach_media_server, attach_recorder, attach_renderer

    device = Device(name="TV", device_type="TV", interfaces=[args.interface], port=args.port,
                    state_dir=args.state_dir, on_pin=lambda pin: say(event="pin", pin=pin),
                    watch_interfaces=False)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    async with device:
        renderer = await attach_renderer(device, probe=True, fetch_allow=args.allow)
        recorder = attach_recorder(device, args.recordings, fetch_allow=args.allow)
        server = await attach_media_server(device, {"Media": args.media}, watch_interval=None)
        own = next(server.entry(o) for o in server.directory.objects.values() if not o.is_container)
        say(event="ready", location=device.location, own=own.url)
        await stop.wait()
        await server.aclose()
        await recorder.aclose()
        await renderer.aclose()


async def phone(args: argparse.Namespace) -> None:
    async with ControlPoint(interfaces=[args.interface], port=args.port, state_dir=args.state_dir) as cp:
        record = await cp.locate("TV", timeout=10)  # ends at its first answer

        async def pin(_digits: int) -> str:
            for _ in range(100):
                pins = [json.loads(line)["pin"] for line in Path(args.pins_from).read_text().splitlines()
                        if '"pin"' in line]
                if pins:
                    return str(pins[-1])
                await asyncio.sleep(0.1)
            raise AssertionError("no PIN")

        await cp.pair(record, pin)
        for case in json.loads(args.cases):
            service = f"urn:IGRS:ServiceType:{case['service']}:1"
            try:
                async with cp.session(record, service) as svc:
                    result = await getattr(svc, case["action"])(**case["args"])
                say(name=case["name"], code=200, result=result)
            except IGRSError as exc:
                say(name=case["name"], code=int(exc.return_code), reason=exc.reason)


def web(args: argparse.Namespace) -> None:
    body = Path(args.file).read_bytes()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            say(path=self.path, client=self.client_address[0])
            if self.path.startswith("/redirect"):
                self.send_response(302)
                self.send_header("Location", args.redirect)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(200)
            self.send_header("Content-Type", "video/mp4")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            with contextlib.suppress(OSError):
                self.wfile.write(body)

        def log_message(self, *_args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer((args.bind, args.http_port), Handler)
    say(event="ready")
    server.serve_forever()


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("role", choices=["tv", "phone", "web"])
    p.add_argument("--interface", default="")
    p.add_argument("--port", type=int, default=3880)
    p.add_argument("--state-dir")
    p.add_argument("--allow", action="append", default=[])
    p.add_argument("--recordings", type=Path)
    p.add_argument("--media", type=Path)
    p.add_argument("--pins-from")
    p.add_argument("--cases", default="[]")
    p.add_argument("--bind", default="0.0.0.0")
    p.add_argument("--http-port", type=int, default=8000)
    p.add_argument("--file", default="")
    p.add_argument("--redirect", default="")
    args = p.parse_args()
    if args.role == "web":
        web(args)
    else:
        asyncio.run(tv(args) if args.role == "tv" else phone(args))


if __name__ == "__main__":
    sys.exit(main())
