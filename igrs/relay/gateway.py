"""Remote access to a home: a home device acting as gateway for remote users.

The gateway is an RA device bound to its owner. It keeps its outbound relay connection and
runs an IGRS 1.0 ``ControlPoint`` on the home LAN, **paired** (locally, by the owner: ``igrs
pair --state-dir DIR``) with the home devices whose services it may use. Remote parties
send requests as point-to-point extension messages in the namespace
``urn:IGRS:relay:gateway`` (project choice); JSON bodies (specs/relay.md, "Remote access
to a home"):

    request  {"op": "list_devices" | "describe" | "invoke" | "get" | "watch" | "unwatch",
              "req": n, ...}
    answer   {"req": n, ...result}   or   {"req": n, "error": {"code": int, "reason": str}}
    event    {"watch": w, "name": str, "value": typed, "seq": n}  or  {"watch": w, "end": str}
             (namespace ``urn:IGRS:relay:gateway:event``, igrs.relay.home_sessions)

LAN sessions stay open across calls (``SessionCache``); a watch holds its own session and
IGRS subscription and forwards the service's evented attributes to the remote party.

Authorisation: the relay lets only related parties reach the gateway; the gateway checks
again against its own relationship table (owners, and linked devices unless
``owners_only``) before it touches the LAN.

The remote side is :class:`RemoteHome`::

    home = RemoteHome(client, gateway_id)
    await home.devices()                                         # devices and their services
    await home.invoke(tv_id, "urn:IGRS:ServiceType:Volume:1", "SetLevel", level=30)  # -> 30
    await home.get(tv_id, "Volume", "level")                     # -> {"level": 30}
    async with home.watch(tv_id, "Volume", "level") as changes:  # initial value, then changes
        name, value = await changes.next()
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import math
import weakref
from collections.abc import Callable
from enum import IntEnum
from typing import Any, Generic, Self, TypeVar

from igrs.constants import ReturnCode
from igrs.errors import DeviceNotFound, IGRSError, SecurityError
from igrs.relay.client import Message
from igrs.relay.errors import RelayError
from igrs.relay.home_sessions import (
    GATEWAY_EVENTS_NS,
    MAX_WATCHES,
    MAX_WATCHES_PER_PARTY,
    SessionCache,
    Watches,
)
from igrs.relay.ids import Principal
from igrs.relay.transport import Transport
from igrs.wire.bodies.services import STANDARD_OPERATIONS
from igrs.wire.endpoints import parse_endpoint
from igrs.wire.typed_text import decode_value, encode_value

log = logging.getLogger(__name__)

GATEWAY_NS = "urn:IGRS:relay:gateway"
MAX_SEARCH_TIMEOUT = 10.0  # s, cap on a list_devices search
DEFAULT_SEARCH_TIMEOUT = 1.5
LOOKUP_SEARCH = 1.0  # s, search once when a named device is not known yet
DESCRIBE_TIMEOUT = 3.0  # s, per device description in list_devices
LAN_TIMEOUT = 15.0  # s, all LAN work of one request
MAX_INFLIGHT = 16  # requests being worked on at once; more: 503
AUTH_TTL = 2.0  # s, the gateway's copy of its relationships is refreshed at least this often
AUTH_MISS_REFRESH = 0.25  # s, an unknown sender refreshes it at most this often
REMOTE_TIMEOUT = 20.0  # s, the remote side waits this long for an answer
MAX_REQ = 2**53  # request ids are JSON-safe integers


class GatewayCode(IntEnum):
    """Error codes of gateway answers (HTTP-like, as igrs.constants.ReturnCode)."""

    BAD_REQUEST = 400  # malformed request, arguments that do not fit the action
    FORBIDDEN = 403  # sender not related to the gateway (owner / linked device)
    NOT_FOUND = 404  # no such device on the LAN, service, or action
    CONFLICT = 409  # a watch with that id exists
    GONE = 410  # a watch ended (by the device, or the gateway stopped)
    STALE = 408  # request came from offline storage: not executed
    NOT_PAIRED = 412  # the gateway is not paired with that device (pair it locally)
    TOO_LARGE = 413  # the answer does not fit in one relay message
    INTERNAL = 500  # the device's action failed, or a gateway bug
    UNKNOWN_OP = 501
    BUSY = 503  # too many requests in flight at the gateway
    LAN_TIMEOUT = 504  # the home device did not answer in time


_RETURN_CODES = {c.value for c in ReturnCode}


class GatewayError(IGRSError):
    """An error answer of the gateway (or no answer at all: 504), with its code."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason, return_code=ReturnCode(code) if code in _RETURN_CODES else None)
        self.code = int(code)

    def __str__(self) -> str:
        return f"gateway: {self.code} {self.reason}"


# --------------------------------------------------------------------- typed values
# encode_value / decode_value (bytes as {"$bytes": base64}): igrs.wire.typed_text, shared with the CLI.


def service_target(service: str | int) -> str | int:
    """A service id, a type URN, or a short type name (``Volume`` -> its :1 URN)."""
    if isinstance(service, int):
        return service
    text = service.strip()
    if text.isascii() and text.isdigit():
        return int(text)
    return text if text.lower().startswith("urn:") else f"urn:IGRS:ServiceType:{text}:1"


# --------------------------------------------------------------------- the gateway
def _record(r: Any) -> dict[str, Any]:
    return {
        "device_id": str(r.device_id),
        "name": str(r.name),
        "device_type": str(r.device_type),
        "address": str(r.address),
        "location": str(r.location),
    }


def _text(req: dict[str, Any], key: str) -> str:
    v = req.get(key)
    if not isinstance(v, str) or not v or len(v) > 256:
        raise GatewayError(GatewayCode.BAD_REQUEST, f"{key!r} must be a non-empty string")
    return v


def _service_arg(req: dict[str, Any]) -> str | int:
    v = req.get("service")
    if isinstance(v, int) and not isinstance(v, bool):
        return v
    return service_target(_text(req, "service"))


def _error(code: int, reason: str) -> dict[str, Any]:
    return {"error": {"code": int(code), "reason": reason}}


class HomeGateway:
    """``await HomeGateway(client, control_point).serve()`` answers remote requests.

    ``control_point`` is an ``igrs.ControlPoint`` on the home LAN; its keystore holds the
    pairings with the devices remote users may invoke. ``owners_only`` refuses linked
    devices (403); by default every party the relay relates to the gateway may use it.
    """

    def __init__(
        self,
        client: Transport,
        control_point: Any,
        *,
        owners_only: bool = False,
        max_inflight: int = MAX_INFLIGHT,
        lan_timeout: float = LAN_TIMEOUT,
        auth_ttl: float = AUTH_TTL,
    ) -> None:
        self.client = client
        self.cp = control_point
        self.owners_only = owners_only
        self.max_inflight = max_inflight
        self.lan_timeout = lan_timeout
        self.auth_ttl = auth_ttl
        self.served = 0  # answers sent (results and errors)
        self.refused = 0  # requests refused as not authorised
        self._inflight = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._allowed: frozenset[str] = frozenset()
        self._allowed_at = -math.inf
        self._auth_lock = asyncio.Lock()
        self.sessions = SessionCache(control_point)
        self.watches = Watches(client, control_point)
        self._ops = {
            "list_devices": self._op_list,
            "describe": self._op_describe,
            "invoke": self._op_invoke,
            "get": self._op_get,
            "watch": self._op_watch,
            "unwatch": self._op_unwatch,
        }

    async def serve(self) -> None:
        """Answer requests until cancelled. Only the gateway namespace is taken from the
        client (:meth:`Transport.route`); other messages stay for :meth:`receive`."""
        queue = self.client.route(GATEWAY_NS)
        sweeper = asyncio.create_task(self._sweep())
        try:
            while True:
                msg = await queue.get()
                if msg.stored:
                    self.client.ack(msg)
                self._dispatch(msg)
        finally:
            sweeper.cancel()
            for t in list(self._tasks):
                t.cancel()
            await self.watches.close()
            await self.sessions.close()

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(self.sessions.idle / 2)
            await self.sessions.sweep()

    def _dispatch(self, msg: Message) -> None:
        try:
            req = json.loads(msg.body)
            rid = req["req"]
            if not isinstance(rid, int) or isinstance(rid, bool) or not 0 < rid <= MAX_REQ:
                raise ValueError("bad req")
        except (ValueError, TypeError, KeyError):
            log.info("gateway: dropped a malformed request from %s", msg.source)
            return
        if msg.stored:  # a request from offline storage may be hours old: never executed
            self._reply(msg.source, rid, _error(GatewayCode.STALE, "stored request not executed"))
            return
        if self._inflight >= self.max_inflight:
            self._reply(msg.source, rid, _error(GatewayCode.BUSY, "gateway busy"))
            return
        self._inflight += 1
        task = asyncio.create_task(self._answer(msg.source, rid, req))
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self._inflight -= 1

    async def _answer(self, source: Principal, rid: int, req: dict[str, Any]) -> None:
        self._reply(source, rid, await self.handle(source, req))

    async def handle(self, source: Principal, req: dict[str, Any]) -> dict[str, Any]:
        """One request from ``source``: the answer body (without ``req``)."""
        try:
            if not await self.authorised(source):
                self.refused += 1
                raise GatewayError(GatewayCode.FORBIDDEN, "not related to this gateway")
            op = self._ops.get(req.get("op"))  # type: ignore[arg-type]
            if op is None:
                raise GatewayError(GatewayCode.UNKNOWN_OP, f"unknown gateway op {req.get('op')!r}")
            async with asyncio.timeout(self.lan_timeout):
                return await op(source, req)
        except GatewayError as e:
            return _error(e.code, e.reason)
        except SecurityError as e:  # the device refused our pipe: the pairing is gone
            return _error(GatewayCode.NOT_PAIRED, e.reason)
        except DeviceNotFound as e:
            return _error(GatewayCode.NOT_FOUND, e.reason)
        except IGRSError as e:  # RemoteError: the device's own return code, passed on
            return _error(int(e.return_code), e.reason)
        except TimeoutError:
            return _error(GatewayCode.LAN_TIMEOUT, "the home device did not answer in time")
        except OSError as e:  # the LAN path to the device failed
            return _error(GatewayCode.LAN_TIMEOUT, f"{type(e).__name__}: {e}")
        except (ValueError, TypeError) as e:  # e.g. a malformed $bytes value
            return _error(GatewayCode.BAD_REQUEST, f"{type(e).__name__}: {e}")
        except Exception as e:  # a bug: report it, keep serving
            log.exception("gateway request failed")
            return _error(GatewayCode.INTERNAL, f"{type(e).__name__}: {e}")

    def _reply(self, target: Principal, rid: int, answer: dict[str, Any]) -> None:
        self.served += 1
        body = json.dumps({"req": rid, **answer}, separators=(",", ":"))
        if len(body) + len(GATEWAY_NS) + 1 > self.client.max_payload:
            body = json.dumps({"req": rid, **_error(GatewayCode.TOO_LARGE,
                                                   "answer too large for the relay")})
        task = asyncio.create_task(self._send(target, body))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _send(self, target: Principal, body: str) -> None:
        try:
            await self.client.send(target, body, namespace=GATEWAY_NS, wait=False)
        except RelayError as e:
            log.warning("gateway answer to %s failed: %s", target, e)

    # ----------------------------------------------------------------- authorisation
    async def authorised(self, source: Principal) -> bool:
        """Is ``source`` an owner of the gateway (or a linked device, unless owners_only)?
        From the relay's relationship table, refreshed every ``auth_ttl`` seconds and
        when an unknown party asks (at most every AUTH_MISS_REFRESH)."""
        key = str(source)
        loop = asyncio.get_running_loop()
        age = loop.time() - self._allowed_at
        if age > self.auth_ttl or (key not in self._allowed and age > AUTH_MISS_REFRESH):
            async with self._auth_lock:
                if loop.time() - self._allowed_at > min(self.auth_ttl, AUTH_MISS_REFRESH):
                    table = (await self.client.request("relations")).get("relations", {})
                    kinds = ("owned_by",) if self.owners_only else ("owned_by", "linked")
                    self._allowed = frozenset(p for k in kinds for p in table.get(k, []))
                    self._allowed_at = loop.time()
        return key in self._allowed

    # ----------------------------------------------------------------- LAN side
    async def _find(self, req: dict[str, Any]) -> Any:
        """A known device, else one search ending at its first answer (ControlPoint.locate).
        Never an endpoint: a remote party does not point the gateway at LAN addresses."""
        text = _text(req, "device")
        if parse_endpoint(text) is not None:
            raise GatewayError(GatewayCode.BAD_REQUEST, "name a device by its id or name, not an address")
        return await self.cp.locate(text, LOOKUP_SEARCH)

    def _need_pairing(self, record: Any) -> None:
        if self.cp.keystore.peer_key(record.device_id) is None:
            raise GatewayError(GatewayCode.NOT_PAIRED,
                               f"the gateway is not paired with {record.name} ({record.device_id})")

    async def _op_list(self, _source: Principal, req: dict[str, Any]) -> dict[str, Any]:
        timeout = req.get("timeout", DEFAULT_SEARCH_TIMEOUT)
        if not isinstance(timeout, int | float) or isinstance(timeout, bool) or timeout < 0:
            raise GatewayError(GatewayCode.BAD_REQUEST, "'timeout' must be a number >= 0")
        records = await self.cp.search(timeout=min(float(timeout), MAX_SEARCH_TIMEOUT))
        devices = [_record(r) for r in records]
        if req.get("services", True):
            await asyncio.gather(*(self._add_services(r, d) for r, d in zip(records, devices,
                                                                             strict=True)))
        return {"devices": devices}

    async def _add_services(self, record: Any, out: dict[str, Any]) -> None:
        out["paired"] = self.cp.keystore.peer_key(record.device_id) is not None
        try:
            async with asyncio.timeout(DESCRIBE_TIMEOUT):
                desc = await self.cp.describe(record)
        except (IGRSError, OSError, TimeoutError) as e:
            out["services"] = None
            out["error"] = {"code": int(getattr(e, "return_code", GatewayCode.LAN_TIMEOUT)),
                            "reason": getattr(e, "reason", None) or "no description"}
            return
        out["services"] = [{"service_id": s.service_id, "name": s.name,
                            "service_type": s.service_type} for s in desc.services]

    async def _op_describe(self, _source: Principal, req: dict[str, Any]) -> dict[str, Any]:
        record = await self._find(req)
        self._need_pairing(record)
        agent = await self.cp.agent(record)
        return {"service": (await agent.describe_service(_service_arg(req))).to_json()}

    async def _op_invoke(self, _source: Principal, req: dict[str, Any]) -> dict[str, Any]:
        action = _text(req, "action")
        if action in STANDARD_OPERATIONS:
            raise GatewayError(GatewayCode.BAD_REQUEST,
                               f"{action} is a standard operation, not an action (use op get)")
        args = req.get("args", {})
        if not isinstance(args, dict):
            raise GatewayError(GatewayCode.BAD_REQUEST, "'args' must be an object")
        if "action" in args:
            raise GatewayError(GatewayCode.BAD_REQUEST, "an argument cannot be named 'action'")
        kwargs = {str(k): decode_value(v) for k, v in args.items()}
        record = await self._find(req)
        self._need_pairing(record)
        result = await self.sessions.call(record, _service_arg(req), lambda svc: svc.call(action, **kwargs))
        return {"result": encode_value(result)}

    async def _op_get(self, _source: Principal, req: dict[str, Any]) -> dict[str, Any]:
        names = req.get("names", [])
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise GatewayError(GatewayCode.BAD_REQUEST, "'names' must be a list of strings")
        record = await self._find(req)
        self._need_pairing(record)
        values = await self.sessions.call(record, _service_arg(req), lambda svc: svc.get(*names))
        if len(names) == 1:
            values = {names[0]: values}
        return {"values": encode_value(values)}

    async def _op_watch(self, source: Principal, req: dict[str, Any]) -> dict[str, Any]:
        wid, names = req.get("watch"), req.get("names", [])
        if not isinstance(wid, int) or isinstance(wid, bool) or not 0 < wid <= MAX_REQ:
            raise GatewayError(GatewayCode.BAD_REQUEST, "'watch' must be a positive integer")
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise GatewayError(GatewayCode.BAD_REQUEST, "'names' must be a list of strings")
        if self.watches.count(source) >= MAX_WATCHES_PER_PARTY or self.watches.count() >= MAX_WATCHES:
            raise GatewayError(GatewayCode.BUSY, "too many watches")
        record = await self._find(req)
        self._need_pairing(record)
        try:
            await self.watches.start(source, wid, record, _service_arg(req), names)
        except ValueError as e:
            raise GatewayError(GatewayCode.CONFLICT, str(e)) from None
        return {"watch": wid}

    async def _op_unwatch(self, source: Principal, req: dict[str, Any]) -> dict[str, Any]:
        wid = req.get("watch")
        if not isinstance(wid, int) or not await self.watches.stop(source, wid):
            raise GatewayError(GatewayCode.NOT_FOUND, f"no watch {wid!r}")
        return {"watch": wid}


# --------------------------------------------------------------------- the remote side
_req_ids = itertools.count(1)
W = TypeVar("W")


class _KeyedRouter(Generic[W]):
    """Reads one routed queue while anyone waits on it, and hands each JSON message to the
    waiter its (source, ``field``) names; messages nobody waits for are dropped."""

    def __init__(self, client: Transport, namespace: str, field: str,
                 deliver: Callable[[W, dict[str, Any]], None]) -> None:
        self.client = client
        self.queue = client.route(namespace)
        self.field = field
        self.deliver = deliver
        self.waiting: dict[tuple[str, int], W] = {}
        self.pump: asyncio.Task[None] | None = None

    def add(self, key: tuple[str, int], waiter: W) -> W:
        self.waiting[key] = waiter
        if self.pump is None or self.pump.done():
            self.pump = asyncio.create_task(self._run())
        return waiter

    def remove(self, key: tuple[str, int]) -> None:
        self.waiting.pop(key, None)
        if not self.waiting and self.pump is not None:
            self.pump.cancel()
            self.pump = None

    async def _run(self) -> None:
        while True:
            msg = await self.queue.get()
            if msg.stored:
                self.client.ack(msg)
            try:
                body = json.loads(msg.body)
                waiter = self.waiting.get((str(msg.source), body[self.field]))
            except (ValueError, TypeError, KeyError):
                continue
            if waiter is not None:
                self.deliver(waiter, body)


def _resolve(fut: asyncio.Future[dict[str, Any]], reply: dict[str, Any]) -> None:
    if not fut.done():
        fut.set_result(reply)


class _Replies:
    """Routes gateway answers (and watch events) arriving on one client to the calls (and
    watches) waiting for them."""

    def __init__(self, client: Transport) -> None:
        self.answers: _KeyedRouter[asyncio.Future[dict[str, Any]]] = _KeyedRouter(
            client, GATEWAY_NS, "req", _resolve)
        self.events: _KeyedRouter[asyncio.Queue[dict[str, Any]]] = _KeyedRouter(
            client, GATEWAY_EVENTS_NS, "watch", asyncio.Queue.put_nowait)

    def expect(self, key: tuple[str, int]) -> asyncio.Future[dict[str, Any]]:
        return self.answers.add(key, asyncio.get_running_loop().create_future())

    def forget(self, key: tuple[str, int]) -> None:
        self.answers.remove(key)

    def watch(self, key: tuple[str, int]) -> asyncio.Queue[dict[str, Any]]:
        return self.events.add(key, asyncio.Queue())

    def unwatch(self, key: tuple[str, int]) -> None:
        self.events.remove(key)


_replies: weakref.WeakKeyDictionary[Transport, _Replies] = weakref.WeakKeyDictionary()


class RemoteHome:
    """A home, reached from anywhere through its gateway (an RA device related to us).

    Errors: :class:`GatewayError` with the gateway's code (or 504 when it does not answer
    within ``timeout``); RelayError from the relay itself (403 not related, 410 gateway
    offline). One client should not also serve as a gateway (both read the namespace).
    """

    def __init__(self, client: Transport, gateway: Principal | str, *,
                 timeout: float = REMOTE_TIMEOUT) -> None:
        self.client = client
        self.gateway = Principal.parse(gateway) if isinstance(gateway, str) else gateway
        self.timeout = timeout

    async def call(self, op: str, args: dict[str, Any] | None = None, *,
                   timeout: float | None = None) -> dict[str, Any]:
        """Send one request ``{"op": op, **args}``; the answer (GatewayError for an error
        answer). ``timeout``: seconds to wait for it (default: the instance's)."""
        rid = next(_req_ids)
        replies = _replies.get(self.client)
        if replies is None:
            replies = _replies[self.client] = _Replies(self.client)
        key = (str(self.gateway), rid)
        fut = replies.expect(key)
        wait = self.timeout if timeout is None else timeout
        try:
            await self.client.send(self.gateway, json.dumps({"op": op, "req": rid, **(args or {})}),
                                   namespace=GATEWAY_NS)
            try:
                reply = await asyncio.wait_for(fut, wait)
            except TimeoutError:
                raise GatewayError(GatewayCode.LAN_TIMEOUT,
                                   f"no answer from the gateway within {wait:g} s") from None
        finally:
            replies.forget(key)
        err = reply.get("error")
        if err is not None:
            if isinstance(err, dict):
                raise GatewayError(int(err.get("code", 500)), str(err.get("reason", "")))
            raise GatewayError(GatewayCode.INTERNAL, str(err))
        return reply

    def watch(self, device: str, service: str | int, *names: str) -> Watch:
        """``async with home.watch(tv, "Volume", "level") as changes:`` then
        ``name, value = await changes.next()`` (or ``async for``): the current values first,
        then every change, until the context ends (the gateway then unsubscribes)."""
        return Watch(self, {"device": str(device), "service": service_target(service),
                            "names": list(names)})

    async def devices(self, *, search_timeout: float = DEFAULT_SEARCH_TIMEOUT,
                      services: bool = True) -> list[dict[str, Any]]:
        """The home LAN's devices (with their services from their descriptions)."""
        reply = await self.call("list_devices", {"timeout": search_timeout, "services": services},
                                timeout=self.timeout + search_timeout)
        return list(reply["devices"])

    async def describe(self, device: str, service: str | int) -> dict[str, Any]:
        """Actions and attributes of one service (the gateway must be paired with it)."""
        reply = await self.call("describe", {"device": str(device),
                                             "service": service_target(service)})
        return dict(reply["service"])

    async def invoke(self, device: str, service: str | int, action: str, /, **args: Any) -> Any:
        """Invoke ``action`` with typed keyword arguments; its typed result (or None)."""
        reply = await self.call("invoke", {"device": str(device), "action": action,
                                           "service": service_target(service),
                                           "args": encode_value(args)})
        return decode_value(reply.get("result"))

    async def get(self, device: str, service: str | int, *names: str) -> dict[str, Any]:
        """Attribute values (findServiceAttribute): these names, or all."""
        reply = await self.call("get", {"device": str(device), "names": list(names),
                                        "service": service_target(service)})
        return dict(decode_value(reply["values"]))


class Watch:
    """One remote watch of a home service's evented attributes (``RemoteHome.watch``)."""

    def __init__(self, home: RemoteHome, args: dict[str, Any]) -> None:
        self.home = home
        self.args = args
        self.id = next(_req_ids)
        self._key = (str(home.gateway), self.id)
        self._queue: asyncio.Queue[dict[str, Any]] | None = None

    async def __aenter__(self) -> Self:
        replies = _replies.get(self.home.client)
        if replies is None:
            replies = _replies[self.home.client] = _Replies(self.home.client)
        self._queue = replies.watch(self._key)  # before the request: no event is missed
        try:
            await self.home.call("watch", {"watch": self.id, **self.args})
        except BaseException:
            replies.unwatch(self._key)
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        replies = _replies.get(self.home.client)
        if replies is not None:
            replies.unwatch(self._key)
        with contextlib.suppress(GatewayError, RelayError):
            await self.home.call("unwatch", {"watch": self.id}, timeout=5.0)

    async def next(self, timeout: float | None = None) -> tuple[str, Any]:
        """The next (attribute name, typed value); GatewayError 410 when the watch ended."""
        assert self._queue is not None, "use: async with home.watch(...) as changes"
        event = await asyncio.wait_for(self._queue.get(), timeout)
        if "end" in event:
            raise GatewayError(GatewayCode.GONE, f"watch ended: {event['end']}")
        return str(event["name"]), decode_value(event["value"])

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> tuple[str, Any]:
        try:
            return await self.next()
        except GatewayError as e:
            if e.code == GatewayCode.GONE:
                raise StopAsyncIteration from None
            raise


async def list_home_devices(
    client: Transport, gateway: Principal | str, *, search_timeout: float = 1.5,
    timeout: float = REMOTE_TIMEOUT, services: bool = True,
) -> list[dict[str, Any]]:
    """From anywhere: ask a home gateway (through the relay) which devices its LAN has."""
    return await RemoteHome(client, gateway, timeout=timeout).devices(
        search_timeout=search_timeout, services=services)


__all__ = ["GATEWAY_EVENTS_NS", "GATEWAY_NS", "GatewayCode", "GatewayError", "HomeGateway", "RemoteHome",
           "Watch", "decode_value", "encode_value", "list_home_devices", "service_target"]
