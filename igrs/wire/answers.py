"""The answer to a request, as its sender wants it: the typed reply, or the error it deserves.

One mapping for the whole stack (pipes, pairing, description, sessions, invocation, events):

* no answer where one was expected, or an answer of another type -> ``ProtocolError``;
* an ``ErrorResponse``, or a typed answer whose ``Status`` is not 200 -> ``RemoteError`` with
  the peer's return code (a ``ReturnCode`` where known, else the int: profile codes);
* a ``Status`` whose AcknowledgeId is not the request's SequenceId -> ``ProtocolError``.

Its reason is the peer's reason (else ``return code N``), after ``what: `` when the caller
names the operation (``SetLevel: the level is out of range (400)``).
"""

from __future__ import annotations

from typing import TypeVar

from igrs.constants import ReturnCode
from igrs.errors import ProtocolError, RemoteError
from igrs.wire.messages import ErrorResponse, Frame, Status

M = TypeVar("M")


def return_code(value: int) -> int:
    """The peer's code: a ReturnCode where known, else the int itself (profile codes)."""
    return ReturnCode(value) if value in ReturnCode._value2member_map_ else value


def remote_error(status: Status, what: str = "") -> RemoteError:
    """The RemoteError for a non-success ``status`` (of an ErrorResponse or a typed answer)."""
    code = status.return_code
    if what:
        return RemoteError(f"{what}: {status.reason or 'return code'} ({code})", return_code=return_code(code))
    return RemoteError(status.reason or f"return code {code}", return_code=return_code(code))


def raise_for_status(status: Status, what: str = "") -> None:
    """Raise the RemoteError of a non-success ``status``; nothing for a success."""
    if not status.ok:
        raise remote_error(status, what)


def expect_answer(frame: Frame | None, expected: type[M], what: str = "") -> M:
    """The typed answer in ``frame`` (its Status left to the caller), or the ProtocolError /
    RemoteError (an ErrorResponse) it deserves."""
    if frame is None:
        raise ProtocolError(f"no answer where {expected.__name__} was expected")
    reply = frame.message
    if isinstance(reply, ErrorResponse):
        raise remote_error(reply.status, what)
    if not isinstance(reply, expected):
        raise ProtocolError(f"expected {expected.__name__}, got {frame.routing.message_type}")
    return reply


def expect_success(frame: Frame | None, expected: type[M], seq: int, what: str = "") -> M:
    """``expect_answer``, and the answer's Status (if it has one) acknowledges request ``seq``
    with success."""
    reply = expect_answer(frame, expected, what)
    status = getattr(reply, "status", None)
    if isinstance(status, Status):
        if status.acknowledge_id != seq:
            raise ProtocolError("AcknowledgeId does not match the request's SequenceId")
        raise_for_status(status, what)
    return reply


__all__ = ["expect_answer", "expect_success", "raise_for_status", "remote_error", "return_code"]
