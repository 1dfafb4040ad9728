"""Sans-IO state of one client connection on a relay node.

Bytes in (with ``now``) -> validated frames out, or a :class:`FrameError` that tells the
shell to send GOAWAY with that code and reason and close *this* connection only.

States: AWAIT_AUTH -> OPEN -> CLOSED. Before AUTH only AUTH, PING, BYE and the
pre-authentication REQUEST ops (registration) are accepted.
"""

from __future__ import annotations

from enum import Enum

from igrs.relay.errors import RelayCode
from igrs.relay.frames import CLIENT_TYPES, Frame, FrameDecoder, FrameError, FrameType
from igrs.relay.ids import Principal
from igrs.relay.limits import Limits, TokenBucket

PRE_AUTH_TYPES = frozenset({FrameType.AUTH, FrameType.REQUEST, FrameType.PING, FrameType.BYE})
OPEN_TYPES = CLIENT_TYPES - {FrameType.AUTH}
PRE_AUTH_OPS = frozenset({"register_user", "register_device"})

# Every REQUEST op of the relay protocol and what it takes (specs/relay.md, "Requests"): the
# node's dispatch table and `igrs relay request --help` are both checked against it.
REQUEST_OPS: dict[str, str] = {
    "register_user": "name -> id, token (before AUTH)",
    "register_device": "name, verify_code, [id, device_type] -> id, token (before AUTH)",
    "whoami": "-> your id, kind, name",
    "bind": "device, verify_code: bind a device to you",
    "unbind": "device",
    "link": "a, b: link two devices bound to you",
    "unlink": "a, b",
    "friend_request": "user",
    "friend_respond": "user, accept (true/false)",
    "unfriend": "user",
    "relations": "-> relations by type, names",
    "presence": "[ids] -> online status of related parties",
    "subscribe_presence": "-> current presence; changes follow as notifications",
    "unsubscribe_presence": "",
    "item_put": "key, value (base64), [readers] (online storage)",
    "item_get": "key, [owner]",
    "item_list": "-> your item keys",
    "item_delete": "key",
    "delete_account": "[device]",
    "modify_account": "[name], [device_type], [device]",
    "reset_verify_code": "verify_code, [device]",
    "rotate_token": "[device] -> id, token",
}


class State(Enum):
    AWAIT_AUTH = "await-auth"
    OPEN = "open"
    CLOSED = "closed"


class ServerSession:
    __slots__ = ("_allowed", "_decoder", "_flood", "last_frame", "opened", "principal", "state")

    def __init__(self, limits: Limits, now: float) -> None:
        self.state = State.AWAIT_AUTH
        self.principal: Principal | None = None
        self.opened = now
        self.last_frame = now
        self._decoder = FrameDecoder(max_payload=limits.max_frame_payload)
        self._flood = TokenBucket(limits.flood_rate, limits.flood_burst, now)
        self._allowed = PRE_AUTH_TYPES  # frame types this state accepts

    def receive(self, data: bytes, now: float) -> list[Frame]:
        """Decode and screen incoming bytes. Raises FrameError (close the connection).

        A chunk is screened whole: its frames take their flood tokens at once, and each
        frame's type is checked against the set this state accepts (the reason is worked
        out only for a refused one)."""
        if self.state is State.CLOSED:
            return []
        try:
            frames = self._decoder.feed(data)
            if frames:
                if not self._flood.take(now, len(frames)):
                    raise FrameError(RelayCode.FLOOD, "frame flood: too many frames per second")
                self.last_frame = now
                allowed = self._allowed
                for frame in frames:
                    if frame.type not in allowed:
                        self._refuse(frame)
        except FrameError:
            self.state = State.CLOSED
            raise
        return frames

    def _refuse(self, frame: Frame) -> None:
        """Raise the FrameError for a frame type this state does not accept."""
        if frame.type not in CLIENT_TYPES:
            raise FrameError(
                RelayCode.BAD_FRAME, f"frame type {frame.type.name} not allowed from a client"
            )
        if self.state is State.AWAIT_AUTH:
            if frame.type not in PRE_AUTH_TYPES:
                raise FrameError(
                    RelayCode.NOT_AUTHENTICATED, f"{frame.type.name} before AUTH"
                )
        elif frame.type is FrameType.AUTH:
            raise FrameError(RelayCode.BAD_FRAME, "AUTH on an authenticated connection")
        raise AssertionError(f"{frame.type.name} refused in state {self.state}")  # not reached

    def eof(self) -> None:
        """The peer closed its side; raises FrameError if a frame was cut short."""
        state, self.state = self.state, State.CLOSED
        if state is not State.CLOSED:
            self._decoder.at_eof()

    def authenticated(self, principal: Principal) -> None:
        self.principal = principal
        self.state = State.OPEN
        self._allowed = OPEN_TYPES

    def timeout(self, now: float, limits: Limits) -> FrameError | None:
        """Return the error to close with if this connection has timed out."""
        if self.state is State.AWAIT_AUTH and now - self.opened > limits.auth_timeout:
            return FrameError(RelayCode.TIMEOUT, "no AUTH within the auth timeout")
        if self.state is State.OPEN and now - self.last_frame > limits.idle_timeout:
            return FrameError(RelayCode.TIMEOUT, "idle timeout: no frame received")
        return None

    def close(self) -> None:
        self.state = State.CLOSED
