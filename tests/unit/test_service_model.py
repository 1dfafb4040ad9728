"""Service / @action / attribute, the generated WSDL, and ServiceHost + ServiceAgent wired
back to back in-process through real bytes (messages.encode -> decode in both directions)."""

from __future__ import annotations

import asyncio
import random
import uuid
from typing import Any

import pytest
from lxml import etree

from igrs.constants import ReturnCode
from igrs.core.events import SubscriptionTable, check_callback
from igrs.core.security.session_keys import SessionKeySchedule, key_check_value
from igrs.core.sessions import ClientSequencer, SessionTable
from igrs.errors import IGRSError, ProtocolError, RemoteError
from igrs.node.service import Service, action, attribute
from igrs.node.service_agent import ServiceAgent, SubscriptionEnded
from igrs.node.service_host import PeerInfo, ServiceHost
from igrs.wire import messages
from igrs.wire.bodies import events as ev
from igrs.wire.bodies import services as sv
from igrs.wire.bodies import sessions as ss
from igrs.wire.httpu import Headers
from igrs.wire.ids import DeviceId
from igrs.wire.messages import Frame, SoapMessage

DEV = DeviceId(uuid.UUID("6f1c2a9e-3b7d-4e25-9a41-0c8d5e7f1b22"))
CP = DeviceId(uuid.UUID("0b9e4d33-71a2-4c6f-8e15-2f4a6c8d9e10"))
CP_ADDR = "192.168.1.30"
LOCATION = f"http://{CP_ADDR}:3880/IGRS"
LIGHT = "urn:IGRS:ServiceType:Light:1"


class Light(Service):
    service_type = LIGHT
    name = "Living-room light"
    level = attribute(int, 0, notifiable=True)
    color = attribute(str, "white", notifiable=True)
    model = attribute(str, "L-1", mutability="static")
    history = attribute(list[int], [])

    @action
    async def SetLevel(self, level: int, fade: float = 0.0) -> int:
        self.level = max(0, min(100, level))
        return self.level

    @action
    async def Echo(self, value: int, delay: float = 0.0) -> int:
        await asyncio.sleep(delay)
        return value

    @action
    async def Mix(
        self, names: list[str], weights: dict[str, float], raw: bytes, on: bool
    ) -> dict[str, list[float]]:
        return {n: [weights.get(n, 0.0)] for n in names} | {"_raw": [float(len(raw))], "_on": [float(on)]}

    @action
    async def Nothing(self) -> None:
        return None

    @action
    async def Crash(self) -> int:
        raise RuntimeError("secret internal detail /etc/passwd")

    @action
    async def Refuse(self) -> int:
        raise IGRSError("busy right now", return_code=ReturnCode.CONFLICT)

    @action
    async def Bad(self) -> int:
        return "not an int"  # type: ignore[return-value]


class Clock:
    def __init__(self) -> None:
        self.now = 1_900_000_000.0

    def __call__(self) -> float:
        return self.now


class Bed:
    """A host and an agent joined by encode/decode of real bytes."""

    def __init__(
        self,
        *,
        secure: bool = True,
        key_schedule: SessionKeySchedule | None = None,
        address: str = CP_ADDR,
        location: str = LOCATION,
        gate: asyncio.Event | None = None,
        subscriptions: SubscriptionTable | None = None,
    ) -> None:
        self.clock = Clock()
        self.host = ServiceHost(self.send, clock=self.clock, rng=random.Random(1), subscriptions=subscriptions)
        self.light = Light()
        self.sid = self.host.add(self.light, 7)
        self.peer = PeerInfo(CP, address, secure, key_schedule)
        self.agent = ServiceAgent(
            self.request, location=location, device=DEV, clock=self.clock, rng=random.Random(2)
        )
        self.seq = 0
        self.gate = gate
        self.notifications: list[SoapMessage] = []
        self.peer_notices: list[SoapMessage] = []

    @staticmethod
    def wire(message: SoapMessage, source: DeviceId, target: DeviceId, seq: int) -> Frame:
        headers, body = messages.encode(message, source=source, target=target, sequence_id=seq)
        return messages.decode(Headers(headers), body)

    async def request(self, message: SoapMessage) -> Frame | None:
        self.seq += 1
        frame = self.wire(message, CP, DEV, self.seq)
        reply = await self.host.handle(frame, self.peer)
        return None if reply is None else self.wire(reply, DEV, CP, self.seq)

    async def send(self, target: str | DeviceId, message: SoapMessage, subscriber: str | None = None) -> None:
        if isinstance(target, DeviceId):
            self.peer_notices.append(message)
            return
        assert target == LOCATION
        if self.gate is not None:
            await self.gate.wait()
        frame = self.wire(message, DEV, CP, 1)
        self.notifications.append(frame.message)
        self.agent.deliver(frame)


async def settle(rounds: int = 20) -> None:
    for _ in range(rounds):
        await asyncio.sleep(0)


# --- the model and its WSDL ------------------------------------------------------------------
def test_actions_and_attributes_are_collected() -> None:
    assert set(Light.igrs_actions) == {"SetLevel", "Echo", "Mix", "Nothing", "Crash", "Refuse", "Bad"}
    assert set(Light.igrs_attributes) == {"level", "color", "model", "history"}
    desc = Light.describe(7)
    set_level = desc.action("SetLevel")
    assert set_level == sv.ActionDesc(
        "SetLevel", (sv.ParamDesc("level", "int"), sv.ParamDesc("fade", "float", False)), "int"
    )
    assert desc.action("Mix").result == "dict[list[float]]"  # type: ignore[union-attr]
    assert desc.attribute("model") == sv.AttributeDesc("model", "string", "static", False)


def test_wsdl_is_xml_and_parses_back() -> None:
    data = Light.wsdl(7)
    root = etree.fromstring(data)
    assert root.tag == f"{{{sv.WSDL_NS}}}definitions"
    assert sv.ServiceDescription.from_wsdl(root) == Light.describe(7)
    assert b"IGRSportType" in data and b"http://www.igrs.org/igrs/igrspipe" in data
    assert b'notifiable="true"' in data and b'mutability="static"' in data


@pytest.mark.parametrize("bad", ["untyped", "sync", "standard", "varargs", "badtype"])
def test_bad_definitions_are_refused(bad: str) -> None:
    with pytest.raises(TypeError):
        if bad == "untyped":

            class A(Service):
                @action
                async def Do(self, x) -> int:  # type: ignore[no-untyped-def]
                    return 1
        elif bad == "sync":

            class B(Service):
                @action  # type: ignore[arg-type]
                def Do(self) -> int:
                    return 1
        elif bad == "standard":

            class C(Service):
                @action
                async def subscribe(self) -> None:
                    return None
        elif bad == "varargs":

            class D(Service):
                @action
                async def Do(self, *xs: int) -> None:
                    return None
        else:

            class E(Service):
                @action
                async def Do(self, x: set[int]) -> None:
                    return None


def test_attribute_rules() -> None:
    light = Light()
    with pytest.raises(TypeError):
        light.level = "high"  # type: ignore[assignment]
    light.model = "L-2"  # static: settable before hosting
    host = ServiceHost()
    host.add(light, 1)
    with pytest.raises(AttributeError):
        light.model = "L-3"
    with pytest.raises(ValueError):
        attribute(int, 0, notifiable=True, mutability="static")
    assert Light().history == [] and Light().history is not Light().history


# --- sessions and invocation ------------------------------------------------------------------
async def test_search_describe_session_invoke() -> None:
    bed = Bed()
    (info,) = await bed.agent.services()
    assert info == sv.ServiceInfo(7, LIGHT, "Living-room light")
    assert await bed.agent.services("urn:IGRS:ServiceType:Other:1") == []
    assert (await bed.agent.describe(7)) == Light.describe(7)
    async with bed.agent.session(LIGHT) as light:
        assert await light.SetLevel(level=140) == 100
        assert bed.light.level == 100
        assert await light.Echo(value=-5) == -5
        mixed = await light.Mix(names=["a", "b"], weights={"a": 2}, raw=b"\x00\x01", on=True)
        assert mixed == {"a": [2.0], "b": [0.0], "_raw": [2.0], "_on": [1.0]}
        assert await light.Nothing() is None
        assert await light.get("level") == 100
        assert await light.get("level", "model", "ServiceId") == {"level": 100, "model": "L-1", "ServiceId": 7}
        assert (await light.get())["history"] == []
        assert len(bed.host.sessions) == 1
    assert len(bed.host.sessions) == 0  # DestroySessionNotify on exit



async def test_an_invocation_reply_body_is_built_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """Checked encodable by the host and then sent: the body written once (by the canonical
    writer, igrs.wire.bodies.canonical, or as a tree), not twice."""
    from igrs.wire.bodies import canonical

    built = []
    body = ss.InvokeServiceResponse.body
    write = canonical.WRITERS[ss.InvokeServiceResponse]

    def counted(self: ss.InvokeServiceResponse) -> Any:
        built.append(self.results)
        return body(self)

    def counted_write(message: Any) -> bytes | None:
        built.append(message.results)
        return write(message)

    monkeypatch.setattr(ss.InvokeServiceResponse, "body", counted)
    monkeypatch.setitem(canonical.WRITERS, ss.InvokeServiceResponse, counted_write)
    bed = Bed()
    async with bed.agent.session(LIGHT) as light:
        assert await light.Echo(value=3) == 3  # host.handle, then the reply encoded for the wire
    assert built == [(("result", 3),)]


ERRORS = [
    ("Unknown", {}, ReturnCode.NOT_FOUND, "no action"),
    ("SetLevel", {}, ReturnCode.BAD_MESSAGE, "missing argument 'level'"),
    ("SetLevel", {"level": "ten"}, ReturnCode.BAD_MESSAGE, "expected int, got string"),
    ("SetLevel", {"level": True}, ReturnCode.BAD_MESSAGE, "expected int, got bool"),
    ("SetLevel", {"level": 1, "speed": 2}, ReturnCode.BAD_MESSAGE, "unexpected argument 'speed'"),
    ("Mix", {"names": [1], "weights": {}, "raw": b"", "on": True}, ReturnCode.BAD_MESSAGE, "Mix.names[0]"),
    ("Crash", {}, ReturnCode.INTERNAL_ERROR, "the action failed"),
    ("Refuse", {}, ReturnCode.CONFLICT, "busy right now"),
    ("Bad", {}, ReturnCode.INTERNAL_ERROR, "Bad result"),
]


@pytest.mark.parametrize(("action_name", "kwargs", "code", "reason"), ERRORS)
async def test_invocation_errors(
    action_name: str, kwargs: dict[str, Any], code: ReturnCode, reason: str
) -> None:
    bed = Bed()
    async with bed.agent.session(LIGHT) as light:
        with pytest.raises(RemoteError) as info:
            await light.call(action_name, **kwargs)
        assert info.value.return_code == code
        assert reason in info.value.reason
        assert "passwd" not in info.value.reason and "Traceback" not in info.value.reason
        assert await light.Echo(value=1) == 1  # the session survives


async def test_session_errors() -> None:
    bed = Bed()
    with pytest.raises(RemoteError) as info:
        await bed.agent.open(99)
    assert info.value.return_code == ReturnCode.NOT_FOUND
    # CreateSession for a missing service id, straight on the wire
    frame = await bed.request(ss.CreateSessionRequest(5, 99, 1))
    assert frame is not None and frame.message.status.return_code == ReturnCode.NOT_FOUND  # type: ignore[attr-defined]
    ok = await bed.request(ss.CreateSessionRequest(5, 7, 2))
    session_id = ok.message.session_id  # type: ignore[union-attr]
    dup = await bed.request(ss.CreateSessionRequest(5, 7, 3))
    assert dup.message.status.return_code == ReturnCode.CONFLICT  # type: ignore[union-attr]
    # unknown session, wrong session id, duplicate SequenceId
    r = await bed.request(ss.InvokeServiceRequest(6, 7, 1, "Echo", (("value", 1),)))
    assert r.message.status.return_code == ReturnCode.NOT_FOUND  # type: ignore[union-attr]
    r = await bed.request(ss.InvokeServiceRequest(5, 7, 1, "Echo", (("value", 1),), session_id + 1))
    assert r.message.status.return_code == ReturnCode.NOT_FOUND  # type: ignore[union-attr]
    r = await bed.request(ss.InvokeServiceRequest(5, 7, 10, "Echo", (("value", 1),)))  # ezbox: no SessionId
    assert r.message.status.ok and r.message.status.acknowledge_id == 10  # type: ignore[union-attr]
    assert r.message.client_id == 5 and r.message.service_id == 7  # type: ignore[union-attr]
    r = await bed.request(ss.InvokeServiceRequest(5, 7, 10, "Echo", (("value", 1),), session_id))
    assert r.message.status.return_code == ReturnCode.CONFLICT  # type: ignore[union-attr]
    # destroy: unknown -> 404, then the real one
    with pytest.raises(IGRSError) as err:
        await bed.request(ss.DestroySessionNotify(5, 7, session_id + 1))
    assert err.value.return_code == ReturnCode.NOT_FOUND
    assert await bed.request(ss.DestroySessionNotify(5, 7, session_id)) is None
    assert len(bed.host.sessions) == 0


async def test_insecure_peer_gets_nothing() -> None:
    """The Device's rule (igrs.core.access, specs/pipes.md §1): search and description too
    need a secure pipe; the device description is the open listing of services."""
    bed = Bed(secure=False)
    for ask in (bed.agent.services(), bed.agent.describe(7), bed.agent.open(LIGHT)):
        with pytest.raises(IGRSError) as info:
            await ask
        assert info.value.return_code == ReturnCode.NOT_AUTHENTICATED


async def test_service_security_id_and_authorize() -> None:
    class Vault(Service):
        service_type = "urn:IGRS:ServiceType:Vault:1"
        security_ids = ("urn:IGRS:ServiceSecurity:owner",)

    bed = Bed()
    bed.host.add(Vault(), 8)
    with pytest.raises(RemoteError) as info:
        await bed.agent.open(8)
    assert info.value.return_code == ReturnCode.FORBIDDEN
    proxy = await bed.agent.open(8, user=ss.UserInfo("me", "urn:IGRS:ServiceSecurity:owner"))
    await proxy.close()
    bed.host.authorize = lambda peer, service, user: user.source_user_id == "root"
    with pytest.raises(RemoteError):
        await bed.agent.open(LIGHT)


async def test_session_keys_with_the_pipe_schedule() -> None:
    secret = bytes(range(32))
    bed = Bed(key_schedule=SessionKeySchedule(secret, initiator=False))
    mine = SessionKeySchedule(secret, initiator=True)
    proxy = await bed.agent.open(LIGHT)
    nonce = mine.new_nonce()
    r = await bed.request(ss.ApplySessionKeyRequest(proxy.client_id, 7, proxy.session_id, 77, nonce))
    reply = r.message  # type: ignore[union-attr]
    key = mine.derive(client_id=proxy.client_id, service_id=7, nonce=nonce)
    assert reply.status.ok and reply.key_check == key_check_value(key)  # type: ignore[attr-defined]
    session = bed.host.sessions.get(proxy.session_id)
    assert session is not None and session.key == key
    group_key = b"\x42" * 32
    wrapped = mine.wrap(group_key, client_id=proxy.client_id, service_id=7, context=nonce)
    r = await bed.request(
        ss.TransferSessionKeyRequest(proxy.client_id, 7, proxy.session_id, 78, wrapped, nonce)
    )
    assert r.message.status.ok and session.key == group_key  # type: ignore[union-attr]
    r = await bed.request(ss.TransferSessionKeyRequest(proxy.client_id, 7, proxy.session_id, 79, wrapped, b"x"))
    assert not r.message.status.ok  # type: ignore[union-attr]
    no_keys = Bed()
    p2 = await no_keys.agent.open(LIGHT)
    r = await no_keys.request(ss.ApplySessionKeyRequest(p2.client_id, 7, p2.session_id, 5, nonce))
    assert r.message.status.return_code == ReturnCode.PRECONDITION_FAILED  # type: ignore[union-attr]


async def test_500_concurrent_invocations_are_not_mis_correlated() -> None:
    bed = Bed()
    rng = random.Random(5)
    async with bed.agent.session(LIGHT) as light:
        values = [rng.randint(-(2**40), 2**40) for _ in range(500)]
        results = await asyncio.gather(*(light.Echo(value=v, delay=rng.random() / 100) for v in values))
        assert results == values
        assert light._seq.outstanding == 0


async def test_a_reply_for_another_request_is_detected() -> None:
    bed = Bed()
    proxy = await bed.agent.open(LIGHT)
    real = bed.agent.request

    async def wrong_ack(message: SoapMessage) -> Frame | None:
        frame = await real(message)
        assert frame is not None
        reply = frame.message
        assert isinstance(reply, ss.InvokeServiceResponse)
        fake = ss.InvokeServiceResponse(
            messages.Status(reply.status.acknowledge_id + 1), reply.service_id, reply.client_id, reply.results
        )
        return Frame(frame.routing, fake)

    bed.agent.request = wrong_ack
    with pytest.raises(ProtocolError):
        await proxy.Echo(value=1)


# --- attribute events --------------------------------------------------------------------------
async def test_subscribe_notify_renew_unsubscribe() -> None:
    bed = Bed()
    async with bed.agent.session(LIGHT) as light:
        async with light.subscribe("level", duration=600) as changes:
            first = await changes.__anext__()
            assert (first.name, first.value, first.sequence) == ("level", 0, 0)
            bed.light.level = 5
            bed.light.level = 5  # no change: no event
            bed.light.color = "red"  # not subscribed
            bed.light.level = 6
            got = [await changes.__anext__() for _ in range(2)]
            assert [(c.name, c.value) for c in got] == [("level", 5), ("level", 6)]
            sid = changes.subscription_id
            assert sid is not None
            sub = bed.host.subscriptions.get(sid)
            assert sub is not None and sub.expires_at == pytest.approx(bed.clock.now + 600, abs=1)
            bed.clock.now += 400
            expires = await changes._renew(sid)
            assert expires == pytest.approx(bed.clock.now + 600, abs=1)
        assert bed.host.subscriptions.get(sid) is None  # unsubscribed on exit
        # all notifiable attributes when no name is given
        async with light.subscribe() as everything:
            initial = {(await everything.__anext__()).name for _ in range(2)}
            assert initial == {"level", "color"}


async def test_subscription_errors() -> None:
    bed = Bed()
    async with bed.agent.session(LIGHT) as light:
        for names, code in ((("nope",), ReturnCode.NOT_FOUND), (("model",), ReturnCode.BAD_MESSAGE)):
            with pytest.raises(RemoteError) as info:
                await light.subscribe(*names).start()
            assert info.value.return_code == code
        with pytest.raises(RemoteError) as info:
            await light.get("nope")
        assert info.value.return_code == ReturnCode.NOT_FOUND
        with pytest.raises(RemoteError) as info:
            await light.call("renewSubscription", subscriptionId=12345, location=LOCATION)
        assert info.value.return_code == ReturnCode.NOT_FOUND


@pytest.mark.parametrize(
    ("location", "code"),
    [
        ("http://10.9.9.9:80/steal", ReturnCode.FORBIDDEN),
        ("http://victim.example/x", ReturnCode.FORBIDDEN),
        (f"https://{CP_ADDR}/x", ReturnCode.BAD_MESSAGE),
        (f"http://{CP_ADDR}/" + "a" * 260, ReturnCode.BAD_MESSAGE),
        (f"http://user:pw@{CP_ADDR}/x", ReturnCode.BAD_MESSAGE),
        (f"gopher://{CP_ADDR}/x", ReturnCode.BAD_MESSAGE),
    ],
)
async def test_callstranger_locations_are_refused(location: str, code: ReturnCode) -> None:
    bed = Bed(location=location)
    async with bed.agent.session(LIGHT) as light:
        with pytest.raises(RemoteError) as info:
            await light.subscribe("level").start()
        assert info.value.return_code == code
    assert len(bed.host.subscriptions) == 0


def test_callback_check_accepts_own_address_forms() -> None:
    assert check_callback("http://192.168.1.30:3880/IGRS", "192.168.1.30")
    assert check_callback("http://[fe80::1]:3880/IGRS", "fe80::1%eth0")
    assert check_callback("http://192.168.1.30/IGRS", "::ffff:192.168.1.30")


async def test_expiry_with_fake_time() -> None:
    bed = Bed()
    async with bed.agent.session(LIGHT) as light:
        stream = await light.subscribe("level", duration=60).start()
        sid = stream.subscription_id
        assert sid is not None
        bed.clock.now += 59
        assert bed.host.expire() == []
        bed.clock.now += 2
        (gone,) = bed.host.expire()
        assert gone.subscription_id == sid and len(bed.host.subscriptions) == 0
        with pytest.raises(RemoteError) as info:
            await stream._renew(sid)
        assert info.value.return_code == ReturnCode.PRECONDITION_FAILED
        stream._finish("expired")


async def test_many_events_in_order_batched_none_lost() -> None:
    """10,000 changes from a fast producer, consumed concurrently: all, in order, batched."""
    bed = Bed()
    async with bed.agent.session(LIGHT) as light, light.subscribe("level") as changes:
        assert (await changes.__anext__()).value == 0

        async def consume() -> list[int]:
            return [(await changes.__anext__()).value for _ in range(10_000)]

        consumer = asyncio.create_task(consume())
        for i in range(1, 10_001):
            bed.light.level = i
            if i % 100 == 0:  # a fast producer that still lets the event loop run
                await settle(3)
        seen = await asyncio.wait_for(consumer, 10)
        assert seen == list(range(1, 10_001))
        assert not any(n.coalesced for n in bed.notifications)  # type: ignore[attr-defined]
        assert len(bed.notifications) < 200  # batched, not one message per change
        seqs = [n.sequence for n in bed.notifications]  # type: ignore[attr-defined]
        assert seqs == list(range(len(seqs)))


async def test_slow_subscriber_stays_bounded_then_is_ended() -> None:
    gate = asyncio.Event()
    table = SubscriptionTable(queue_limit=100, grace=30, rng=random.Random(3))
    bed = Bed(gate=gate, subscriptions=table)
    async with bed.agent.session(LIGHT) as light:
        stream = await light.subscribe("level", "color").start()
        sid = stream.subscription_id
        assert sid is not None
        await settle()
        for i in range(50_000):
            bed.light.level = i + 1
            bed.light.color = f"c{i % 7}"
            sub = table.get(sid)
            assert sub is not None and sub.pending <= 100
        sub = table.get(sid)
        assert sub is not None and sub.coalesced is not None and sub.pending == 2  # latest level and color
        gate.set()
        values = [await stream.__anext__() for _ in range(3)]  # initial (2) + the coalesced batch
        assert values[2].coalesced and values[2].name == "level" and values[2].value == 50_000
        # stuck again for longer than the grace: ended with a notice
        gate.clear()
        for i in range(300):
            bed.light.level = i
        bed.clock.now += 31
        bed.host.expire()
        gate.set()
        with pytest.raises(SubscriptionEnded):
            while True:
                await stream.__anext__()
        await settle()
        assert table.get(sid) is None


async def test_failed_deliveries_end_the_subscription() -> None:
    table = SubscriptionTable(max_failures=2, retry_delay=0.01, rng=random.Random(4))
    bed = Bed(subscriptions=table)

    async def broken(target: str | DeviceId, message: SoapMessage) -> None:
        raise OSError("connection refused")

    async with bed.agent.session(LIGHT) as light:
        stream = await light.subscribe("level").start()
        bed.host._send = broken
        bed.light.level = 3
        for _ in range(50):
            await asyncio.sleep(0.01)
            bed.clock.now += 1  # retries follow the host's clock
            if len(table) == 0:
                break
        assert len(table) == 0
        stream._finish("gone")


async def test_removing_a_service_ends_sessions_and_subscriptions() -> None:
    bed = Bed()
    async with bed.agent.session(LIGHT) as light:
        stream = await light.subscribe("level").start()
        await bed.host.remove(7)
        with pytest.raises(SubscriptionEnded):
            while True:
                await stream.__anext__()
        (notice,) = bed.peer_notices
        assert isinstance(notice, ss.DestroySessionNotify) and notice.from_service
        with pytest.raises(RemoteError):
            await light.Echo(value=1)


async def test_unknown_subscription_notification_is_refused() -> None:
    bed = Bed()
    frame = bed.wire(ss.SendNotification(7, 4242, 0, (("level", 1),)), DEV, CP, 1)
    with pytest.raises(IGRSError) as info:
        bed.agent.deliver(frame)
    assert info.value.return_code == ReturnCode.NOT_FOUND
    other = bed.wire(ss.SendNotification(7, 4242, 0, (("level", 1),)), CP, DEV, 1)
    with pytest.raises(IGRSError) as info:
        bed.agent.deliver(other)
    assert info.value.return_code == ReturnCode.FORBIDDEN


# --- device and service online events (9.7, 10.3) ----------------------------------------------
async def test_device_events() -> None:
    bed = Bed()
    other = DeviceId(uuid.UUID(int=5))
    bed.host.publish_device_event(other, True)
    async with bed.agent.device_events(duration=120) as events:
        assert await events.__anext__() == ev.DeviceEvent(other, True)  # current state first
        bed.host.publish_device_event(other, False)
        assert await events.__anext__() == ev.DeviceEvent(other, False)
        sid = events.subscription_id
        assert sid is not None
        bed.clock.now += 100
        await events._renew(sid)
    assert len(bed.host.subscriptions) == 0  # UnSubscribeDeviceEventNotify on exit


async def test_service_events() -> None:
    bed = Bed()

    class Fan(Service):
        service_type = "urn:IGRS:ServiceType:Fan:1"
        name = "Fan"

    async with bed.agent.service_events() as events:
        first = await events.__anext__()
        assert (first.service_id, first.online, first.service_type) == (7, True, LIGHT)
        bed.host.add(Fan(), 9)
        assert await events.__anext__() == ev.ServiceEvent(9, "urn:IGRS:ServiceType:Fan:1", True, "Fan")
        await bed.host.remove(9)
        assert await events.__anext__() == ev.ServiceEvent(9, "urn:IGRS:ServiceType:Fan:1", False, "Fan")
    async with bed.agent.service_events("urn:IGRS:ServiceType:Fan:1") as fans:
        bed.host.add(Fan(), 10)
        assert (await fans.__anext__()).service_id == 10


async def test_event_subscription_errors() -> None:
    bed = Bed(address="10.0.0.9")
    with pytest.raises(RemoteError) as info:
        await bed.agent.device_events().start()
    assert info.value.return_code == ReturnCode.FORBIDDEN
    frame = await bed.request(
        ev.RenewSubscriptionServiceEventRequest(77, "http://10.0.0.9/x", ev.from_timestamp(bed.clock.now + 60))
    )
    assert frame is not None and frame.message.status.return_code == ReturnCode.NOT_FOUND  # type: ignore[attr-defined]
    frame = await bed.request(
        ev.SubscribeServiceEventRequest("http://10.0.0.9/x", ev.from_timestamp(bed.clock.now - 60))
    )
    assert frame is not None and frame.message.status.return_code == ReturnCode.BAD_MESSAGE  # type: ignore[attr-defined]
    with pytest.raises(IGRSError) as err:
        await bed.request(ev.UnSubscribeDeviceEventNotify(77))
    assert err.value.return_code == ReturnCode.NOT_FOUND


# --- the sans-IO cores directly ----------------------------------------------------------------
def test_session_table_caps_and_ids() -> None:
    table = SessionTable(max_per_peer=2, max_total=3, rng=random.Random(1))
    a = table.create("p1", 1, 7, 0.0)
    table.create("p1", 2, 7, 0.0)
    with pytest.raises(IGRSError) as info:
        table.create("p1", 3, 7, 0.0)
    assert info.value.return_code == ReturnCode.BUSY
    table.create("p2", 1, 7, 0.0)
    with pytest.raises(IGRSError):
        table.create("p3", 1, 7, 0.0)
    assert 0 < a.session_id <= 0xFFFF_FFFF
    assert len(table.drop_peer("p1")) == 2 and len(table) == 1
    with pytest.raises(IGRSError):
        table.destroy("p1", a.session_id)


def test_client_sequencer() -> None:
    seq = ClientSequencer(random.Random(1))
    ids = [seq.next() for _ in range(3)]
    assert len(set(ids)) == 3 and 0 not in ids
    seq.complete(ids[0], ids[0])
    with pytest.raises(ProtocolError):
        seq.complete(ids[1], ids[2])
    seq._next = 0xFFFF_FFFF
    assert seq.next() == 0xFFFF_FFFF and seq.next() == 1  # wraps, skipping 0


def test_subscription_caps() -> None:
    table = SubscriptionTable(max_per_subscriber=2, max_total=3, rng=random.Random(1))
    for _ in range(2):
        table.subscribe("attribute", "a", CP_ADDR, LOCATION, ["x"], None, 0.0)
    with pytest.raises(IGRSError) as info:
        table.subscribe("attribute", "a", CP_ADDR, LOCATION, ["x"], None, 0.0)
    assert info.value.return_code == ReturnCode.BUSY
    sub = table.subscribe("attribute", "b", "10.0.0.2", "http://10.0.0.2/", [], 0.0 + 1e9, 0.0)
    assert sub.expires_at == 86400  # clamped to MAX_SUBSCRIPTION
    with pytest.raises(IGRSError):
        table.subscribe("attribute", "c", "10.0.0.3", "http://10.0.0.3/", [], None, 0.0)
