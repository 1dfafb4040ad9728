"""``python -m igrs.profiles.av send|recv …``: an AV multicast group sender or member on one
interface address (used by the namespace tests; handy on a real LAN).

    python -m igrs.profiles.av send --interface 10.77.1.10 --group 239.255.77.1 --seconds 5 [--file clip.ts]
    python -m igrs.profiles.av recv --interface 10.77.1.11 --group 239.255.77.1 --seconds 4 --out got.ts
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys

from igrs.profiles.av.live import LiveSource
from igrs.profiles.av.multicast import DEFAULT_PORT, MulticastSender
from igrs.profiles.av.recorder import record_stream


async def _send(args: argparse.Namespace) -> int:
    source = LiveSource.from_file(args.file) if args.file else LiveSource.test_signal()
    sender = MulticastSender(source, args.group, args.port, interface=args.interface)
    await sender.start()
    try:
        await asyncio.sleep(args.seconds)
    finally:
        await sender.aclose()
        await source.aclose()
    print(json.dumps({"sent_datagrams": sender.datagrams}), flush=True)
    return 0


async def _recv(args: argparse.Namespace) -> int:
    print(json.dumps({"joined": args.group}), flush=True)
    n = await record_stream(f"udp://{args.group}:{args.port}", args.out, args.seconds, interface=args.interface)
    print(json.dumps({"received_bytes": n}), flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m igrs.profiles.av")
    sub = parser.add_subparsers(dest="cmd", required=True)
    for name in ("send", "recv"):
        p = sub.add_parser(name)
        p.add_argument("--interface", required=True, help="IPv4 address of the interface to use")
        p.add_argument("--group", required=True)
        p.add_argument("--port", type=int, default=DEFAULT_PORT)
        p.add_argument("--seconds", type=float, default=5.0)
        if name == "send":
            p.add_argument("--file", help="an MPEG-TS/MP4 file (default: the generated test signal)")
        else:
            p.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    return asyncio.run(_send(args) if args.cmd == "send" else _recv(args))


if __name__ == "__main__":
    sys.exit(main())
