"""``igrs conformance run TARGET`` (the active suite), ``cases`` (the catalogue), ``pcap FILE``
and ``watch`` (passive checks of a capture and of live traffic). ``add_subcommands(subparsers)``
registers ``conformance`` on ``igrs/cli/main.py``'s parser; handlers return the exit status."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

from igrs.cli.exits import (
    EXIT_FAILED,
    EXIT_INCOMPLETE,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    UsageError,
    ask,
    catch_signals,
    interrupted,
)
from igrs.cli.options import ip_address, port_number
from igrs.constants import IGRS_PORT


def add_subcommands(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    conf = subparsers.add_parser("conformance", help="check an IGRS device against specs/ (test suite)")
    sub = conf.add_subparsers(dest="conformance_command", metavar="ACTION", required=True)

    p = sub.add_parser("run", help="run the conformance cases against a device")
    p.add_argument("target", help="device id, UUID prefix or name (found by ISDP search), "
                                  "or host:port of its /IGRS endpoint")
    p.add_argument("--profile", default="core", choices=["core", "av", "file", "all"],
                   help="which cases: core (discovery, description, pipes, services, groups), "
                        "av, file, or all (default core)")
    p.add_argument("--pin", help="PIN the device shows, for the cases that need pairing; '-' reads "
                                 "it from stdin once the device shows it")
    p.add_argument("--junit", metavar="FILE", help="write a JUnit XML report")
    p.add_argument("--html", metavar="FILE", help="write an HTML report")
    p.add_argument("-i", "--interface", action="append", metavar="IF",
                   help="interface name or address to test on (repeatable; first IPv4 one is used)")
    p.add_argument("--port", type=port_number, default=IGRS_PORT, help=f"ISDP UDP port (default {IGRS_PORT})")
    p.add_argument("--case", action="append", metavar="ID",
                   help="run only this case (DISC-002) or area (DISC); repeatable. The lab's narrowing: "
                        "cases left out do not count, and the report says so")
    p.add_argument("--exclude", action="append", metavar="ID",
                   help="leave out this case or area (GRP); repeatable, recorded in the report like --case")
    p.add_argument("--basis", choices=["all", "public"], default="all",
                   help="which rules fail the device: all (default), or public -- only the rules that "
                        "follow from a cited public source (IANA, the clause list, ezbox's framing, RFC "
                        "2774/SOAP/HTTP); project-basis results (pairing, sealing, timers, the bodies this "
                        "project designed) are then advisory: they neither fail the run nor leave it "
                        "incomplete")
    p.add_argument("--off-subnet-source", metavar="ADDR", type=ip_address,
                   help="an address of this host, on the test interface but outside the device's "
                        "subnet: enables DISC-008 (off-subnet searches are ignored)")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("pcap", help="check the IGRS datagrams and M-POSTs in a capture file (passive)")
    p.add_argument("file", help="pcap or pcapng file (Ethernet, Linux cooked, raw IP or loopback links; "
                                "IPv4 and IPv6)")
    p.add_argument("--port", type=port_number, default=IGRS_PORT, help=f"ISDP UDP port (default {IGRS_PORT})")
    p.add_argument("--json", action="store_true", help="one JSON object per violation, then a summary")
    p.set_defaults(func=cmd_pcap)

    p = sub.add_parser("watch", help="check the IGRS datagrams on the network as they pass (passive)")
    p.add_argument("-i", "--interface", action="append", metavar="IF",
                   help="interface name or address to listen on (repeatable; default: every LAN "
                        "interface); the ISDP groups are joined there only, nothing is sent")
    p.add_argument("--port", type=port_number, default=IGRS_PORT, help=f"ISDP UDP port (default {IGRS_PORT})")
    p.add_argument("--ipv6", action="store_true", help="also listen on [ff02::c] (link-local IPv6)")
    p.add_argument("--duration", type=float, metavar="S", help="stop after S seconds (default: Ctrl-C)")
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    p.add_argument("--status-every", type=float, metavar="S",
                   help="print how many IGRS messages were heard every S seconds, on stderr "
                        "(default: STATUS_INTERVAL of igrs/conformance/watch.py, 10 s)")
    p.set_defaults(func=cmd_watch)

    p = sub.add_parser("cases", help="list the catalogue's cases")
    p.add_argument("--profile", default="all", choices=["core", "av", "file", "all"],
                   help="list the cases of this profile (default all)")
    p.set_defaults(func=cmd_cases)


async def cmd_run(args: argparse.Namespace) -> int:
    """Each verdict is printed as its case finishes; the verdict of the run last. Exit 0
    PASSED, 1 FAILED, 3 INCOMPLETE; Ctrl-C writes the partial report and exits 130."""
    from igrs.conformance.catalogue import load_cases, select
    from igrs.conformance.report import (
        text_findings,
        text_header,
        text_line,
        text_problem,
        text_summary,
        to_html,
        to_junit,
    )
    from igrs.conformance.runner import FAILED, PASSED, CaseResult, Report, RunListener, choose, run_suite

    class Printer(RunListener):
        """The run as it goes: the header once the target answers, then each verdict."""

        def found(self, report: Report) -> None:
            print(text_header(report), flush=True)

        def result(self, report: Report, result: CaseResult) -> None:
            print(text_line(report, result), flush=True)

        def problem(self, report: Report, text: str) -> None:
            print(text_problem(text), flush=True)

    try:
        choose(select(load_cases(), args.profile), args.case, args.exclude)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    report = await run_suite(args.target, args.profile, pin=_pin_source(args.pin, args.target),
                             interfaces=args.interface, port=args.port, only=args.case, exclude=args.exclude,
                             off_subnet_source=args.off_subnet_source, listener=Printer(),
                             stop=catch_signals(), basis=args.basis)
    print("\n".join([*text_findings(report), *map(text_problem, report.problems), text_summary(report)]),
          flush=True)
    written = []
    if args.junit:
        Path(args.junit).write_bytes(to_junit(report))
        written.append(args.junit)
    if args.html:
        Path(args.html).write_bytes(to_html(report))
        written.append(args.html)
    if interrupted():
        if written:
            print(f"igrs: partial report written to {' and '.join(written)}", file=sys.stderr)
        return EXIT_INTERRUPTED
    return {PASSED: EXIT_OK, FAILED: EXIT_FAILED}.get(report.verdict, EXIT_INCOMPLETE)


def _pin_source(pin: str | None, target: str) -> str | Callable[[int], Awaitable[str]] | None:
    """``--pin -``: ask on stderr, read a line from stdin when the device shows its PIN."""
    if pin != "-":
        return pin

    async def typed(digits: int) -> str:
        from igrs.node.pin_text import pin_prompt

        return await ask(pin_prompt(target, digits))

    return typed


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
    if args.json:  # stdout stays JSON lines; the words go to stderr
        print(json.dumps({"event": "summary", "checked": report.seen, "violations": len(report.violations),
                          "notes": report.notes}))
    print(summary, file=sys.stderr if args.json else sys.stdout)
    return EXIT_FAILED if report.violations else EXIT_OK


async def cmd_watch(args: argparse.Namespace) -> int:
    from igrs.conformance.watch import watch
    from igrs.net import interfaces as netifaces

    try:
        interfaces = netifaces.resolve(args.interface, ipv6=args.ipv6)
    except netifaces.InterfaceError as exc:
        print(f"igrs: {exc.reason}", file=sys.stderr)
        return EXIT_USAGE
    from igrs.conformance.watch import STATUS_INTERVAL

    return await watch(interfaces, port=args.port, duration=args.duration, as_json=args.json,
                       stop=catch_signals(), status_interval=args.status_every or STATUS_INTERVAL)


def cmd_cases(args: argparse.Namespace) -> int:
    from igrs.conformance.catalogue import load_cases, select

    for c in select(load_cases(), args.profile):
        print(f"{c.id:9} {'M' if c.mandatory else 'O'} {c.basis:7} {c.clause:18} {c.title}")
    return EXIT_OK

