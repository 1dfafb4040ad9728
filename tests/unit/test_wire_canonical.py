"""The canonical codec of the hot messages (igrs.wire.bodies.canonical) says what lxml says.

Writer: for every message it writes, the bytes are ``etree.tostring(message.body())``; where
the general writer raises, it declines. Reader: for every input it accepts, the message is
the one ``parse_xml`` + ``parse_body`` give (the general path); where that path refuses, it
declines. Inputs: the stack's own bytes for generated messages, and those bytes mutated
(characters replaced, inserted, removed; spacing, entities, prefixes, reordering).
"""

from __future__ import annotations

import base64
import os
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lxml import etree

from igrs.errors import ProtocolError
from igrs.wire import messages
from igrs.wire.bodies import canonical
from igrs.wire.bodies import sessions as ss
from igrs.wire.bodies.pipes import SecureMessage
from igrs.wire.ids import DeviceId
from igrs.wire.messages import Status
from igrs.wire.soap import parse_envelope
from igrs.wire.xml import parse_xml

SCALE = max(1, int(os.environ.get("IGRS_PROPERTY_SCALE", "1")))  # as in test_wire_properties.py
PROFILE = settings(derandomize=True, database=None, deadline=None, max_examples=200 * SCALE,
                   suppress_health_check=[HealthCheck.too_slow])
SOURCE = DeviceId.parse("urn:IGRS:Device:DeviceId:6f1b6c2e-8d7a-4c1e-9a55-0a3f2b9c1d01")

# Mostly what the fast paths take (so they are exercised), some of what they must decline.
valid_names = st.from_regex(r"[A-Za-z_][A-Za-z0-9_.\-]{0,8}", fullmatch=True)
bad_names = st.sampled_from(["a b", "é", "", "x" * 70, "1st"])
plain = st.text(" \t\n&<>x;'\"a#", max_size=6)  # spacing and the escaped characters
odd = st.text(" x\ré\x00\x1f\ufffe", max_size=6) | st.text(max_size=8)  # for lxml alone
good_scalars = (plain | st.integers(min_value=-(2**63), max_value=2**63 - 1) | st.booleans() | st.floats()
                | st.binary(max_size=12))
odd_values = odd | st.integers() | st.lists(good_scalars, max_size=2)  # a list: the general path only
valid_uints = st.integers(min_value=1, max_value=2**32 - 1)
bad_uints = st.sampled_from([0, 2**32, -1])


def bodies(names: st.SearchStrategy[str], texts: st.SearchStrategy[str], values: st.SearchStrategy[Any],
           uints: st.SearchStrategy[int]) -> st.SearchStrategy[Any]:
    named = st.lists(st.tuples(names, values), max_size=3).map(tuple)
    requests = st.builds(ss.InvokeServiceRequest, uints, uints, uints, names, named,
                         st.none() | uints, st.none(), st.booleans())
    statuses = st.builds(Status, uints, st.sampled_from([200, 404, 500, 99]), texts)
    responses = st.builds(ss.InvokeServiceResponse, statuses, uints, uints, named)
    notifications = st.builds(ss.SendNotification, uints, uints, uints | st.just(0), named, st.booleans(),
                              texts)
    return requests | responses | notifications


canonical_ones = bodies(valid_names, plain, good_scalars, valid_uints)
hot = canonical_ones | canonical_ones | bodies(valid_names | bad_names, plain | odd, good_scalars | odd_values,
                                               valid_uints | bad_uints)

def general_write(message: Any) -> tuple[str, Any]:
    try:
        return "ok", etree.tostring(message.body())
    except (TypeError, ValueError, ProtocolError) as exc:
        return "error", type(exc).__name__


def general_read(message_type: str, data: bytes) -> tuple[str, str]:
    try:
        return "ok", repr(messages.parse_body(message_type, parse_xml(data)))  # repr: NaN == NaN
    except ProtocolError as exc:
        return "error", exc.reason


@PROFILE
@given(message=hot)
def test_the_canonical_writer_writes_what_lxml_writes(message: Any) -> None:
    fast = canonical.write(message)
    kind, general = general_write(message)
    if fast is not None:
        assert (kind, general) == ("ok", fast)
        assert messages.body_xml(message) == fast
    elif kind == "ok":
        assert messages.body_xml(message) == general


def test_the_canonical_writer_takes_the_stack_s_own_messages() -> None:
    """The shapes the stack sends every call do take the fast path (else it is no fast path)."""
    assert canonical.write(ss.InvokeServiceRequest(1, 2, 3, "Echo", (("text", "a<&>'\""), ("n", 7)), 9))
    assert canonical.write(ss.InvokeServiceResponse(Status(3), 2, 1, (("result", 1.5),)))
    assert canonical.write(ss.InvokeServiceResponse(Status(3, 404, " no such action "), 2, 1))
    assert canonical.write(ss.SendNotification(2, 5, 0, (("level", True), ("raw", b"\x00")), True, "gone"))
    assert canonical.write(ss.InvokeServiceRequest(1, 2, 3, "Echo", (("text", "\r"),))) is None  # &#13;
    assert canonical.write(ss.InvokeServiceRequest(1, 2, 3, "Echo", rpc_style=True)) is None


def mutations(data: bytes) -> st.SearchStrategy[bytes]:
    """``data`` with one edit: a byte replaced, inserted or removed, or a known variant."""
    n = len(data)
    pieces = st.sampled_from([b" ", b"\r", b"\n", b"\t", b"&", b"&#13;", b"&amp;", b"&quot;", b"<", b">",
                              b"\x00", b"\xc3\xa9", b"'", b'"', b"0", b"9", b"a", b"<x/>", b"<!-- c -->",
                              b"<![CDATA[x]]>", b"s:", b"/"])
    edits = st.tuples(st.integers(0, n), st.integers(0, 3), pieces).map(
        lambda e: data[:e[0]] + e[2] + data[e[0] + e[1]:])
    variants = st.sampled_from([
        data.replace(b"<Session ", b"<s:Session xmlns:s=\"http://www.igrs.org/spec1.0\" ").replace(
            b"</Session>", b"</s:Session>"),
        data.replace(b'name="', b"name='").replace(b'" type', b"' type"),
        data.replace(b'" type="', b'"  type="'),
        data.replace(b"<Session", b"<InvokeServiceRequest").replace(b"Session>", b"InvokeServiceRequest>"),
        data.replace(b"true", b"1"), data.replace(b"type=", b"kind="), data + b" ", b" " + data,
        data.replace(b"</SourceClientId>", b"</SourceClientId> "),
    ])
    return edits | variants


@PROFILE
@given(message=hot, data=st.data())
def test_the_canonical_reader_reads_what_lxml_reads(message: Any, data: st.DataObject) -> None:
    written = canonical.write(message)
    if written is None:
        return
    mtype = message.message_type
    for candidate in (written, data.draw(mutations(written))):
        fast = canonical.read(mtype, candidate)
        kind, general = general_read(mtype, candidate)
        if fast is not None:
            assert (kind, general) == ("ok", repr(fast)), candidate
        if kind == "ok":  # what the stack's receive path (unseal) uses
            assert repr(messages.parse_body_xml(mtype, candidate)) == general
    # the stack's own bytes take the fast path whenever the general path accepts them
    if general_read(mtype, written)[0] == "ok":
        assert canonical.read(mtype, written) is not None


@settings(PROFILE, max_examples=60 * SCALE)
@given(message=hot, other=st.sampled_from(list(canonical.READERS)))
def test_the_canonical_reader_reads_only_its_own_type(message: Any, other: str) -> None:
    written = canonical.write(message)
    if written is None or other == message.message_type:
        return
    fast = canonical.read(other, written)
    if fast is not None:
        assert general_read(other, written) == ("ok", repr(fast))


def sealed_general(body: bytes, mtype: str) -> tuple[str, str]:
    try:
        el = parse_envelope(body)
        return "ok", repr(messages.WRAPPERS[el.tag](el, mtype))  # type: ignore[index]
    except (ProtocolError, KeyError) as exc:
        return "error", str(exc)


@PROFILE
@given(pipe_id=valid_uints | bad_uints, record=st.binary(max_size=40), data=st.data())
def test_the_canonical_envelope_reader_reads_what_lxml_reads(pipe_id: int, record: bytes,
                                                            data: st.DataObject) -> None:
    sealed = SecureMessage(pipe_id, record, "InvokeServiceRequest")
    body = sealed.wire_body()
    if body is None:
        return
    _, envelope = messages.encode(sealed, source=SOURCE, target=None, sequence_id=1)
    for candidate in (envelope, data.draw(mutations(envelope))):
        fast = canonical.read_sealed(candidate, "InvokeServiceRequest")
        if fast is not None:
            assert sealed_general(candidate, "InvokeServiceRequest") == ("ok", repr(fast))
    if 0 < pipe_id < 2**32 and record:
        assert canonical.read_sealed(envelope, "InvokeServiceRequest") == sealed


def test_a_sealed_record_written_otherwise_still_parses() -> None:
    """Another writer's form (here: the Record indented) takes the general path, same result."""
    sealed = SecureMessage(7, bytes(range(60)), "InvokeServiceRequest")
    _, envelope = messages.encode(sealed, source=SOURCE, target=None, sequence_id=1)
    b64 = base64.b64encode(sealed.record)
    wrapped = envelope.replace(b64, b"\n  " + b64 + b"\n")
    assert canonical.read_sealed(wrapped, "InvokeServiceRequest") is None
    assert sealed_general(wrapped, "InvokeServiceRequest") == ("ok", repr(sealed))


BASE = canonical.write(ss.InvokeServiceRequest(1, 2, 3, "Echo", (("text", "a b"), ("n", 7)), 9))
assert BASE is not None


@pytest.mark.parametrize("edited", [
    BASE.replace(b"a b", b"a\rb"), BASE.replace(b"a b", b"a\r\nb"), BASE.replace(b"a b", b"a&#13;b"),
    BASE.replace(b"a b", b"a&quot;b"), BASE.replace(b"a b", b"<![CDATA[a b]]>"),
    BASE.replace(b"a b", b"a<!-- c -->b"), BASE.replace(b"a b", b"a]]>b"), BASE.replace(b"a b", b"a\x0bb"),
    BASE.replace(b"a b", "a\u00e9b".encode()), BASE.replace(b">7<", b"> 7 <"), BASE.replace(b">7<", b">+7<"),
    BASE.replace(b">3<", b">03<"), BASE.replace(b">3<", b">4294967296<"), BASE.replace(b">9<", b">0<"),
    BASE.replace(b'"n"', b'"text"'), BASE.replace(b"Echo", b"Ec ho"),
], ids=lambda b: repr(b[150:200]))
def test_the_canonical_reader_on_known_traps(edited: bytes) -> None:
    """Spellings whose meaning only an XML parser gets right: lxml reads them, or refuses them."""
    fast = canonical.read("InvokeServiceRequest", edited)
    if fast is not None:
        assert general_read("InvokeServiceRequest", edited) == ("ok", repr(fast))
