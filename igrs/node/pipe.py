"""The initiating side of device pipes and of PIN pairing (asyncio).

``open_pipe`` runs the four-step handshake of clause 9.2 against a device; the resulting
``Pipe`` seals every request (secure pipe), checks every answer, keeps the pipe alive with
DeviceOnlineDetectionRequest and declares the peer gone after KEEPALIVE_MISSES unanswered
probes. ``pair`` runs the PIN pairing extension. Written protocol: specs/pipes.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

from igrs.constants import KEEPALIVE_INTERVAL, KEEPALIVE_MISSES, ReturnCode
from igrs.core import pipes as core_pipes
from igrs.core.discovery import ControlPointDiscovery, DeviceRecord, DiscoveryEvent
from igrs.core.security import EstablishedPipe, LocalIdentity, PeerLookup, PipeInitiator
from igrs.errors import IGRSError, ProtocolError, RemoteError, SecurityError
from igrs.net.http import IgrsHttpClient
from igrs.node.keystore import PairedDevice
from igrs.wire.answers import expect_success
from igrs.wire.bodies import pipes as bodies
from igrs.wire.ids import DeviceId
from igrs.wire.messages import ErrorResponse, Frame, SoapMessage

log = logging.getLogger(__name__)

M = TypeVar("M")
PinProvider = Callable[[int], Awaitable[str]]  # (digits) -> the PIN the user typed


class Pipe:
    """An established pipe from this node to a device."""

    def __init__(self, http: IgrsHttpClient, location: str, established: EstablishedPipe,
                 *, keepalive_interval: float = KEEPALIVE_INTERVAL,
                 on_closed: Callable[[Pipe, str], None] | None = None,
                 on_lost: Callable[[Pipe, str], None] | None = None) -> None:
        self.http = http
        self.location = location
        self.established = established
        self.keepalive_interval = keepalive_interval
        self.on_closed = on_closed  # (pipe, reason) whenever it closes, for any reason
        self.on_lost = on_lost  # (pipe, reason) when the device is lost: keep-alive failed or pipe forgotten
        self.closed_reason: str | None = None
        self.lost = False  # closed because the device stopped answering or forgot the pipe
        self._keepalive: asyncio.Task[None] | None = None

    @property
    def pipe_id(self) -> int:
        return self.established.pipe_id

    @property
    def peer(self) -> DeviceId:
        return self.established.peer

    @property
    def secure(self) -> bool:
        return self.established.secure

    @property
    def alive(self) -> bool:
        return self.closed_reason is None

    def start_keepalive(self) -> None:
        if self.keepalive_interval > 0 and self._keepalive is None:
            self._keepalive = asyncio.create_task(self._probe_loop(), name=f"igrs-keepalive-{self.pipe_id}")

    def _sealer(self) -> Callable[[SoapMessage, int], SoapMessage] | None:
        channel = self.established.channel
        if channel is None:
            return None
        local, peer, pipe_id = self.established.local, self.peer, self.pipe_id
        return lambda m, seq: core_pipes.seal(channel, pipe_id, m, source=local, target=peer,
                                              sequence_id=seq)

    async def exchange(self, message: SoapMessage) -> tuple[int, Frame | None]:
        """Send ``message`` in the pipe; return (SequenceId, opened answer or None)."""
        if not self.alive:
            raise IGRSError(f"pipe {self.pipe_id} is closed: {self.closed_reason}",
                            return_code=ReturnCode.PRECONDITION_FAILED)
        seq, frame = await self.http.send(self.location, message, self.peer, seal=self._sealer())
        if frame is not None and isinstance(frame.message, bodies.SecureMessage):
            channel = self.established.channel
            if channel is None or frame.message.pipe_id != self.pipe_id:
                raise SecurityError("sealed answer on a pipe without those keys")
            frame = core_pipes.unseal(channel, frame)
        elif frame is not None and self.secure and not isinstance(frame.message, ErrorResponse):
            raise SecurityError("unsealed answer in a secure pipe")
        return seq, frame

    async def request(self, message: SoapMessage, expected: type[M]) -> M:
        seq, frame = await self.exchange(message)
        return expect_success(frame, expected, seq)

    async def _probe_loop(self) -> None:
        misses = 0
        while self.alive:
            await asyncio.sleep(self.keepalive_interval)
            try:
                # asyncio.timeout, not wait_for: a close() that cancels this loop as a probe
                # completes must not be swallowed (Python 3.11), or close() would wait forever.
                async with asyncio.timeout(max(1.0, self.keepalive_interval)):
                    await self.request(bodies.DeviceOnlineDetectionRequest(self.pipe_id),
                                       bodies.DeviceOnlineDetectionResponse)
                misses = 0
            except (IGRSError, TimeoutError) as exc:
                misses += 1
                log.debug("keep-alive %d/%d of pipe %d failed: %s", misses, KEEPALIVE_MISSES,
                          self.pipe_id, exc)
                if isinstance(exc, RemoteError) and exc.return_code == ReturnCode.NOT_AUTHENTICATED:
                    self._mark_closed("the device no longer knows this pipe", lost=True)
                elif misses >= KEEPALIVE_MISSES:
                    self._mark_closed("the device stopped answering (keep-alive)", lost=True)

    def _mark_closed(self, reason: str, *, lost: bool = False) -> None:
        if self.closed_reason is None:
            self.closed_reason = reason
            self.lost = lost
            if self.on_closed is not None:
                self.on_closed(self, reason)
            if lost and self.on_lost is not None:
                self.on_lost(self, reason)

    async def close(self, reason: str = "closed by the application") -> None:
        """Detach (DetachPipeNotify) and stop the keep-alive."""
        if self._keepalive is not None:
            self._keepalive.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._keepalive
            self._keepalive = None
        if self.alive:
            with contextlib.suppress(IGRSError, OSError):
                await self.exchange(bodies.DetachPipeNotify(self.pipe_id, reason))
            self._mark_closed(reason)


async def open_pipe(http: IgrsHttpClient, location: str, identity: LocalIdentity, peer: DeviceId,
                    peers: PeerLookup, *, secure: bool = True,
                    keepalive_interval: float = KEEPALIVE_INTERVAL,
                    on_lost: Callable[[Pipe, str], None] | None = None) -> Pipe:
    """Create a pipe to ``peer`` at ``location`` (CreatePipe → Authenticate →
    AuthenticateResult → CreatePipeResult), kept alive every ``keepalive_interval`` s;
    ``on_lost(pipe, reason)`` when KEEPALIVE_MISSES probes in a row fail or the device no
    longer knows the pipe."""
    if secure and peers(peer) is None:
        raise SecurityError(f"{peer} is not paired; pair first (igrs pair)",
                            return_code=ReturnCode.FORBIDDEN)
    init = PipeInitiator(identity, peer, peers=peers, secure=secure)

    async def step(message: SoapMessage, expected: type[M]) -> M:
        seq, frame = await http.send(location, message, peer)
        return expect_success(frame, expected, seq)

    r1 = await step(bodies.CreatePipeRequest(secure, init.create_pipe_request()), bodies.CreatePipeResponse)
    hid = r1.handshake_id
    r2 = await step(bodies.AuthenticateRequest(hid, init.on_create_pipe_response(r1.data)),
                    bodies.AuthenticateResponse)
    r3 = await step(bodies.AuthenticateResultRequest(hid, init.on_authenticate_response(r2.data)),
                    bodies.AuthenticateResultResponse)
    if not r3.pipe_id:
        raise ProtocolError("AuthenticateResultResponse assigned no PipeId")
    d4 = init.on_authenticate_result_response(r3.data, pipe_id=r3.pipe_id)
    r4 = await step(bodies.CreatePipeResultRequest(hid, d4), bodies.CreatePipeResultResponse)
    established = init.on_create_pipe_result_response(r4.data)
    pipe = Pipe(http, location, established, keepalive_interval=keepalive_interval, on_lost=on_lost)
    pipe.start_keepalive()
    return pipe


async def open_pipe_to(record: DeviceRecord, registry: ControlPointDiscovery, http: IgrsHttpClient,
                       identity: LocalIdentity, peers: PeerLookup, *, secure: bool = True,
                       keepalive_interval: float = KEEPALIVE_INTERVAL,
                       on_lost: Callable[[Pipe, str], None] | None = None,
                       on_proven: Callable[[list[DiscoveryEvent]], None] | None = None) -> Pipe:
    """A pipe to a device of ``registry``: at its own address; when that fails and other
    addresses announce its id (candidates, specs/isdp.md §11a), a secure pipe is tried
    there, and one that authenticates the paired device moves the entry (``proven``; the
    events go to ``on_proven``)."""
    try:
        return await open_pipe(http, record.url, identity, record.device_id, peers, secure=secure,
                               keepalive_interval=keepalive_interval, on_lost=on_lost)
    except (IGRSError, OSError) as first:
        if not secure:
            raise
        for address, url in registry.candidate_urls(record.device_id):
            try:
                pipe = await open_pipe(http, url, identity, record.device_id, peers, secure=True,
                                       keepalive_interval=keepalive_interval, on_lost=on_lost)
            except (IGRSError, OSError) as exc:
                log.debug("pipe to %s at candidate %s failed: %s", record.device_id, address, exc)
                continue
            events = registry.proven(record.device_id, address, asyncio.get_running_loop().time())
            if on_proven is not None:
                on_proven(events)
            return pipe
        raise first


async def pair(http: IgrsHttpClient, location: str, identity: LocalIdentity, peer: DeviceId,
               pin: PinProvider, *, name: str = "", now: Callable[[], float]) -> PairedDevice:
    """PIN pairing with the device at ``location``: it shows a PIN, ``pin`` supplies what the
    user typed. Returns the pairing record (the caller stores it)."""
    from igrs.core.security import PairingInitiator  # the PAKE modules load at the first pairing only

    async def step(message: SoapMessage, expected: type[M]) -> M:
        seq, frame = await http.send(location, message, peer)
        return expect_success(frame, expected, seq)

    mode = await step(bodies.PairingModeRequest(), bodies.PairingModeResponse)
    typed = await pin(mode.digits)
    init = PairingInitiator(identity, peer, typed, name=name)
    r1 = await step(bodies.PairingStartRequest(0, init.start()), bodies.PairingStartResponse)
    r2 = await step(bodies.PairingConfirmRequest(r1.handshake_id, init.on_reply(r1.data)),
                    bodies.PairingConfirmResponse)
    result = init.on_done(r2.data)
    return PairedDevice.from_pairing(result, paired_at=now())
