"""``igrs relay ...`` commands: a thin client of the public relay API.

Hook into the main CLI with ``add_subcommands(subparsers)``; each leaf sets ``args.func``,
a plain callable returning the exit status (it runs the command's coroutine with
``asyncio.run``).

Credentials: ``register-user`` / ``register-device`` can ``--save FILE`` a JSON file
``{"relay", "id", "token", "fingerprint" | "cafile"}`` that the other commands read with
``--creds FILE`` (written with mode 0600: the token is a secret).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
from collections.abc import Callable, Coroutine
from dataclasses import replace
from pathlib import Path
from typing import Any

from igrs.cli import event_loop, xmpp_commands, xmpp_connect
from igrs.cli.exits import EXIT_INTERRUPTED, UsageError, catch_signals
from igrs.cli.options import port_number
from igrs.errors import IGRSError
from igrs.relay.client import RelayClient, register_device, register_user
from igrs.relay.config import DEFAULT_RELAY_PORT, RelayConfig
from igrs.relay.errors import RelayCode, RelayError
from igrs.relay.ids import Kind, Principal
from igrs.relay.limits import Limits
from igrs.relay.payloads import DEFAULT_NAMESPACE
from igrs.relay.server import RelayNode, raise_fd_limit
from igrs.relay.session import REQUEST_OPS
from igrs.relay.transport import Transport

Command = Callable[[argparse.Namespace], Coroutine[Any, Any, int]]
CODE_HELP = ("6-64 printable characters, at least 3 different, not a straight run like "
             "123456 (specs/relay.md)")


def _runner(cmd: Command) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        try:
            return event_loop.run(cmd(args), getattr(args, "loop", "asyncio"))  # --loop: serve
        except KeyboardInterrupt:
            return EXIT_INTERRUPTED  # igrs/cli/main.py says "interrupted"
        except BrokenPipeError:  # | head: main quiets stdout
            raise
        except (IGRSError, OSError, ValueError) as e:
            print(f"igrs relay: {e}", file=sys.stderr)
            return 1

    return run


def _out(obj: Any) -> None:
    print(json.dumps(obj, indent=2) if not isinstance(obj, str) else obj, flush=True)


# ---------------------------------------------------------------- connection options
def _add_conn(p: argparse.ArgumentParser, creds: bool = True) -> None:
    if creds:
        p.add_argument("--creds", type=Path, help="credentials JSON (from --save)")
    p.add_argument("--relay", help=f"relay address host:port (default port {DEFAULT_RELAY_PORT})")
    p.add_argument("--fingerprint", help="pinned SHA-256 fingerprint of the relay certificate")
    p.add_argument("--cafile", help="CA/certificate file to verify the relay (or XMPP server) with")
    xmpp_connect.add_options(p)


def _conn(args: argparse.Namespace) -> dict[str, Any]:
    creds: dict[str, Any] = {}
    if getattr(args, "creds", None):
        creds = json.loads(Path(args.creds).read_text())
    relay = args.relay or creds.get("relay")
    if not relay:
        raise UsageError("no relay address: give --relay or --creds")
    tls = {"fingerprint": args.fingerprint or creds.get("fingerprint"),
           "cafile": args.cafile or creds.get("cafile")}
    if not tls["fingerprint"] and not tls["cafile"]:
        raise UsageError("give --fingerprint or --cafile (TLS is always verified)")
    return {"relay": relay, **creds, **{k: v for k, v in tls.items() if v}}


def _tls(c: dict[str, Any]) -> dict[str, Any]:
    return {k: c[k] for k in ("fingerprint", "cafile") if c.get(k)}


def _client(args: argparse.Namespace, **kw: Any) -> Transport:
    """The one place a command's connection is chosen: the relay, or XMPP with --xmpp."""
    xmpp = xmpp_connect.settings(args)
    if xmpp is not None:
        return xmpp_connect.client(xmpp, **kw)
    c = _conn(args)
    if "id" not in c or "token" not in c:
        raise UsageError("this command needs --creds with an id and a token")
    return RelayClient(c["relay"], principal=c["id"], token=c["token"], **_tls(c), **kw)


def _save(path: Path | None, c: dict[str, Any], pid: str, token: str) -> None:
    if path is None:
        return
    data = {"relay": c["relay"], "id": pid, "token": token, **_tls(c)}
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(data, f, indent=2)


# ---------------------------------------------------------------- commands
async def cmd_serve(args: argparse.Namespace) -> int:
    limits = Limits()
    if args.max_connections is not None:
        limits = replace(limits, max_connections=args.max_connections)
    if args.max_accounts is not None:
        limits = replace(limits, max_accounts=args.max_accounts)
    if args.max_stored_mib is not None:
        limits = replace(limits, max_stored_bytes=args.max_stored_mib << 20)
    cfg = RelayConfig(
        host=args.host,
        port=args.port,
        state_dir=args.state_dir,
        cert_file=args.cert,
        key_file=args.key,
        cert_hosts=args.cert_host or ["localhost", "127.0.0.1", args.host],
        limits=limits,
        open_registration=not args.closed_registration,
        node_id=args.node_id,
    )
    backbone = None
    if args.nats:
        from igrs.relay.backbone.nats import NatsBackbone  # optional extra "cluster"

        backbone = NatsBackbone(args.nats.split(","), node_id=args.node_id, limits=limits)
    raise_fd_limit()  # one descriptor per client
    node = RelayNode(cfg, backbone)
    await node.start()
    print(f"relay node {node.node_id} listening on {args.host}:{node.port}", flush=True)
    if args.host in ("127.0.0.1", "::1", "localhost"):
        print("igrs relay: only this machine can connect; --host 0.0.0.0 (or this host's "
              "address) accepts remote clients", file=sys.stderr, flush=True)
    print(f"certificate {node.cert_file}", flush=True)
    print(f"fingerprint SHA256 {node.fingerprint}", flush=True)
    stop = catch_signals()
    try:
        await stop.wait()
    finally:
        await node.close()
    return 0


async def cmd_register_user(args: argparse.Namespace) -> int:
    if (xmpp := xmpp_connect.settings(args)) is not None:
        return await xmpp_connect.register(args, xmpp, Kind.USER)
    c = _conn(args)
    p, token = await register_user(c["relay"], args.name, **_tls(c))
    _save(args.save, c, str(p), token)
    _out({"id": str(p), "token": token})
    return 0


async def cmd_register_device(args: argparse.Namespace) -> int:
    if (xmpp := xmpp_connect.settings(args)) is not None:
        return await xmpp_connect.register(args, xmpp, Kind.DEVICE)
    c = _conn(args)
    p, token = await register_device(c["relay"], args.name, args.verify_code,
                                     device=args.device_id, device_type=args.device_type,
                                     **_tls(c))
    _save(args.save, c, str(p), token)
    _out({"id": str(p), "token": token})
    return 0


PARTY_HELP = "id, or the name of a party related to you (igrs relay relations)"


async def _resolve(c: Transport, args: argparse.Namespace, *fields: str) -> None:
    """Replace each named party in ``args.<field>`` (a value or a list) by its id: an id is
    kept, a name is looked up among the parties related to the caller (`relations` carries
    their names). A stranger has to be given by id: the relay offers no directory search."""
    names: dict[str, str] | None = None

    async def one(ref: str) -> str:
        nonlocal names
        try:
            return str(Principal.parse(ref))
        except IGRSError:
            pass
        if names is None:
            names = dict((await c.request("relations")).get("names", {}))
        hits = sorted(pid for pid, name in names.items() if name == ref)
        if len(hits) == 1:
            return hits[0]
        if hits:
            raise UsageError(f"{len(hits)} related parties are named {ref!r}; give one of "
                             f"their ids: {', '.join(hits)}")
        raise UsageError(f"no related user or device is named {ref!r}: give its id "
                         "(see igrs relay relations; a stranger is addressed by id)")

    for field in fields:
        value = getattr(args, field, None)
        if isinstance(value, list):
            setattr(args, field, [await one(v) for v in value])
        elif value:
            setattr(args, field, await one(value))


def _request_cmd(op: str, build: Callable[[argparse.Namespace], dict[str, Any]],
                 refs: tuple[str, ...] = ()) -> Command:
    async def cmd(args: argparse.Namespace) -> int:
        async with _client(args, reconnect=False) as c:
            await _resolve(c, args, *refs)
            _out(await c.request(op, **build(args)))
        return 0

    return cmd


async def cmd_add_account(args: argparse.Namespace) -> int:
    """The operator's registration, straight into the state dir (works with
    --closed-registration; the running node sees the account within a second)."""
    from igrs.relay.backbone.embedded import EmbeddedBackbone
    from igrs.relay.directory import Directory
    from igrs.relay.ids import Principal
    from igrs.relay.statedir import DATABASE, secure_state_dir
    from igrs.relay.tlsutil import fingerprint_pem

    if args.kind == "device" and not args.verify_code:
        raise UsageError("a device needs --verify-code")
    for note in secure_state_dir(args.state_dir):
        print(f"igrs relay: {note}", file=sys.stderr)
    backbone = EmbeddedBackbone(args.state_dir / DATABASE)
    try:
        directory = Directory(backbone.kv, Limits())
        if args.kind == "user":
            p, token = await directory.register_user(args.name)
        else:
            p = Principal.parse(args.device_id) if args.device_id else Principal.device()
            token = await directory.register_device(p, args.name, args.device_type,
                                                    args.verify_code)
    finally:
        await backbone.close()
    if args.save is not None:
        if not args.relay:
            raise UsageError("--save needs --relay host:port (the address clients use)")
        cert = args.state_dir / "relay-cert.pem"
        fp = args.fingerprint or (fingerprint_pem(cert) if cert.exists() else None)
        tls = {"fingerprint": fp} if fp else {"cafile": args.cafile}
        _save(args.save, {"relay": args.relay, **tls}, str(p), token)
    _out({"id": str(p), "token": token})
    return 0


async def cmd_rotate_token(args: argparse.Namespace) -> int:
    """A new token; your own is written back into --creds (or --save) so access is kept."""
    c = _conn(args)
    async with _client(args, reconnect=False) as client:
        await _resolve(client, args, "device")
        body = {"device": args.device} if args.device else {}
        r = await client.request("rotate_token", **body)
    target = args.save or (None if args.device else args.creds)
    _save(target, c, r["id"], r["token"])
    _out(r if target is None else {"id": r["id"], "saved": str(target), "closed": r["closed"]})
    return 0


async def cmd_delete_account(args: argparse.Namespace) -> int:
    if not args.yes:
        raise UsageError("deleting an account cannot be undone: add --yes")
    async with _client(args, reconnect=False) as c:
        await _resolve(c, args, "device")
        _out(await c.request("delete_account", **({"device": args.device} if args.device else {})))
    return 0


def _modify_body(args: argparse.Namespace) -> dict[str, Any]:
    body = {k: v for k, v in (("name", args.name), ("device_type", args.device_type),
                              ("device", args.device)) if v is not None}
    if args.name is None and args.device_type is None:
        raise UsageError("give --name and/or --device-type")
    return body


async def cmd_request(args: argparse.Namespace) -> int:
    body = _kwargs(args.args)
    async with _client(args, reconnect=False) as c:
        _out(await c.request(args.op, **body))
    return 0


async def cmd_send(args: argparse.Namespace) -> int:
    data = sys.stdin.buffer.read() if args.text == "-" else args.text.encode()
    async with _client(args, reconnect=False) as c:
        await _resolve(c, args, "to")
        try:
            if args.to_user_devices:
                _out(await c.multicast(data, user=args.to, namespace=args.namespace,
                                       durable=args.durable))
            else:
                _out(await c.send(args.to, data, namespace=args.namespace, durable=args.durable))
        except RelayError as e:
            if e.code != RelayCode.FORBIDDEN:
                raise
            raise RelayError(e.code, f"{e.reason} — only related parties reach each other: "
                             "become friends first (igrs relay friend --user ID; they answer "
                             "with --accept), or bind the device (igrs relay bind)") from None
    return 0


async def cmd_listen(args: argparse.Namespace) -> int:
    async with _client(args) as c:
        if args.presence:
            for pid, online in (await c.subscribe_presence()).items():
                print(f"presence {pid} {'online' if online else 'offline'}", flush=True)
        print(f"listening as {c.principal}", flush=True)

        async def presence() -> None:
            while True:
                ev = await c.presence.get()
                print(f"presence {ev.principal} {'online' if ev.online else 'offline'}",
                      flush=True)

        async def notes() -> None:
            while True:
                print(f"notify {json.dumps(await c.notifications.get())}", flush=True)

        side = [asyncio.create_task(presence()), asyncio.create_task(notes()),
                asyncio.create_task(_connection_notices(c))]
        try:
            n = 0
            while args.count is None or n < args.count:
                m = await c.receive(timeout=args.timeout)
                n += 1
                tag = " stored" if m.stored else ""
                print(f"message {m.source} {m.namespace}{tag} {m.text}", flush=True)
        except TimeoutError:
            return 0 if args.count is None else 1  # fewer than --count messages: a failure, not usage
        finally:
            for t in side:
                t.cancel()
    return 0


async def _connection_notices(c: Transport, every: float = 0.5) -> None:
    """Say on stderr when the relay connection is lost and when it is back (the client
    reconnects by itself)."""
    up = True
    while True:
        await asyncio.sleep(every)
        if up and not c.connected:
            print("igrs relay: disconnected from the relay; reconnecting", file=sys.stderr,
                  flush=True)
        elif not up and c.connected:
            print("igrs relay: reconnected", file=sys.stderr, flush=True)
        up = c.connected


async def cmd_gateway(args: argparse.Namespace) -> int:
    from igrs.node.control import ControlPoint
    from igrs.node.keystore import default_state_dir
    from igrs.relay.gateway import HomeGateway

    state = args.state_dir or default_state_dir() / "controller"
    async with ControlPoint(interfaces=args.interface or None, port=args.port,
                            state_dir=state) as cp, _client(args) as c:
        paired = ", ".join(p.name or str(p.device_id) for p in cp.paired()) or "none"
        print(f"gateway {c.principal} serving the home LAN (paired: {paired})", flush=True)
        gateway = asyncio.create_task(HomeGateway(c, cp, owners_only=args.owners_only).serve())
        try:  # other messages to the gateway device are printed, as by listen
            async for m in c.messages():
                print(f"message {m.source} {m.namespace} {m.text}", flush=True)
        finally:
            gateway.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await gateway
    return 0


def _kwargs(items: list[str]) -> dict[str, Any]:
    """key=value arguments: JSON where it parses (5, true, [1,2], "x"), else the text."""
    out: dict[str, Any] = {}
    for kv in items:
        k, sep, v = kv.partition("=")
        if not sep or not k:
            raise UsageError(f"arguments are key=value (JSON values allowed): {kv!r}")
        try:
            out[k] = json.loads(v)
        except ValueError:
            out[k] = v
    return out


async def _home(args: argparse.Namespace, c: Transport) -> Any:
    from igrs.relay.gateway import RemoteHome

    await _resolve(c, args, "gateway")
    return RemoteHome(c, args.gateway, timeout=args.timeout)


async def cmd_home_devices(args: argparse.Namespace) -> int:
    async with _client(args, reconnect=False) as c:
        home = await _home(args, c)
        _out(await home.devices(search_timeout=args.search_timeout,
                                services=not args.no_services))
    return 0


async def cmd_invoke(args: argparse.Namespace) -> int:
    from igrs.relay.gateway import decode_value, encode_value

    kwargs = {k: decode_value(v) for k, v in _kwargs(args.arguments).items()}
    async with _client(args, reconnect=False) as c:
        home = await _home(args, c)
        result = await home.invoke(args.device, args.service, args.action, **kwargs)
    print(json.dumps(encode_value(result)), flush=True)
    return 0


async def cmd_home_get(args: argparse.Namespace) -> int:
    from igrs.relay.gateway import encode_value

    async with _client(args, reconnect=False) as c:
        home = await _home(args, c)
        values = await home.get(args.device, args.service, *args.names)
    _out(encode_value(values))
    return 0


async def cmd_home_describe(args: argparse.Namespace) -> int:
    async with _client(args, reconnect=False) as c:
        home = await _home(args, c)
        _out(await home.describe(args.device, args.service))
    return 0


async def cmd_presence(args: argparse.Namespace) -> int:
    async with _client(args, reconnect=False) as c:
        await _resolve(c, args, "ids")
        _out(await c.query_presence(args.ids or None))
    return 0


# ---------------------------------------------------------------- parser
def add_subcommands(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    relay = subparsers.add_parser("relay", help="IGRS 2.0 remote-access relay (specs/relay.md)")
    sub = relay.add_subparsers(dest="relay_command", required=True)
    _add_commands(sub)
    xmpp_commands.add_commands(sub)


def _add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("serve", help="run a relay node (embedded SQLite, or --nats cluster)")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1: this machine only; 0.0.0.0 "
                        "or a public address accepts remote clients)")
    p.add_argument("--port", type=port_number, default=DEFAULT_RELAY_PORT,
                   help=f"TCP port (default {DEFAULT_RELAY_PORT}; 0: any free port, printed)")
    p.add_argument("--state-dir", type=Path, default=Path("relay-state"),
                   help="SQLite database and generated certificate live here")
    p.add_argument("--cert", type=Path, help="PEM certificate (default: self-signed, created)")
    p.add_argument("--key", type=Path, help="PEM private key for --cert")
    p.add_argument("--cert-host", action="append", help="name/IP for the generated cert")
    p.add_argument("--closed-registration", action="store_true",
                   help="refuse register-user/register-device from clients: the production "
                        "setting (accounts are made by the operator, add-account); open "
                        "registration is for test beds")
    p.add_argument("--max-connections", type=int,
                   help="open connections the node accepts (default: specs/relay.md, Limits)")
    p.add_argument("--max-accounts", type=int,
                   help=f"total users + devices (default {Limits().max_accounts:,}; then 507)")
    p.add_argument("--max-stored-mib", type=int,
                   help="node-wide cap on stored (offline) message bodies in MiB (default "
                        f"{Limits().max_stored_bytes >> 20:,}; then 509)")
    p.add_argument("--nats", help="NATS server URL(s), comma-separated: cluster backbone")
    p.add_argument("--node-id", help="this node's name in a --nats cluster (default: random)")
    event_loop.add_loop_option(p)
    p.set_defaults(func=_runner(cmd_serve))

    p = sub.add_parser("add-account", help="operator: create a user or device account in a "
                                           "relay's state dir (also with --closed-registration)")
    p.add_argument("kind", choices=("user", "device"), help="the kind of account")
    p.add_argument("--state-dir", type=Path, default=Path("relay-state"),
                   help="the relay node's --state-dir (default ./relay-state)")
    p.add_argument("--name", required=True, help="the account's name (1-128 printable characters)")
    p.add_argument("--verify-code", help="for a device; " + CODE_HELP)
    p.add_argument("--device-id", help="urn:IGRS:Device:DeviceId:<uuid> (default: new)")
    p.add_argument("--device-type", default="Unknown", help="for a device: TV, PC, ...")
    p.add_argument("--save", type=Path, help="write a credentials file (needs --relay)")
    p.add_argument("--relay", help="host:port clients reach the relay at (for --save)")
    p.add_argument("--fingerprint", help="default: of the state dir's relay-cert.pem")
    p.add_argument("--cafile", help="with --save: the CA file clients verify the relay with")
    p.set_defaults(func=_runner(cmd_add_account))

    p = sub.add_parser("register-user", help="create an RA user; prints id and token")
    _add_conn(p, creds=False)
    p.add_argument("--name", required=True, help="your name (others address you by it)")
    p.add_argument("--save", type=Path, help="write a credentials file (mode 0600)")
    p.set_defaults(func=_runner(cmd_register_user))

    p = sub.add_parser("register-device", help="create an RA device with a verification code")
    _add_conn(p, creds=False)
    p.add_argument("--name", required=True, help="the device's name")
    p.add_argument("--verify-code", required=True,
                   help="the code its owner binds it with; " + CODE_HELP)
    p.add_argument("--device-id", help="urn:IGRS:Device:DeviceId:<uuid> (default: new)")
    p.add_argument("--device-type", default="Unknown", help="TV, PC, ... (default Unknown)")
    p.add_argument("--save", type=Path, help="write a credentials file (mode 0600)")
    p.set_defaults(func=_runner(cmd_register_device))

    p = sub.add_parser("bind", help="bind a device to the user in --creds")
    _add_conn(p)
    p.add_argument("--device", required=True, help="the device's id (it shows it with its code)")
    p.add_argument("--verify-code", required=True, help="the code the device shows")
    p.set_defaults(func=_runner(_request_cmd(
        "bind", lambda a: {"device": a.device, "verify_code": a.verify_code})))

    p = sub.add_parser("modify", help="change your account's name or device type (or, with "
                                      "--device, those of a device bound to you)")
    _add_conn(p)
    p.add_argument("--name", help="the new name")
    p.add_argument("--device-type", help="the new device type")
    p.add_argument("--device", help="a device bound to you (default: your own account); "
                                    + PARTY_HELP)
    p.set_defaults(func=_runner(_request_cmd("modify_account", _modify_body, refs=("device",))))

    p = sub.add_parser("reset-code", help="set a new device verification code (the device's "
                                          "own, or with --device one bound to you): the old "
                                          "code stops binding at once")
    _add_conn(p)
    p.add_argument("--verify-code", required=True, help="the new code; " + CODE_HELP)
    p.add_argument("--device", help="a device bound to you (default: the device in --creds); "
                                    + PARTY_HELP)
    p.set_defaults(func=_runner(_request_cmd(
        "reset_verify_code", lambda a: {"verify_code": a.verify_code,
                                        **({"device": a.device} if a.device else {})},
        refs=("device",))))

    p = sub.add_parser("rotate-token", help="replace a token (yours, or with --device that of "
                                            "a device bound to you): the old one is revoked "
                                            "and its connections closed")
    _add_conn(p)
    p.add_argument("--device", help="a device bound to you: revoke its token, print the new one")
    p.add_argument("--save", type=Path,
                   help="write the new credentials here (default for your own token: --creds)")
    p.set_defaults(func=_runner(cmd_rotate_token))

    p = sub.add_parser("delete-account", help="delete your account (or, with --device, a device "
                                              "bound to you): relationships, items and stored "
                                              "messages go too")
    _add_conn(p)
    p.add_argument("--device", help="a device bound to you (default: your own account)")
    p.add_argument("--yes", action="store_true", help="confirm: this cannot be undone")
    p.set_defaults(func=_runner(cmd_delete_account))

    p = sub.add_parser("unbind", help="unbind a device")
    _add_conn(p)
    p.add_argument("--device", required=True, help="the device; " + PARTY_HELP)
    p.set_defaults(func=_runner(_request_cmd("unbind", lambda a: {"device": a.device},
                                             refs=("device",))))

    p = sub.add_parser("friend", help="send (or accept, with --accept/--deny) a friend request")
    _add_conn(p)
    p.add_argument("--user", required=True,
                   help="the other user: an id, or the name of one whose request you answer")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--accept", action="store_true", help="accept the user's request")
    g.add_argument("--deny", action="store_true", help="deny the user's request")
    p.set_defaults(func=_runner(_friend))

    p = sub.add_parser("relations", help="list relationships")
    _add_conn(p)
    p.set_defaults(func=_runner(_request_cmd("relations", lambda a: {})))

    p = sub.add_parser("presence", help="online status of related parties")
    _add_conn(p)
    p.add_argument("ids", nargs="*", help="parties to ask about (default: every related "
                                          "one); " + PARTY_HELP)
    p.set_defaults(func=_runner(cmd_presence))

    p = sub.add_parser("send", help="send a message (TEXT, or - for stdin)")
    _add_conn(p)
    p.add_argument("--to", required=True, help="user or device: " + PARTY_HELP)
    p.add_argument("--to-user-devices", action="store_true",
                   help="point-to-multipoint: every device bound to the --to user")
    p.add_argument("--durable", action="store_true", help="store if offline (at-least-once)")
    p.add_argument("--namespace", default=DEFAULT_NAMESPACE,
                   help=f"the application namespace (default {DEFAULT_NAMESPACE})")
    p.add_argument("text", help="the message (- reads it from stdin)")
    p.set_defaults(func=_runner(cmd_send))

    p = sub.add_parser("listen", help="print messages (and presence) as they arrive")
    _add_conn(p)
    p.add_argument("--count", type=int, help="exit after this many messages")
    p.add_argument("--timeout", type=float, help="exit after this long without a message")
    p.add_argument("--presence", action="store_true", help="also print presence changes")
    p.set_defaults(func=_runner(cmd_listen))

    p = sub.add_parser("gateway", help="serve as the home gateway: remote users list the LAN's "
                                        "devices and invoke their services")
    _add_conn(p)
    p.add_argument("--interface", action="append", help="LAN interface (name or address)")
    p.add_argument("--port", type=port_number, default=3880, help="IGRS discovery port")
    p.add_argument("--state-dir", type=Path,
                   help="the control point's identity and pairings (pair home devices into it "
                        "with: igrs pair --state-dir DIR DEVICE); default: as igrs pair, "
                        "$IGRS_STATE_DIR or ~/.local/state/igrs, /controller")
    p.add_argument("--owners-only", action="store_true",
                   help="serve only the users the gateway is bound to (not linked devices)")
    p.set_defaults(func=_runner(cmd_gateway))

    def home(name: str, help_: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_)
        _add_conn(p)
        p.add_argument("--gateway", required=True, help="the gateway device: " + PARTY_HELP)
        p.add_argument("--timeout", type=float, default=20.0,
                       help="seconds to wait for the gateway's answer")
        return p

    p = home("home-devices", "list a home's devices and their services through its gateway")
    p.add_argument("--search-timeout", type=float, default=1.5,
                   help="seconds the gateway searches the LAN (default 1.5, at most 10)")
    p.add_argument("--no-services", action="store_true", help="skip the device descriptions")
    p.set_defaults(func=_runner(cmd_home_devices))

    p = home("invoke", "invoke a service action on a home device through its gateway")
    p.add_argument("device", help="device id (or its exact name, or UUID prefix)")
    p.add_argument("service", help="service type URN, type name (Volume) or service id")
    p.add_argument("action", help="the action's name (home-describe lists them)")
    p.add_argument("arguments", nargs="*", metavar="KEY=VALUE",
                   help='arguments, JSON values (bytes: {"$bytes": base64})')
    p.set_defaults(func=_runner(cmd_invoke))

    p = home("home-get", "read service attributes of a home device through its gateway")
    p.add_argument("device", help="device id (or its exact name, or UUID prefix)")
    p.add_argument("service", help="service type URN, type name (Volume) or service id")
    p.add_argument("names", nargs="*", help="attribute names (default: all)")
    p.set_defaults(func=_runner(cmd_home_get))

    p = home("home-describe", "a home service's actions and attributes, through its gateway")
    p.add_argument("device", help="device id (or its exact name, or UUID prefix)")
    p.add_argument("service", help="service type URN, type name (Volume) or service id")
    p.set_defaults(func=_runner(cmd_home_describe))

    ops = "\n".join(f"  {op:22} {what}" for op, what in REQUEST_OPS.items())
    p = sub.add_parser("request", help="any relay op: request OP key=value ...",
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       epilog=f"ops (specs/relay.md, Requests):\n{ops}")
    _add_conn(p)
    p.add_argument("op", choices=sorted(REQUEST_OPS), metavar="OP", help="the op (listed below)")
    p.add_argument("args", nargs="*", metavar="KEY=VALUE", help="its arguments (JSON values)")
    p.set_defaults(func=_runner(cmd_request))


async def _friend(args: argparse.Namespace) -> int:
    if args.accept or args.deny:
        return await _request_cmd("friend_respond", lambda a: {
            "user": a.user, "accept": bool(a.accept)}, refs=("user",))(args)
    return await _request_cmd("friend_request", lambda a: {"user": a.user}, refs=("user",))(args)

