"""Remote access to a home: a home device acting as gateway for remote users.

The gateway is an RA device bound to its owner. It keeps its outbound relay connection and
answers requests in the namespace ``urn:IGRS:relay:gateway`` (project choice) by looking at
the home LAN with an IGRS 1.0 ``ControlPoint``. Today it answers ``list_devices``; relaying
service invocations waits for the core protocol's session/invocation layer.

Request  (MESSAGE body, JSON): {"op": "list_devices", "req": <int>, "timeout": <s>}
Response (MESSAGE body, JSON): {"req": <int>, "devices": [{device_id, name, device_type,
                                address, location}]}  or  {"req": <int>, "error": <text>}
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from igrs.relay.client import Message, RelayClient
from igrs.relay.errors import RelayError
from igrs.relay.ids import Principal

log = logging.getLogger(__name__)

GATEWAY_NS = "urn:IGRS:relay:gateway"
MAX_SEARCH_TIMEOUT = 10.0
_req_ids = itertools.count(1)


class Searcher(Protocol):
    async def search(self, timeout: float = ...) -> Any: ...


def _record(r: Any) -> dict[str, str]:
    return {
        "device_id": str(r.device_id),
        "name": str(r.name),
        "device_type": str(r.device_type),
        "address": str(r.address),
        "location": str(r.location),
    }


class HomeGateway:
    """``await HomeGateway(client, control_point).serve()`` answers remote requests."""

    def __init__(
        self,
        client: RelayClient,
        control_point: Searcher,
        other: Callable[[Message], Awaitable[None]] | None = None,
    ) -> None:
        self.client = client
        self.cp = control_point
        self.other = other  # messages in other namespaces go here (else dropped)
        self.served = 0
        self._tasks: set[asyncio.Task[None]] = set()

    async def serve(self) -> None:
        async for msg in self.client.messages():
            if msg.namespace != GATEWAY_NS:
                if self.other is not None:
                    await self.other(msg)
                continue
            task = asyncio.create_task(self._answer(msg))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _answer(self, msg: Message) -> None:
        reply: dict[str, Any]
        try:
            req = json.loads(msg.body)
            rid = int(req.get("req", 0))
        except (ValueError, TypeError, AttributeError):
            return
        try:
            if req.get("op") != "list_devices":
                raise ValueError(f"unknown gateway op {req.get('op')!r}")
            timeout = min(float(req.get("timeout", 1.5)), MAX_SEARCH_TIMEOUT)
            records = await self.cp.search(timeout=timeout)
            reply = {"req": rid, "devices": [_record(r) for r in records]}
        except Exception as e:  # report to the remote user, keep serving
            reply = {"req": rid, "error": f"{type(e).__name__}: {e}"}
        self.served += 1
        try:
            await self.client.send(msg.source, json.dumps(reply), namespace=GATEWAY_NS,
                                   wait=False)
        except RelayError as e:
            log.warning("gateway reply to %s failed: %s", msg.source, e)


async def list_home_devices(
    client: RelayClient, gateway: Principal | str, *, search_timeout: float = 1.5,
    timeout: float = 15.0,
) -> list[dict[str, str]]:
    """From anywhere: ask a home gateway (through the relay) which devices its LAN has."""
    rid = next(_req_ids)
    body = json.dumps({"op": "list_devices", "req": rid, "timeout": search_timeout})
    await client.send(gateway, body, namespace=GATEWAY_NS)
    aside: list[Message] = []
    try:
        async with asyncio.timeout(timeout):
            while True:
                msg = await client._messages.get()
                if msg.namespace == GATEWAY_NS:
                    reply = json.loads(msg.body)
                    if reply.get("req") == rid:
                        if "error" in reply:
                            raise RuntimeError(f"gateway: {reply['error']}")
                        return list(reply["devices"])
                aside.append(msg)
    finally:
        for m in aside:  # not ours: leave them for the application
            client._messages.put_nowait(m)
