"""``igrs relay ... --xmpp JID``: the same commands over a standard XMPP server (specs/relay-xmpp.md).

relay_commands.py asks :func:`settings` whether a command goes over XMPP and then takes its
client from :func:`client` (or registers with :func:`register`); everything else is shared.
Credentials file over XMPP: ``{"xmpp": JID, "id", "password", "servers": [...], "cafile"}``
(mode 0600). The password comes from ``--creds``, else ``$IGRS_XMPP_PASSWORD``, else a prompt
on a terminal. slixmpp (extra ``igrs[xmpp]``) is imported only when a command connects.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import secrets
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from igrs.cli.exits import UsageError
from igrs.relay.errors import RelayError
from igrs.relay.ids import Kind, Principal

if TYPE_CHECKING:
    from igrs.xmpp.client import XmppClient

PASSWORD_ENV = "IGRS_XMPP_PASSWORD"


def add_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--xmpp", metavar="JID",
                   help="go through an XMPP server instead of the relay: this party's JID "
                        "(register-*: the domain, or the JID to create)")
    p.add_argument("--xmpp-server", action="append", metavar="HOST:PORT",
                   help="XMPP server address (repeat: several nodes, the client fails over); "
                        "default: the JID's domain, port 5222")


def _creds(args: argparse.Namespace) -> dict[str, Any]:
    path = getattr(args, "creds", None)
    return dict(json.loads(Path(path).read_text())) if path else {}


def settings(args: argparse.Namespace) -> dict[str, Any] | None:
    """The XMPP connection of this command line, or None when it goes to the relay."""
    creds = _creds(args)
    jid = getattr(args, "xmpp", None) or creds.get("xmpp")
    if not jid:
        return None
    if getattr(args, "relay", None):
        raise UsageError("give --relay or --xmpp, not both")
    if getattr(args, "fingerprint", None):
        raise UsageError("--fingerprint pins the relay's certificate; over XMPP give --cafile")
    return {**creds, "xmpp": jid, "servers": args.xmpp_server or creds.get("servers") or [],
            "cafile": args.cafile or creds.get("cafile")}


def _domain(jid: str) -> str:
    return jid.rpartition("@")[2].partition("/")[0]


def _password(s: dict[str, Any]) -> str:
    pw = s.get("password") or os.environ.get(PASSWORD_ENV)
    if not pw and sys.stdin.isatty():
        pw = getpass.getpass(f"XMPP password of {s['xmpp']}: ")
    if not pw:
        raise UsageError(f"no XMPP password: give --creds, ${PASSWORD_ENV}, or run on a terminal")
    return str(pw)


def client(s: dict[str, Any], **kw: Any) -> XmppClient:
    from igrs.xmpp.client import XmppClient, principal_of

    class CliXmppClient(XmppClient):
        async def request(self, op: str, **args: Any) -> dict[str, Any]:
            if op not in XmppClient.OPS:
                raise UsageError(f"{op} is not offered over XMPP (it is a relay account operation)")
            return await super().request(op, **args)

    principal = principal_of(s["xmpp"])
    if principal is None:
        raise UsageError(f"{s['xmpp']} is not an IGRS party JID (u<uuid hex>@domain or d<uuid hex>@domain)")
    return CliXmppClient(principal, _password(s), domain=_domain(s["xmpp"]), servers=s["servers"],
                         cafile=s["cafile"], **kw)


def _save(path: Path | None, data: dict[str, Any]) -> None:
    if path is None:
        return
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(data, f, indent=2)


async def register(args: argparse.Namespace, s: dict[str, Any], kind: Kind) -> int:
    """In-band registration (XEP-0077) of a new party; a device also sets its verification
    code at the binding component. Prints and saves the credentials."""
    from igrs.xmpp.client import jid_of, principal_of

    target = s["xmpp"]
    principal = principal_of(target) if "@" in target else None
    if principal is None:
        if "@" in target:
            raise UsageError(f"{target} is not an IGRS party JID; give the domain to get a new one")
        device = getattr(args, "device_id", None)
        principal = (Principal.user() if kind is Kind.USER else
                     Principal.parse(device) if device else Principal.device())
    if principal.kind is not kind:
        raise UsageError(f"{target} names a {principal.kind.name.lower()}, not a {kind.name.lower()}")
    domain = _domain(target) if "@" in target else target
    jid = jid_of(principal, domain)
    password = os.environ.get(PASSWORD_ENV) or secrets.token_urlsafe(18)
    data = {"xmpp": jid, "id": str(principal), "password": password, "servers": s["servers"],
            **({"cafile": s["cafile"]} if s["cafile"] else {})}
    c = client({**data, "cafile": s["cafile"]}, reconnect=False)
    c.register = True
    async with c:
        _save(args.save, data)
        print(json.dumps({"id": str(principal), "jid": jid, "password": password}, indent=2), flush=True)
        if kind is Kind.DEVICE:
            try:
                await c.set_verify_code(args.verify_code)
            except RelayError as e:
                print(f"igrs relay: {jid} is registered, but its verification code is not set "
                      f"(no binding component at {c.component}?): {e}", file=sys.stderr)
                return 1
    return 0
