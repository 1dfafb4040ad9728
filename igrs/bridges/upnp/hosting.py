"""UPnP root devices built on async-upnp-client's server classes, served under ``/upnp/`` on
an igrs Device's own HTTP port (specs/upnp-bridge.md §3, §4).

async-upnp-client's ``UpnpServer`` would open a second HTTP server (without the device
server's connection caps and timers) and bind SSDP to ``*:1900``; here its device/service
classes, description serializer and SOAP/GENA handlers are used as they are, mounted on the
device's port, with: requests only from the device's networks, ``X_DLNADOC`` and icons in the
description, SOAP faults for malformed calls, GENA subscriptions (on the library's subscriber
records) capped per source address and in total, callback URLs checked by the fetch policy,
granted TIMEOUT clamped, and event delivery bounded in time.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import time
import xml.etree.ElementTree as ET
from collections.abc import Awaitable, Callable
from datetime import datetime
from functools import partial
from importlib import resources
from wsgiref.handlers import format_date_time

from aiohttp import web
from async_upnp_client.aiohttp import AiohttpRequester
from async_upnp_client.const import DeviceIcon, HttpRequest
from async_upnp_client.exceptions import UpnpActionError
from async_upnp_client.server import (
    EventSubscriber,
    UpnpEventableStateVariable,
    UpnpServerDevice,
    UpnpServerService,
    UpnpXmlSerializer,
    _create_error_action_response,
    action_handler,
)

from igrs.bridges.upnp import errors
from igrs.bridges.upnp.constants import (
    DLNA_DOC_NS,
    MAX_SOAP_BODY,
    MAX_SUBSCRIPTIONS,
    MAX_SUBSCRIPTIONS_PER_PEER,
    NOTIFY_TIMEOUT,
    SSDP_SERVER,
    SUBSCRIPTION_TIMEOUT_MAX,
    SUBSCRIPTION_TIMEOUT_MIN,
    UPNP_PREFIX,
)
from igrs.profiles.av.fetch_policy import FetchPolicy, FetchRefused

log = logging.getLogger(__name__)

Handler = Callable[[web.BaseRequest], Awaitable[web.StreamResponse]]

# The address of the control point whose SOAP request an exposed action is running for.
request_origin: contextvars.ContextVar[str | None] = contextvars.ContextVar("upnp_request_origin", default=None)

ICON_FILES = (("icon-120.png", "image/png", 120), ("icon-48.png", "image/png", 48),
              ("icon-120.jpg", "image/jpeg", 120), ("icon-48.jpg", "image/jpeg", 48))


def icons() -> list[DeviceIcon]:
    return [DeviceIcon(mime, size, size, 24, f"{UPNP_PREFIX}icons/{name}") for name, mime, size in ICON_FILES]


def _icon_bytes(name: str) -> bytes:
    return resources.files("igrs.bridges.upnp").joinpath("icons", name).read_bytes()


class BridgeService(UpnpServerService):
    """An exposed UPnP service: GENA events through async-upnp-client's subscriber records,
    the initial event from :meth:`event_properties` (AVTransport/RenderingControl send their
    full state there), every delivery bounded by NOTIFY_TIMEOUT."""

    _notifier = AiohttpRequester(timeout=int(NOTIFY_TIMEOUT))

    def event_properties(self, initial: bool) -> dict[str, str]:
        """The evented properties of one event (``initial``: the first one of a subscriber)."""
        return {v.name: v.upnp_value for v in self.state_variables.values()
                if isinstance(v, UpnpEventableStateVariable)}

    def subscribers(self) -> list[EventSubscriber]:
        now = datetime.now()
        self._subscribers = [s for s in self._subscribers if now < s.expiration]
        return list(self._subscribers)

    async def async_send_events(self, subscriber: EventSubscriber | None = None) -> None:
        targets = [subscriber] if subscriber is not None else self.subscribers()
        if not targets:
            return
        root = ET.Element("e:propertyset", {"xmlns:e": "urn:schemas-upnp-org:event-1-0"})
        for name, value in self.event_properties(subscriber is not None).items():
            ET.SubElement(ET.SubElement(root, "e:property"), name).text = value
        body = ET.tostring(root, encoding="utf-8", xml_declaration=True).decode()
        results = await asyncio.gather(*(self._deliver(s, body) for s in targets), return_exceptions=True)
        for sub, result in zip(targets, results, strict=True):
            if isinstance(result, BaseException):
                log.debug("event to %s failed: %r", sub.url, result)

    async def _deliver(self, sub: EventSubscriber, body: str) -> None:
        headers = {"CONTENT-TYPE": 'text/xml; charset="utf-8"', "NT": "upnp:event", "NTS": "upnp:propchange",
                   "SID": sub.uuid, "SEQ": str(sub.get_next_seq())}
        await self._notifier.async_http_request(
            HttpRequest("NOTIFY", sub.url, headers=headers, body=body, timeout=NOTIFY_TIMEOUT))


def description(device: UpnpServerDevice, dlnadoc: str) -> bytes:
    """The device description: async-upnp-client's, plus ``dlna:X_DLNADOC``, without empty
    optional elements."""
    root = UpnpXmlSerializer.to_xml(device)
    dev = root.find("device")
    assert dev is not None
    doc = ET.Element("dlna:X_DLNADOC", {"xmlns:dlna": DLNA_DOC_NS})
    doc.text = dlnadoc
    dev.insert(1, doc)
    for el in list(dev):
        if not len(el) and not (el.text or "").strip() and el.tag in ("UPC", "deviceList", "presentationURL"):
            dev.remove(el)
    return ET.tostring(root, encoding="utf-8", xml_declaration=True)


class UpnpHost:
    """The UPnP devices of one igrs Device, mounted at ``/upnp/`` on its HTTP port."""

    def __init__(self, policy: FetchPolicy) -> None:
        self.policy = policy
        self.routes: dict[tuple[str, str], Handler] = {}
        self._owners: dict[str, str] = {}  # SID -> address of the subscriber
        self._tasks: set[asyncio.Task[None]] = set()
        self.closed = False
        for name, mime, _ in ICON_FILES:
            data = _icon_bytes(name)
            self.routes[("GET", f"{UPNP_PREFIX}icons/{name}")] = partial(_static, data, mime)

    async def aclose(self) -> None:
        self.closed = True
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    def add(self, device: UpnpServerDevice, dlnadoc: str) -> None:
        body = description(device, dlnadoc)
        self.routes[("GET", device.device_url)] = partial(_static, body, "text/xml")
        for service in device.all_services:
            assert isinstance(service, BridgeService)
            info = service.SERVICE_DEFINITION
            scpd = ET.tostring(UpnpXmlSerializer.to_xml(service), encoding="utf-8", xml_declaration=True)
            self.routes[("GET", info.scpd_url)] = partial(_static, scpd, "text/xml")
            self.routes[("POST", info.control_url)] = partial(self._control, service)
            self.routes[("SUBSCRIBE", info.event_sub_url)] = partial(self._subscribe, service)
            self.routes[("UNSUBSCRIBE", info.event_sub_url)] = partial(self._unsubscribe, service)

    async def handle(self, request: web.BaseRequest) -> web.StreamResponse:
        if self.closed:
            return web.Response(status=404)
        try:
            self.policy.origin_lan(request.remote or "")
        except FetchRefused:
            return web.Response(status=403, text="not from this device's networks\n")
        method = "GET" if request.method == "HEAD" else request.method
        handler = self.routes.get((method, request.path))
        if handler is None:
            known = any(path == request.path for _, path in self.routes)
            return web.Response(status=405 if known else 404)
        return await handler(request)

    async def _control(self, service: BridgeService, request: web.BaseRequest) -> web.StreamResponse:
        if (request.content_length or 0) > MAX_SOAP_BODY:
            return web.Response(status=413)
        token = request_origin.set(request.remote)
        try:
            # shielded: a control point closing the connection does not cut an action halfway
            call = asyncio.ensure_future(action_handler(service, request))  # type: ignore[arg-type]
            return await asyncio.shield(call)
        except web.HTTPBadRequest as exc:
            code = errors.INVALID_ACTION if exc.reason == "InvalidAction" else errors.INVALID_ARGS
            return _create_error_action_response(UpnpActionError(error_code=code))
        except (TypeError, ValueError) as exc:  # a missing or malformed argument
            log.debug("bad UPnP arguments: %r", exc)
            return _create_error_action_response(UpnpActionError(error_code=errors.INVALID_ARGS))
        finally:
            request_origin.reset(token)

    async def _subscribe(self, service: BridgeService, request: web.BaseRequest) -> web.StreamResponse:
        """GENA SUBSCRIBE / renewal (UDA 1.0 §4.1) on async-upnp-client's subscriber records —
        its own handler answers ``TIMEOUT: 300`` without the ``Second-`` prefix and SIDs
        without ``uuid:``. New subscriptions: within the caps, callback checked by the fetch
        policy (the device sends events to it), the initial event right after the answer."""
        remote, headers = request.remote or "", request.headers
        timeout = _granted(headers.get("TIMEOUT", ""))
        sid = headers.get("SID")
        if sid is not None:
            if "CALLBACK" in headers or "NT" in headers:
                return web.Response(status=400, text="SID with CALLBACK or NT\n")
            renewed = next((s for s in service.subscribers() if s.uuid == sid), None)
            if renewed is None:
                return web.Response(status=412, text="unknown or expired SID\n")
            renewed.timeout = timeout
            return web.Response(headers=_subscription_headers(renewed))
        if headers.get("NT") != "upnp:event":
            return web.Response(status=412, text="NT: upnp:event expected\n")
        callback = headers.get("CALLBACK", "").strip()
        url = callback[1:].partition(">")[0] if callback.startswith("<") else ""
        if not url.lower().startswith("http://"):
            return web.Response(status=412, text="CALLBACK: <http://...> expected\n")
        try:
            await self.policy.check_url(url, remote)
        except FetchRefused as exc:
            return web.Response(status=412, text=f"CALLBACK refused: {exc.reason}\n")
        live = {s.uuid for s in service.subscribers()}
        for gone in [k for k in self._owners if k not in live]:
            del self._owners[gone]
        mine = sum(1 for k in live if self._owners.get(k) == remote)
        if len(live) >= MAX_SUBSCRIPTIONS or mine >= MAX_SUBSCRIPTIONS_PER_PEER:
            return web.Response(status=503, headers={"Retry-After": "60"}, text="too many subscriptions\n")
        sub = Subscription(url, timeout)
        self._owners[sub.uuid] = remote
        # The initial event (SEQ 0) after the answer, then the subscriber joins the change
        # events; in a task of its own: the client may close the connection at once.
        self._start_events(service, sub)
        return web.Response(headers=_subscription_headers(sub))

    def _start_events(self, service: BridgeService, sub: EventSubscriber) -> None:
        async def initial() -> None:
            await service.async_send_events(sub)
            service.add_subscriber(sub)

        task = asyncio.ensure_future(initial())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _unsubscribe(self, service: BridgeService, request: web.BaseRequest) -> web.StreamResponse:
        if "CALLBACK" in request.headers or "NT" in request.headers:
            return web.Response(status=400, text="SID with CALLBACK or NT\n")
        sid = request.headers.get("SID", "")
        if not service.del_subscriber(sid):
            return web.Response(status=412, text="unknown or expired SID\n")
        self._owners.pop(sid, None)
        return web.Response()


class Subscription(EventSubscriber):
    """async-upnp-client's subscriber record with a UDA-form SID (``uuid:...``)."""

    @property
    def uuid(self) -> str:
        return f"uuid:{super().uuid}"


def _granted(asked: str) -> int:
    """The TIMEOUT granted for ``Second-N`` / ``Second-infinite`` / nothing."""
    value = asked.strip().lower().removeprefix("second-")
    seconds = int(value) if value.isdigit() and len(value) < 10 else SUBSCRIPTION_TIMEOUT_MAX
    return max(SUBSCRIPTION_TIMEOUT_MIN, min(seconds, SUBSCRIPTION_TIMEOUT_MAX))


def _subscription_headers(sub: EventSubscriber) -> dict[str, str]:
    return {"SID": sub.uuid, "TIMEOUT": f"Second-{sub.timeout}", "SERVER": SSDP_SERVER,
            "DATE": format_date_time(time.time())}


async def _static(body: bytes, mime: str, request: web.BaseRequest) -> web.StreamResponse:
    return web.Response(body=body, content_type=mime, charset="utf-8" if mime == "text/xml" else None)
