"""Device pipes (clause 9.2), sans-IO: the responder's handshake and pipe table, and the
sealing of messages inside a secure pipe. Written protocol: specs/pipes.md."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

from igrs.constants import (
    HANDSHAKE_TIMEOUT,
    MAX_PENDING_HANDSHAKES,
    MAX_PENDING_HANDSHAKES_PER_ADDRESS,
    MAX_PENDING_HANDSHAKES_PER_PEER,
    MAX_PIPES,
    MAX_PIPES_PER_PEER,
    PIPE_IDLE_TIMEOUT,
    ReturnCode,
)
from igrs.core.security import EstablishedPipe, LocalIdentity, PeerLookup, PipeResponder, SecureChannel
from igrs.errors import SecurityError
from igrs.wire import messages
from igrs.wire.bodies import pipes as bodies
from igrs.wire.ids import DeviceId
from igrs.wire.messages import Frame, Routing, SoapMessage, Status

Urandom = Callable[[int], bytes]


@dataclass(slots=True)
class PipeRecord:
    """An established pipe as the device (responder) keeps it."""

    pipe: EstablishedPipe
    established_at: float
    last_seen: float

    @property
    def pipe_id(self) -> int:
        return self.pipe.pipe_id

    @property
    def peer(self) -> DeviceId:
        return self.pipe.peer

    @property
    def secure(self) -> bool:
        return self.pipe.secure


@dataclass(slots=True)
class _Pending:
    responder: PipeResponder
    peer: DeviceId  # claimed by the CreatePipeRequest; proven once ``authenticated``
    deadline: float
    source: str = ""  # the sender's address ("": not known)
    pipe_id: int = 0
    authenticated: bool = False  # the initiator's signature verified (AuthenticateRequest)


def _uid(urandom: Urandom, taken: object) -> int:
    while True:
        value = int.from_bytes(urandom(4), "big")
        if value and value not in taken:  # type: ignore[operator]
            return value


class PipeTable:
    """Handshakes in progress and established pipes of one device, with caps and timeouts.

    Every input is checked against the header SourceDeviceId: a handshake or pipe belongs
    to the device that started it, and no other device can continue or use it.

    Half-open handshakes are capped per source address, per claimed device id and in all
    (specs/pipes.md §2). A CreatePipeRequest names a device id it cannot prove before its
    AuthenticateRequest, so a new attempt over a cap evicts the oldest unauthenticated one
    (of that address, of that id, or of all) instead of being refused: a flood from one
    address only ever replaces its own attempts, and the real device keeps connecting.
    """

    def __init__(
        self,
        identity: LocalIdentity,
        peers: PeerLookup,
        *,
        allow_non_secure: bool = True,
        max_pipes: int = MAX_PIPES,
        max_per_peer: int = MAX_PIPES_PER_PEER,
        max_pending: int = MAX_PENDING_HANDSHAKES,
        max_pending_per_address: int = MAX_PENDING_HANDSHAKES_PER_ADDRESS,
        max_pending_per_peer: int = MAX_PENDING_HANDSHAKES_PER_PEER,
        handshake_timeout: float = HANDSHAKE_TIMEOUT,
        idle_timeout: float = PIPE_IDLE_TIMEOUT,
        urandom: Urandom = os.urandom,
    ) -> None:
        self.identity = identity
        self.peers = peers
        self.allow_non_secure = allow_non_secure
        self.max_pipes = max_pipes
        self.max_per_peer = max_per_peer
        self.max_pending = max_pending
        self.max_pending_per_address = max_pending_per_address
        self.max_pending_per_peer = max_pending_per_peer
        self.handshake_timeout = handshake_timeout
        self.idle_timeout = idle_timeout
        self.urandom = urandom
        self._pending: dict[int, _Pending] = {}
        self._pipes: dict[int, PipeRecord] = {}

    # --- handshake -----------------------------------------------------------------------------
    def on_create_pipe(self, peer: DeviceId, req: bodies.CreatePipeRequest, ack: int,
                       now: float, *, source: str = "") -> bodies.CreatePipeResponse:
        """Start a handshake claimed by ``peer`` from the address ``source``."""
        self.expire(now)
        responder = PipeResponder(self.identity, peers=self.peers,
                                  allow_non_secure=self.allow_non_secure, urandom=self.urandom)
        reply = responder.on_create_pipe_request(req.data)
        if responder.peer != peer:
            raise SecurityError("handshake names another device than the sender",
                                return_code=ReturnCode.FORBIDDEN)
        if responder.secure != req.secure:
            raise SecurityError("Secure flag disagrees with the handshake")
        self._make_room(peer, source)
        handshake_id = _uid(self.urandom, self._pending)
        self._pending[handshake_id] = _Pending(responder, peer, now + self.handshake_timeout, source)
        return bodies.CreatePipeResponse(Status(ack), reply, handshake_id=handshake_id)

    def _make_room(self, peer: DeviceId, source: str) -> None:
        """Evict the oldest unauthenticated handshake of ``source``, then of ``peer``, then of
        all, wherever a new one would exceed that cap; 503 if all are authenticated."""
        caps: list[tuple[Callable[[_Pending], bool], int]] = [
            (lambda p: p.peer == peer, self.max_pending_per_peer),
            (lambda p: True, self.max_pending),
        ]
        if source:
            caps.insert(0, (lambda p: p.source == source, self.max_pending_per_address))
        for belongs, cap in caps:
            mine = [h for h, p in self._pending.items() if belongs(p)]  # oldest first
            if len(mine) < cap:
                continue
            victim = next((h for h in mine if not self._pending[h].authenticated), None)
            if victim is None:
                raise SecurityError("too many pipe handshakes in progress", return_code=ReturnCode.BUSY)
            del self._pending[victim]

    def _step(self, peer: DeviceId, handshake_id: int, now: float) -> _Pending:
        pending = self._pending.get(handshake_id)
        if pending is None or pending.peer != peer or now > pending.deadline:
            raise SecurityError("unknown or expired pipe handshake",
                                return_code=ReturnCode.PRECONDITION_FAILED)
        return pending

    def _guarded(self, handshake_id: int, step: Callable[[], bytes]) -> bytes:
        try:
            return step()
        except SecurityError:
            self._pending.pop(handshake_id, None)  # a failed step ends the handshake
            raise

    def on_authenticate(self, peer: DeviceId, req: bodies.AuthenticateRequest, ack: int,
                        now: float) -> bodies.AuthenticateResponse:
        p = self._step(peer, req.handshake_id, now)
        data = self._guarded(req.handshake_id, lambda: p.responder.on_authenticate_request(req.data))
        p.authenticated = p.responder.secure  # the signature of the claimed device verified
        return bodies.AuthenticateResponse(Status(ack), data)

    def on_authenticate_result(self, peer: DeviceId, req: bodies.AuthenticateResultRequest, ack: int,
                               now: float) -> bodies.AuthenticateResultResponse:
        p = self._step(peer, req.handshake_id, now)
        data = self._guarded(req.handshake_id,
                             lambda: p.responder.on_authenticate_result_request(req.data))
        p.pipe_id = _uid(self.urandom, self._pipes)
        return bodies.AuthenticateResultResponse(Status(ack), data, pipe_id=p.pipe_id)

    def on_create_pipe_result(self, peer: DeviceId, req: bodies.CreatePipeResultRequest, ack: int,
                              now: float) -> bodies.CreatePipeResultResponse:
        p = self._step(peer, req.handshake_id, now)
        if not p.pipe_id:
            raise SecurityError("CreatePipeResult before AuthenticateResult",
                                return_code=ReturnCode.PRECONDITION_FAILED)
        data = self._guarded(req.handshake_id, lambda: p.responder.on_create_pipe_result_request(
            req.data, pipe_id=p.pipe_id))
        del self._pending[req.handshake_id]
        self._admit(PipeRecord(p.responder.pipe, now, now))
        return bodies.CreatePipeResultResponse(Status(ack), data, pipe_id=p.pipe_id)

    def _admit(self, record: PipeRecord) -> None:
        mine = sorted((r for r in self._pipes.values() if r.peer == record.peer),
                      key=lambda r: r.last_seen)
        for old in mine[: max(0, len(mine) - self.max_per_peer + 1)]:
            del self._pipes[old.pipe_id]
        if len(self._pipes) >= self.max_pipes:
            oldest = min(self._pipes.values(), key=lambda r: r.last_seen)
            del self._pipes[oldest.pipe_id]
        self._pipes[record.pipe_id] = record

    # --- established pipes ---------------------------------------------------------------------
    def get(self, pipe_id: int, peer: DeviceId, now: float) -> PipeRecord:
        record = self._pipes.get(pipe_id)
        if record is None or record.peer != peer:
            raise SecurityError("no such pipe with this device", return_code=ReturnCode.NOT_AUTHENTICATED)
        record.last_seen = now
        return record

    def detach(self, pipe_id: int, peer: DeviceId) -> PipeRecord | None:
        record = self._pipes.get(pipe_id)
        if record is None or record.peer != peer:
            return None
        return self._pipes.pop(pipe_id)

    def drop_peer(self, peer: DeviceId) -> list[PipeRecord]:
        """Close every pipe of ``peer`` (e.g. when it is unpaired)."""
        gone = [r for r in self._pipes.values() if r.peer == peer]
        for record in gone:
            del self._pipes[record.pipe_id]
        return gone

    @property
    def pipes(self) -> list[PipeRecord]:
        return list(self._pipes.values())

    @property
    def pending(self) -> int:
        return len(self._pending)

    def expire(self, now: float) -> list[PipeRecord]:
        """Forget timed-out handshakes and idle pipes; return the pipes closed."""
        for hid in [h for h, p in self._pending.items() if now > p.deadline]:
            del self._pending[hid]
        idle = [r for r in self._pipes.values() if now - r.last_seen > self.idle_timeout]
        for record in idle:
            del self._pipes[record.pipe_id]
        return idle

    def next_deadline(self) -> float | None:
        times = [p.deadline for p in self._pending.values()]
        times += [r.last_seen + self.idle_timeout for r in self._pipes.values()]
        return min(times, default=None)


# --- sealing ---------------------------------------------------------------------------------
def seal(channel: SecureChannel, pipe_id: int, message: SoapMessage, *, source: DeviceId,
         target: DeviceId | None, sequence_id: int) -> bodies.SecureMessage:
    """Seal ``message``'s body for a secure pipe; the result replaces it on the wire."""
    plaintext = messages.body_xml(message)
    record = channel.seal(plaintext, message_type=message.message_type, source=str(source),
                          target=str(target or ""), sequence_id=sequence_id)
    return bodies.SecureMessage(pipe_id, record, message.message_type)


def unseal(channel: SecureChannel, frame: Frame) -> Frame:
    """Open a SecureMessage frame (authenticating headers and body, refusing replays)."""
    sealed = frame.message
    if not isinstance(sealed, bodies.SecureMessage):
        raise SecurityError("message is not sealed", return_code=ReturnCode.NOT_AUTHENTICATED)
    r: Routing = frame.routing
    plaintext = channel.open(sealed.record, message_type=r.message_type, source=str(r.source),
                             target=str(r.target or ""), sequence_id=r.sequence_id)
    return Frame(r, messages.parse_body_xml(r.message_type, plaintext))
