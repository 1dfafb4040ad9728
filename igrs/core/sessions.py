"""Client <-> service sessions (clause 10.5), sans-IO: no sockets, no clock, no event loop.

``SessionTable`` is the service side: one entry per (peer device, client id, service id),
with a session id (uint32, 0 reserved) allocated at random, caps per peer and in total, and
a window of recent SequenceIds per session against duplicates. An *open* session (created
without a secure pipe, with a service shared openly) has no pipe whose end would end it, and
a claimed device id proves nothing: it is capped per source address and in total, and ends
when idle (``expire_open``). ``ClientSequencer`` is the
client side: it allocates SequenceIds and checks that each AcknowledgeId answers exactly one
outstanding request. Rules: specs/sessions.md.
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field

from igrs.constants import (
    MAX_OPEN_SESSIONS,
    MAX_OPEN_SESSIONS_PER_ADDRESS,
    MAX_SESSIONS,
    MAX_SESSIONS_PER_PEER,
    OPEN_SESSION_IDLE_TIMEOUT,
    SEQUENCE_WINDOW,
    ReturnCode,
)
from igrs.errors import IGRSError, ProtocolError
from igrs.wire.ids import UINT32_MAX


def _error(code: ReturnCode, reason: str) -> IGRSError:
    return IGRSError(reason, return_code=code)


@dataclass(slots=True)
class Session:
    session_id: int
    peer: str  # the peer device id (its pipe)
    client_id: int
    service_id: int
    user: str = ""
    created: float = 0.0
    last_used: float = 0.0
    key: bytes = b""  # session key from Apply/TransferSessionKey, if any
    address: str = ""  # source address of an open session (no pipe), for its per-address cap
    _recent: deque[int] = field(default_factory=deque)
    _recent_set: set[int] = field(default_factory=set)

    def accept_sequence(self, sequence_id: int, window: int = SEQUENCE_WINDOW) -> None:
        """Record a request's SequenceId; a repeat within the window is refused (409)."""
        if sequence_id in self._recent_set:
            raise _error(ReturnCode.CONFLICT, f"SequenceId {sequence_id} already used in this session")
        self._recent.append(sequence_id)
        self._recent_set.add(sequence_id)
        while len(self._recent) > window:
            self._recent_set.discard(self._recent.popleft())


class SessionTable:
    """The sessions open on this device."""

    def __init__(
        self,
        *,
        max_per_peer: int = MAX_SESSIONS_PER_PEER,
        max_total: int = MAX_SESSIONS,
        max_open_per_address: int = MAX_OPEN_SESSIONS_PER_ADDRESS,
        max_open: int = MAX_OPEN_SESSIONS,
        open_idle_timeout: float = OPEN_SESSION_IDLE_TIMEOUT,
        rng: random.Random | None = None,
    ) -> None:
        self.max_per_peer = max_per_peer
        self.max_total = max_total
        self.max_open_per_address = max_open_per_address
        self.max_open = max_open
        self.open_idle_timeout = open_idle_timeout
        self._open: dict[str, int] = {}  # source address -> open sessions from it
        self._rng = rng or random.SystemRandom()
        self._by_id: dict[int, Session] = {}
        self._by_key: dict[tuple[str, int, int], Session] = {}
        self._per_peer: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self._by_id)

    def __iter__(self) -> Iterator[Session]:
        return iter(list(self._by_id.values()))

    def _new_id(self) -> int:
        while True:
            sid = self._rng.randint(1, UINT32_MAX)
            if sid not in self._by_id:
                return sid

    def create(self, peer: str, client_id: int, service_id: int, now: float, user: str = "",
               *, open_from: str = "") -> Session:
        """A new session; ``open_from``: the source address of an open one (no secure pipe)."""
        key = (peer, client_id, service_id)
        if key in self._by_key:
            raise _error(ReturnCode.CONFLICT, "this client already has a session with this service")
        if self._per_peer.get(peer, 0) >= self.max_per_peer:
            raise _error(ReturnCode.BUSY, f"more than {self.max_per_peer} sessions from one peer")
        if len(self._by_id) >= self.max_total:
            raise _error(ReturnCode.BUSY, "too many sessions on this device")
        if open_from:
            if self._open.get(open_from, 0) >= self.max_open_per_address:
                raise _error(ReturnCode.BUSY, f"more than {self.max_open_per_address} open sessions "
                                              "from one address")
            if sum(self._open.values()) >= self.max_open:
                raise _error(ReturnCode.BUSY, "too many open sessions on this device")
            self._open[open_from] = self._open.get(open_from, 0) + 1
        session = Session(self._new_id(), peer, client_id, service_id, user, now, now, address=open_from)
        self._by_id[session.session_id] = session
        self._by_key[key] = session
        self._per_peer[peer] = self._per_peer.get(peer, 0) + 1
        return session

    def lookup(self, peer: str, client_id: int, service_id: int, session_id: int | None = None) -> Session:
        """The session of a request: by SessionId when given, else by the id pair (ezbox)."""
        session = self._by_key.get((peer, client_id, service_id))
        if session is None or (session_id is not None and session.session_id != session_id):
            raise _error(ReturnCode.NOT_FOUND, "no such session")
        return session

    def get(self, session_id: int) -> Session | None:
        return self._by_id.get(session_id)

    def destroy(self, peer: str, session_id: int) -> Session:
        session = self._by_id.get(session_id)
        if session is None or session.peer != peer:
            raise _error(ReturnCode.NOT_FOUND, "no such session")
        self._remove(session)
        return session

    def _remove(self, session: Session) -> None:
        self._by_id.pop(session.session_id, None)
        self._by_key.pop((session.peer, session.client_id, session.service_id), None)
        left = self._per_peer.get(session.peer, 1) - 1
        if left > 0:
            self._per_peer[session.peer] = left
        else:
            self._per_peer.pop(session.peer, None)
        if session.address:
            still = self._open.get(session.address, 1) - 1
            if still > 0:
                self._open[session.address] = still
            else:
                self._open.pop(session.address, None)

    def expire_open(self, now: float) -> list[Session]:
        """End the open sessions idle for ``open_idle_timeout`` (nothing else ends them)."""
        gone = [s for s in self._by_id.values()
                if s.address and now - max(s.last_used, s.created) >= self.open_idle_timeout]
        for s in gone:
            self._remove(s)
        return gone

    def drop_peer(self, peer: str) -> list[Session]:
        """The pipe to ``peer`` is gone: every session of it ends."""
        gone = [s for s in self._by_id.values() if s.peer == peer]
        for s in gone:
            self._remove(s)
        return gone

    def drop_service(self, service_id: int) -> list[Session]:
        gone = [s for s in self._by_id.values() if s.service_id == service_id]
        for s in gone:
            self._remove(s)
        return gone


class ClientSequencer:
    """Client-side SequenceIds of one session and the AcknowledgeIds that may answer them."""

    def __init__(self, rng: random.Random | None = None) -> None:
        self._next = (rng or random.SystemRandom()).randint(1, UINT32_MAX)
        self._outstanding: set[int] = set()

    def next(self) -> int:
        seq = self._next
        while seq in self._outstanding:  # only after 2**32 requests in flight: never
            seq = seq % UINT32_MAX + 1
        self._next = seq % UINT32_MAX + 1
        self._outstanding.add(seq)
        return seq

    def complete(self, sequence_id: int, acknowledge_id: int) -> None:
        """The answer to request ``sequence_id`` arrived carrying ``acknowledge_id``."""
        self._outstanding.discard(sequence_id)
        if acknowledge_id != sequence_id:
            raise ProtocolError(f"AcknowledgeId {acknowledge_id} does not answer SequenceId {sequence_id}")

    def abandon(self, sequence_id: int) -> None:
        self._outstanding.discard(sequence_id)

    @property
    def outstanding(self) -> int:
        return len(self._outstanding)


__all__ = ["ClientSequencer", "Session", "SessionTable"]
