"""``igrs relay xmpp-component``: the device-bind component beside an XMPP server.

specs/relay-xmpp-server.md. Registered by igrs.cli.relay_commands; slixmpp (the ``xmpp``
extra) is imported only when the command runs.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from igrs.cli import event_loop
from igrs.cli.exits import EXIT_FAILED, EXIT_INTERRUPTED, catch_signals
from igrs.cli.options import port_number

CONNECT_TIMEOUT = 10.0  # s to get a session with the server's component port


async def cmd_component(args: argparse.Namespace) -> int:
    """Connect, say so on stdout, serve until SIGTERM/SIGINT (exit 0; 130 for SIGINT)."""
    from igrs.xmpp import component as c

    admin: c.RosterAdmin
    if args.server == "ejabberd":
        admin = c.EjabberdAdmin(url=args.ejabberd_api, component=args.jid)
    else:
        admin = c.ProsodyAdmin(domain=args.domain or args.jid.partition(".")[2])
    stop = catch_signals()
    service = c.BindService(c.BindStore.load(args.state), admin)
    component = c.BindComponent(args.jid, args.secret, args.host, args.port, service)
    try:
        try:
            await component.start(CONNECT_TIMEOUT)
        except TimeoutError:
            print(f"igrs relay: xmpp-component: no component session with {args.host}:{args.port} "
                  f"in {CONNECT_TIMEOUT:.0f} s (is the port the server's component port, "
                  f"--jid and --secret as in its config?)", file=sys.stderr)
            return EXIT_FAILED
        print(f"xmpp component {args.jid} connected to {args.host}:{args.port} ({args.server})",
              flush=True)
        await stop.wait()
    finally:
        await component.stop()
        service.close()
    return 0


def _run(args: argparse.Namespace) -> int:
    try:
        return event_loop.run(cmd_component(args), "asyncio")
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("xmpp-component", help="device-bind component for an XMPP server (XEP-0114)")
    p.add_argument("--jid", default="igrs.localhost", help="component domain")
    p.add_argument("--secret", required=True, help="component secret (server config)")
    p.add_argument("--host", default="127.0.0.1",
                   help="the XMPP server's component address (default 127.0.0.1)")
    p.add_argument("--port", type=port_number, default=5347,
                   help="the server's XEP-0114 component port (default 5347, as the shipped configs)")
    p.add_argument("--state", type=Path, help="JSON file for code hashes and owners")
    p.add_argument("--server", choices=("prosody", "ejabberd"), default="prosody",
                   help="the XMPP server beside which the component runs (how rosters are written)")
    p.add_argument("--domain", help="the XMPP server's domain (default: --jid without its first label)")
    p.add_argument("--ejabberd-api", default="http://127.0.0.1:5281/api",
                   help="ejabberd's HTTP API (mod_http_api, the shipped config's loopback listener)")
    p.set_defaults(func=_run)
