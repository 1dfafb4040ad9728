"""The HTTP/1.1 codec's fast paths read exactly what its general parser reads.

``_split_common`` splits a head in the form the stack writes (igrs/wire/http11.py) and
``ResponseReader._read_whole`` takes an answer that arrives whole in one piece; both decline
everything else to the general code. Checked here: the stack's own heads take the fast path,
and on those heads changed the ways peers and fuzzers change them, the fast path gives the
general parser's result or declines, and the public functions give the same value or the
same error as the general parser alone.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from head_mutations import Mutations, mutate
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from igrs.constants import HTTP_MAX_HEADER_FIELDS, HTTP_MAX_LINE
from igrs.errors import LimitExceeded, ProtocolError
from igrs.net.httpserver import HttpAnswer, serialize
from igrs.wire import http11, messages
from igrs.wire.http11 import BadResponse, ResponseReader
from igrs.wire.ids import DeviceId
from igrs.wire.messages import Status

PROFILE = settings(derandomize=True, database=None, deadline=None, max_examples=600,
                   suppress_health_check=[HealthCheck.too_slow])
D1, D2 = DeviceId.new(), DeviceId.new()
MESSAGES = [
    messages.GetDeviceDescriptionRequest(),
    messages.GetDeviceDescriptionResponse(Status(7, 200, "OK")),
    messages.ErrorResponse(Status(3, 404, "no such pipe")),
]


def request_head(i: int, target: DeviceId | None = D2) -> bytes:
    headers, body = messages.encode(MESSAGES[i % len(MESSAGES)], source=D1, target=target, sequence_id=i + 1)
    data = http11.request_bytes("M-POST", "/IGRS", "127.0.0.1:3880", headers, body)
    return data[:http11.find_head_end(data)]


def answer(i: int, keep_alive: bool = True, minor: int = 1) -> bytes:
    """An answer as the stack's server writes it (head and body)."""
    headers, body = messages.encode(MESSAGES[i % len(MESSAGES)], source=D2, target=D1, sequence_id=i + 1)
    head = http11.parse_request_head(request_head(i).replace(b"HTTP/1.1", f"HTTP/1.{minor}".encode(), 1))
    return serialize(HttpAnswer(200, headers, body), head, keep_alive)


STACK_HEADS = [request_head(i) for i in range(3)] + [request_head(0, None)] + [
    a[:http11.find_head_end(a)] for i in range(3) for a in (answer(i), answer(i, False), answer(i, True, 0))]


def outcome(fn: Callable[[bytes], Any], raw: bytes) -> tuple[str, Any]:
    try:
        result = fn(raw)
    except ProtocolError as exc:
        return type(exc).__name__, getattr(exc, "status", None), exc.reason
    return "ok", _plain(result)


def _plain(value: Any) -> Any:
    """Headers (and tuples holding them) as comparable values: items and index."""
    if isinstance(value, tuple):
        return tuple(_plain(v) for v in value)
    if isinstance(value, http11.Headers):
        return list(value), value._index
    if isinstance(value, http11.RequestHead):
        return (value.method, value.target, value.minor, _plain(value.headers), value.content_length,
                value.transfer_encoding, value.keep_alive, value.expect_continue)
    return value


@pytest.mark.parametrize("raw", STACK_HEADS)
def test_the_stack_s_own_heads_take_the_fast_path(raw: bytes) -> None:
    fast = http11._split_common(raw)
    assert fast is not None, raw
    assert _plain(fast) == _plain(http11._split_general(raw))


HTTP_MUTATIONS = Mutations(
    starts=("M-POST /IGRS HTTP/1.0", "GET / HTTP/2.0", "HTTP/1.1 204 No Content", "HTTP/1.0 200 OK",
            "HTTP/1.1 200", "M-POST  /IGRS HTTP/1.1", "", "HTTP/1.1 200 OK ", "POST /IGRS HTTP/1.1"),
    unknown=("X-Foo: 1", "Content-Length: 12", "Connection: close", "Transfer-Encoding: chunked",
             "Expect: 100-continue", "Connection: keep-alive, Upgrade", "Content-Length: 1x"),
    value_chars=("a", "1", " ", ":", "-", ",", "é", "\x01", "\t"),
    noise=(" ", "  ", "\t", "\r", "\n", "\x00", "\x7f", ":", ": ", "é", "::", "a", "", "\r\n", "\r\n ",
           "\r\r\n", "\n\r"),
    default_line="Host: x",
    extra_ops=("many", "long", "fold", "empty"),
)


def _http_extra(draw: st.DrawFn, op: str, start: str, lines: list[str], i: int) -> None:
    """The limits (field count, line length), obsolete line folding, empty values."""
    name = lines[i].partition(": ")[0]
    if op == "many":
        lines += ["Ext: "] * (HTTP_MAX_HEADER_FIELDS + draw(st.integers(-2, 2)) - len(lines))
    elif op == "long":
        lines[i] = f"{name}: " + "v" * (HTTP_MAX_LINE + draw(st.integers(-len(name) - 4, 2)))
    elif op == "fold":
        lines.insert(i + 1, " folded")
    elif op == "empty":
        lines[i] = f"{name}: "


@st.composite
def mutated_heads(draw: st.DrawFn) -> bytes:
    """A head the stack writes, changed the ways peers and fuzzers change them."""
    return mutate(draw, draw(st.sampled_from(STACK_HEADS)), HTTP_MUTATIONS, _http_extra)


@PROFILE
@given(raw=mutated_heads())
def test_the_fast_split_is_the_general_split_or_declines(raw: bytes) -> None:
    fast = http11._split_common(raw)  # never raises: None sends the head to the general parser
    assert fast is None or outcome(http11._split_general, raw) == ("ok", _plain(fast))
    assert outcome(http11._split_head, raw) == outcome(http11._split_general, raw)
    general = http11._split_common
    try:
        http11._split_common = lambda _raw: None  # type: ignore[assignment]
        expected = outcome(http11.parse_request_head, raw), outcome(http11._parse_response_head, raw)
    finally:
        http11._split_common = general  # type: ignore[assignment]
    assert (outcome(http11.parse_request_head, raw), outcome(http11._parse_response_head, raw)) == expected


@pytest.mark.parametrize("change, taken", [
    (lambda d: d, True),
    (lambda d: d.replace(b"MAN: ", b"man: "), False),
    (lambda d: d.replace(b"Host: ", b"Host:  "), True),  # the general parser strips it too
    (lambda d: d.replace(b"\r\n\r\n", b"\r\nX-Extra: 1\r\n\r\n"), False),
    (lambda d: d.replace(b"Host: ", b"Host: \x01"), False),
    (lambda d: d.replace(b"Host: ", b"Host:\t"), False),
    (lambda d: d.replace(b"\r\n", b"\n"), False),
    (lambda d: d.replace(b"Host: ", "Host: é".encode()), False),
])
def test_fast_split_examples(change: Callable[[bytes], bytes], taken: bool) -> None:
    raw = change(STACK_HEADS[0])
    assert (http11._split_common(raw) is not None) is taken
    assert outcome(http11._split_head, raw) == outcome(http11._split_general, raw)


# --- the whole answer in one piece ------------------------------------------------------------
def read(data: bytes, pieces: int, max_body: int = 4096) -> object:
    """The reader's result for ``data`` fed in ``pieces`` (1: whole; 0: byte by byte)."""
    reader = ResponseReader(max_body)
    size = len(data) if pieces == 1 else 1 if pieces == 0 else max(1, len(data) // pieces)
    try:
        for pos in range(0, len(data), size):
            response = reader.feed(data[pos:pos + size])
            if response is not None:
                # bytes after the answer: not kept alive (those of the same piece) or unused
                whole = pos + size >= len(data)
                return response.status, _plain(response.headers), response.body, response.keep_alive and whole
        return reader.feed_eof().body
    except (BadResponse, LimitExceeded) as exc:
        return type(exc).__name__, exc.reason


ANSWERS = [answer(i, keep_alive, minor) for i in range(3) for keep_alive in (True, False) for minor in (0, 1)]


@pytest.mark.parametrize("data", ANSWERS)
def test_the_stack_s_answers_are_read_whole(data: bytes) -> None:
    reader = ResponseReader(4096)
    response = reader._read_whole(data)
    assert response is not None
    assert read(data, 1) == read(data, 0) == read(data, 3)
    with pytest.raises(BadResponse, match="bytes after the end"):
        reader.feed(b"x")


@st.composite
def mutated_answers(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(ANSWERS)))
    for _ in range(draw(st.integers(0, 3))):
        i = draw(st.integers(0, len(data)))
        kind = draw(st.sampled_from(["flip", "cut", "insert", "append"]))
        if kind == "flip" and i < len(data):
            data[i] ^= draw(st.integers(1, 255))
        elif kind == "cut":
            del data[i:i + draw(st.integers(1, 40))]
        elif kind == "append":
            data += draw(st.sampled_from([b"x", b"HTTP/1.1 200 OK\r\n\r\n", b"\r\n"]))
        else:
            data[i:i] = draw(st.sampled_from([
                b"\r\n", b"\n", b"1", b"0", b";", b":", b"\x00", b"Transfer-Encoding: chunked\r\n",
                b"HTTP/1.1 100 Continue\r\n\r\n", b"Content-Length: 5\r\n"]))
    return bytes(data)


@PROFILE
@given(data=mutated_answers(), max_body=st.sampled_from([4096, 600, 10]))
def test_an_answer_read_whole_is_read_as_in_pieces(data: bytes, max_body: int) -> None:
    whole = read(data, 1, max_body)
    assert whole == read(data, 2, max_body) == read(data, 7, max_body)
