"""``igrs conformance run TARGET`` (the active suite), ``cases`` (the catalogue), ``pcap FILE``
and ``watch`` (passive checks of a capture and of live traffic). ``add_subcommands(subparsers)``
registers ``conformance`` on ``igrs/cli/main.py``'s parser; handlers return the exit status."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

from igrs.constants import IGRS_PORT

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def add_subcommands(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    conf = subparsers.add_parser("conformance", help="check an IGRS device against specs/ (test suite)")
    sub = conf.add_subparsers(dest="conformance_command", metavar="ACTION", required=True)

    p = sub.add_parser("run", help="run the conformance cases against a device")
    p.add_argument("target", help="device id, UUID prefix or name (found by ISDP search), "
                                  "or host:port of its /IGRS endpoint")
    p.add_argument("--profile", default="core", choices=["core", "av", "file", "all"])
    p.add_argument("--pin", help="PIN the device shows, for the cases that need pairing; '-' reads "
                                 "it from stdin once the device shows it")
    p.add_argument("--junit", metavar="FILE", help="write a JUnit XML report")
    p.add_argument("--html", metavar="FILE", help="write an HTML report")
    p.add_argument("-i", "--interface", action="append", metavar="IF",
                   help="interface name or address to test on (repeatable; first IPv4 one is used)")
    p.add_argument("--port", type=int, default=IGRS_PORT, help=f"ISDP UDP port (default {IGRS_PORT})")
    p.add_argument("--case", action="append", metavar="ID", help="run only these case ids (repeatable)")
    p.add_argument("--basis", choices=["all", "public"], default="all",
                   help="which rules fail the device: all (default), or public -- only the rules that "
                        "follow from a cited public source (IANA, the clause list, ezbox's framing, RFC "
                        "2774/SOAP/HTTP); project-basis results (pairing, sealing, timers, the bodies this "
                        "project designed) are then reported as advisory")
    p.add_argument("--off-subnet-source", metavar="ADDR",
                   help="an address of this host, on the test interface but outside the device's "
                        "subnet: enables DISC-008 (off-subnet searches are ignored)")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("pcap", help="check the IGRS datagrams and M-POSTs in a capture file (passive)")
    p.add_argument("file", help="pcap or pcapng file (Ethernet, Linux cooked, raw IP or loopback links; "
                                "IPv4 and IPv6)")
    p.add_argument("--port", type=int, default=IGRS_PORT, help=f"ISDP UDP port (default {IGRS_PORT})")
    p.add_argument("--json", action="store_true", help="one JSON object per violation, then a summary")
    p.set_defaults(func=cmd_pcap)

    p = sub.add_parser("watch", help="check the IGRS datagrams on the network as they pass (passive)")
    p.add_argument("-i", "--interface", action="append", metavar="IF",
                   help="interface name or address to listen on (repeatable; default: every LAN "
                        "interface); the ISDP groups are joined there only, nothing is sent")
    p.add_argument("--port", type=int, default=IGRS_PORT, help=f"ISDP UDP port (default {IGRS_PORT})")
    p.add_argument("--ipv6", action="store_true", help="also listen on [ff02::c] (link-local IPv6)")
    p.add_argument("--duration", type=float, metavar="S", help="stop after S seconds (default: Ctrl-C)")
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    p.set_defaults(func=cmd_watch)

    p = sub.add_parser("cases", help="list the catalogue's cases")
    p.add_argument("--profile", default="all", choices=["core", "av", "file", "all"])
    p.set_defaults(func=cmd_cases)


async def cmd_run(args: argparse.Namespace) -> int:
    from igrs.conformance.report import to_html, to_junit, to_text
    from igrs.conformance.runner import run_suite

    report = await run_suite(args.target, args.profile, pin=_pin_source(args.pin), interfaces=args.interface,
                             port=args.port, only=args.case, off_subnet_source=args.off_subnet_source,
                             basis=args.basis)
    print(to_text(report))
    if args.junit:
        Path(args.junit).write_bytes(to_junit(report))
    if args.html:
        Path(args.html).write_bytes(to_html(report))
    return EXIT_OK if report.passed else EXIT_FAILED


def _pin_source(pin: str | None) -> str | Callable[[int], Awaitable[str]] | None:
    """``--pin -``: ask on stderr, read a line from stdin when the device shows its PIN."""
    if pin != "-":
        return pin

    async def ask(digits: int) -> str:
        import asyncio

        print(f"The device shows a {digits}-digit PIN. PIN: ", end="", file=sys.stderr, flush=True)
        return (await asyncio.to_thread(sys.stdin.readline)).strip()

    return ask


def cmd_pcap(args: argparse.Namespace) -> int:
    import json

    from igrs.conformance.capture import CaptureError
    from igrs.conformance.passive import check_capture

    try:
        report = check_capture(args.file, port=args.port)
    except (CaptureError, OSError) as exc:
        print(f"igrs: {args.file}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    for v in report.violations:
        print(json.dumps({"event": "violation", **v.to_json()}) if args.json else v)
    for note in report.notes:
        print(f"note: {note}", file=sys.stderr)
    summary = f"{report.seen} IGRS message(s) checked, {len(report.violations)} violation(s)"
    if args.json:
        print(json.dumps({"event": "summary", "checked": report.seen, "violations": len(report.violations),
                          "notes": report.notes}))
    print(summary, file=sys.stderr)
    return EXIT_FAILED if report.violations else EXIT_OK


async def cmd_watch(args: argparse.Namespace) -> int:
    from igrs.conformance.watch import watch
    from igrs.net import interfaces as netifaces

    try:
        interfaces = netifaces.resolve(args.interface, ipv6=args.ipv6)
    except netifaces.InterfaceError as exc:
        print(f"igrs: {exc.reason}", file=sys.stderr)
        return EXIT_USAGE
    return await watch(interfaces, port=args.port, duration=args.duration, as_json=args.json)


def cmd_cases(args: argparse.Namespace) -> int:
    from igrs.conformance.catalogue import load_cases, select

    for c in select(load_cases(), args.profile):
        print(f"{c.id:9} {'M' if c.mandatory else 'O'} {c.basis:7} {c.clause:18} {c.title}")
    return EXIT_OK

