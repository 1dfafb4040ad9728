"""Sans-IO: frame codec, decoder, session state machine, token bucket. No sockets."""

from __future__ import annotations

import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from igrs.relay import payloads
from igrs.relay.errors import RelayCode
from igrs.relay.frames import (
    FRAME,
    HEADER_SIZE,
    Flags,
    Frame,
    FrameDecoder,
    FrameError,
    FrameType,
    decode,
)
from igrs.relay.ids import Kind, Principal
from igrs.relay.limits import Limits, TokenBucket
from igrs.relay.session import ServerSession, State

frames = st.builds(
    Frame,
    type=st.sampled_from(list(FrameType)),
    id=st.integers(0, 2**64 - 1),
    flags=st.integers(0, 0xFFFF).map(Flags),
    source=st.uuids(),
    target=st.uuids(),
    payload=st.binary(max_size=300),
)


@given(frames)
def test_roundtrip(frame: Frame) -> None:
    data = frame.encode()
    assert len(data) == HEADER_SIZE + len(frame.payload)
    assert decode(data, max_payload=1024) == frame
    parsed = FRAME.parse(data)  # the construct declaration is the reference
    assert parsed.header.length == len(frame.payload) and parsed.payload == frame.payload


@given(frames)
def test_fast_path_equals_the_construct_declaration(frame: Frame) -> None:
    built = FRAME.build({"header": {
        "version": frame.version, "type": int(frame.type), "flags": int(frame.flags),
        "id": frame.id, "source": frame.source, "target": frame.target,
        "length": len(frame.payload)}, "payload": frame.payload})
    assert built == frame.encode()


@given(st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1,
               max_size=255), st.binary(max_size=100))
def test_message_fast_path_equals_declaration(ns: str, body: bytes) -> None:
    fast = payloads.encode_message(ns, body)
    assert fast == payloads.MESSAGE_BODY.build({"namespace": ns, "body": body})
    parsed = payloads.MESSAGE_BODY.parse(fast)
    assert payloads.decode_message(fast) == payloads.MessageBody(parsed.namespace, parsed.body)


@given(st.lists(frames, max_size=5), st.integers(1, 64))
def test_decoder_any_split(fs: list[Frame], chunk: int) -> None:
    data = b"".join(f.encode() for f in fs)
    dec = FrameDecoder(max_payload=1024)
    out = []
    for i in range(0, len(data), chunk):
        out.extend(dec.feed(data[i : i + chunk]))
    assert out == fs and dec.buffered == 0
    dec.at_eof()


@given(st.binary(max_size=200))
def test_decoder_never_crashes_on_garbage(data: bytes) -> None:
    dec = FrameDecoder(max_payload=64)
    try:
        list(dec.feed(data))
        dec.at_eof()
    except FrameError as e:
        assert e.code in (RelayCode.VERSION, RelayCode.BAD_FRAME, RelayCode.TOO_LARGE)


def test_oversize_is_rejected_from_the_header_alone() -> None:
    data = Frame(FrameType.MESSAGE, payload=b"x" * 100).encode()
    dec = FrameDecoder(max_payload=99)
    with pytest.raises(FrameError) as e:
        list(dec.feed(data[:HEADER_SIZE]))
    assert e.value.code == RelayCode.TOO_LARGE


def test_truncated_at_eof() -> None:
    dec = FrameDecoder(max_payload=1024)
    assert list(dec.feed(Frame(FrameType.PING, payload=b"abc").encode()[:-1])) == []
    with pytest.raises(FrameError, match="truncated"):
        dec.at_eof()


def test_message_and_multicast_payloads() -> None:
    p = payloads.encode_message("urn:x:y", b"body")
    assert payloads.decode_message(p) == payloads.MessageBody("urn:x:y", b"body")
    us = [uuid.uuid4(), uuid.uuid4()]
    targets, body = payloads.decode_multicast(payloads.encode_multicast(us, "n", b"b"))
    assert targets == us and body.body == b"b"
    with pytest.raises(FrameError):
        payloads.encode_message("bad ns with spaces", b"")
    with pytest.raises(FrameError):
        payloads.decode_message(b"\x05ab")
    assert payloads.decode_error(payloads.encode_error(429, "slow down")) == (429, "slow down")


def test_principal_ids() -> None:
    u = Principal.user()
    assert Principal.parse(str(u)) == u and str(u).startswith("urn:IGRS:User:UserId:")
    d = Principal.device()
    assert Principal.parse(str(d)) == d and d.kind is Kind.DEVICE
    assert str(d.device_id) == str(d)


def test_session_states_and_flood() -> None:
    limits = Limits(flood_rate=10, flood_burst=5, auth_timeout=1, idle_timeout=2)
    s = ServerSession(limits, now=0.0)
    ping = Frame(FrameType.PING).encode()
    assert len(s.receive(ping * 2, now=0.0)) == 2
    with pytest.raises(FrameError) as e:
        s.receive(Frame(FrameType.MESSAGE).encode(), now=0.0)
    assert e.value.code == RelayCode.NOT_AUTHENTICATED and s.state is State.CLOSED

    s = ServerSession(limits, now=0.0)
    assert s.timeout(0.5, limits) is None
    assert s.timeout(1.5, limits).code == RelayCode.TIMEOUT  # type: ignore[union-attr]
    s.authenticated(Principal.user())
    s.receive(ping, now=1.0)
    with pytest.raises(FrameError) as e:
        s.receive(Frame(FrameType.AUTH).encode(), now=1.0)
    assert e.value.code == RelayCode.BAD_FRAME
    s = ServerSession(limits, now=0.0)
    s.authenticated(Principal.user())
    assert s.timeout(1.9, limits) is None and s.timeout(2.1, limits) is not None
    with pytest.raises(FrameError) as e:
        s.receive(ping * 6, now=0.0)
    assert e.value.code == RelayCode.FLOOD
    s = ServerSession(limits, now=0.0)
    with pytest.raises(FrameError) as e:
        s.receive(Frame(FrameType.DELIVER).encode(), now=0.0)
    assert "not allowed from a client" in e.value.reason


def test_token_bucket() -> None:
    b = TokenBucket(rate=2, burst=2, now=0)
    assert b.take(0) and b.take(0) and not b.take(0)
    assert b.take(0.5) and not b.take(0.5)
