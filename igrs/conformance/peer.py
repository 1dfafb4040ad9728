"""The test device's paired side: one ``ControlPoint`` (in-memory keystore, the suite's device
id) that pairs with the device under test once per run, opens secure pipes and sessions, and
records every message it sends or receives in a pipe as evidence — the plaintext of a sealed
message, marked so, since the ciphertext says nothing to a reader of the report.

Cases that need it have ``requires = ["pin"]``; ``TestPeer.of(ctx)`` pairs on first use and
remembers a failed pairing, so later cases ``skip`` quickly with the same reason.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

from igrs.conformance.runner import CaseFailed, CaseSkipped, Context
from igrs.wire import messages
from igrs.wire.ids import UINT32_MAX, DeviceType

if TYPE_CHECKING:
    from igrs.core.discovery import DeviceRecord
    from igrs.node.control import ControlPoint
    from igrs.node.pipe import Pipe
    from igrs.node.service_agent import ServiceAgent
    from igrs.wire.messages import Frame

PEER_FACT = "test_peer"


class TestPeer:
    """What the paired cases share; closed by the runner at the end of the run."""

    __test__ = False  # not a pytest class

    def __init__(self, ctx: Context, cp: ControlPoint, record: DeviceRecord) -> None:
        self.ctx = ctx
        self.cp = cp
        self.record = record
        self.paired = False
        self.notifications: list[Frame] = []  # opened notifications that reached our callback
        self.raw_subscriptions: set[int] = set()  # subscribed by a case, not by the agent
        self._agent: ServiceAgent | None = None
        self.last_seq = 0  # the 01-SequenceId of the last exchange

    @classmethod
    async def of(cls, ctx: Context) -> TestPeer:
        """The run's peer, paired with the DUT (``CaseSkipped`` if pairing is impossible)."""
        peer: TestPeer | None = ctx.facts.get(PEER_FACT)
        if peer is None:
            peer = await cls._create(ctx)
            ctx.facts[PEER_FACT] = peer
            ctx.closers.append(peer.close)
        await peer._pair()
        return peer

    @classmethod
    async def _create(cls, ctx: Context) -> TestPeer:
        from igrs.core.discovery import DeviceRecord
        from igrs.node.control import ControlPoint

        assert ctx.device_id is not None
        cp = ControlPoint(interfaces=[ctx.iface.address], port=ctx.isdp_port, device_id=ctx.searcher_id,
                          name="igrs conformance", keepalive_interval=0)
        await cp.start()
        dtype = ctx.facts.get("device_type") or DeviceType("Unknown")
        record = DeviceRecord(ctx.device_id, dtype, "", ctx.location, ctx.host, 1800, 0.0, 0.0, frozenset())
        return cls(ctx, cp, record)

    async def _pair(self) -> None:
        from igrs.errors import IGRSError

        if self.paired:
            return
        if "pair_error" in self.ctx.facts:
            raise CaseSkipped(f"pairing failed earlier: {self.ctx.facts['pair_error']}")
        pin = self.ctx.pin
        if pin is None:
            raise CaseSkipped("needs --pin")
        try:
            paired = await self.cp.pair(self.record, pin)
        except (IGRSError, OSError, TimeoutError) as exc:
            self.ctx.facts["pair_error"] = str(exc) or type(exc).__name__
            self.ctx.rec.add("!", self.record.location, b"", f"pairing failed: {exc}")
            raise CaseSkipped(f"pairing with the PIN failed: {exc}") from None
        self.paired = True
        self.ctx.rec.add("<", self.record.location, b"", f"paired, fingerprint {paired.fingerprint}")

    @property
    def identity(self) -> Any:
        return self.cp.identity

    async def pipe(self) -> Pipe:
        """The secure pipe to the DUT (opened, or reopened after a case closed it)."""
        from igrs.errors import IGRSError

        try:
            pipe = await self.cp.open_pipe(self.record)
        except (IGRSError, OSError) as exc:
            self.ctx.rec.add("!", self.record.location, b"", f"secure pipe refused after pairing: {exc}")
            raise CaseFailed(f"paired, but the secure pipe was refused: {exc}") from None
        return pipe

    async def agent(self) -> ServiceAgent:
        """The client agent (which also serves our callback Location). Notifications are
        recorded as evidence; those for a case's own subscriptions are accepted here."""
        if self._agent is None:
            agent = await self.cp.agent(self.record)
            inner = agent.deliver

            def deliver(frame: Frame) -> None:
                self.notifications.append(frame)
                self.record_message("<", frame.message, "notification at our callback, opened")
                if getattr(frame.message, "subscription_id", None) in self.raw_subscriptions:
                    return None
                return inner(frame)

            agent.deliver = deliver  # type: ignore[method-assign]
            self._agent = agent
        return self._agent

    async def callback_location(self) -> str:
        return (await self.agent()).location()

    async def exchange(self, message: messages.SoapMessage, note: str = "") -> Frame:
        """Send ``message`` sealed in the secure pipe; return the opened answer (an
        ``ErrorResponse`` included). Both sides are recorded as plaintext."""
        from igrs.errors import IGRSError

        pipe = await self.pipe()
        self.record_message(">", message, f"sealed in pipe {pipe.pipe_id}" + (f"; {note}" if note else ""))
        try:
            seq, frame = await pipe.exchange(message)
        except (IGRSError, OSError) as exc:
            self.ctx.rec.add("!", self.record.location, b"", f"{type(exc).__name__}: {exc}")
            raise CaseFailed(f"{message.message_type}: no usable answer ({exc})") from None
        if frame is None:
            raise CaseFailed(f"{message.message_type} was answered with an empty 200, not a response")
        self.record_message("<", frame.message, f"answer to SequenceId {seq}, opened")
        self.last_seq = seq
        return frame

    async def notify(self, message: messages.SoapMessage, note: str = "") -> None:
        """Send a notify sealed in the pipe; it must be answered with an empty 200."""
        from igrs.errors import IGRSError

        pipe = await self.pipe()
        self.record_message(">", message, f"sealed in pipe {pipe.pipe_id}" + (f"; {note}" if note else ""))
        try:
            _, frame = await pipe.exchange(message)
        except (IGRSError, OSError) as exc:
            self.ctx.rec.add("!", self.record.location, b"", f"{type(exc).__name__}: {exc}")
            raise CaseFailed(f"{message.message_type} was refused ({exc})") from None
        if frame is not None:
            self.record_message("<", frame.message, "answer, opened")
            raise CaseFailed(f"{message.message_type} was answered with {frame.routing.message_type}, "
                             "not an empty 200")
        self.ctx.rec.add("<", self.record.location, b"", "empty 200")

    def record_message(self, direction: str, message: Any, note: str) -> None:
        """The plaintext as it would travel: its message type header, then the body (a 10.5/10.6
        body is a ``<Session>`` element: the header says which message it is)."""
        try:
            _, body = messages.encode(message, source=self.cp.device_id, target=self.record.device_id,
                                      sequence_id=1)
        except Exception as exc:  # evidence only: never fail a case for it
            body = f"<{type(message).__name__}: not re-encodable: {exc}>".encode()
        head = f"01-IGRSMessageType: {getattr(message, 'message_type', '?')}\r\n\r\n".encode()
        self.ctx.rec.add(direction, self.record.location, head + body, note)

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self.cp.stop()


def status_of(frame: Frame) -> tuple[int, int, str]:
    """(ReturnCode, AcknowledgeId, Reason) of a typed response or an ErrorResponse."""
    status = getattr(frame.message, "status", None)
    if status is None:
        raise CaseFailed(f"{frame.routing.message_type} carries no status")
    return int(status.return_code), int(status.acknowledge_id), str(getattr(status, "reason", "") or "")


def expect_code(frame: Frame, codes: int | tuple[int, ...], what: str) -> None:
    """The answer's ReturnCode is one of ``codes`` (a typed response or an ErrorResponse)."""
    wanted = (codes,) if isinstance(codes, int) else codes
    code, _, reason = status_of(frame)
    if code not in wanted:
        said = f" ({reason})" if reason else ""
        raise CaseFailed(f"{what}: ReturnCode {code}{said}, expected {' or '.join(map(str, wanted))}")


def new_id() -> int:
    import random

    return random.randint(1, UINT32_MAX)
