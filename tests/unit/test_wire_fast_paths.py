"""The discovery codec's fast paths accept and refuse exactly what the general code does.

``isdp.decode`` takes shortcuts for the common case (benchmarks/bench_discovery.py, part a):
header lines free of control characters, canonical lower-case device ids, plain http(s)
LOCATIONs, ASCII percent-encoded names, and small memos of repeated values. Each is checked
here against the general code it stands in for: same value, or same ProtocolError reason.
"""

from __future__ import annotations

import os
import pickle
import re
import uuid
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote

import pytest
from head_mutations import Mutations, mutate
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from igrs.constants import MAX_DATAGRAM, MAX_HEADER_LINE, MAX_HEADERS
from igrs.errors import LimitExceeded, ProtocolError
from igrs.wire import httpu, isdp
from igrs.wire.ids import DeviceId, DeviceType
from igrs.wire.memo import Memo

SCALE = max(1, int(os.environ.get("IGRS_PROPERTY_SCALE", "1")))  # as in test_wire_properties.py
PROFILE = settings(derandomize=True, database=None, deadline=None, max_examples=300 * SCALE,
                   suppress_health_check=[HealthCheck.too_slow])
HOST = "224.0.0.110:3880"
D1 = DeviceId.parse("urn:IGRS:Device:DeviceId:6f1b6c2e-8d7a-4c1e-9a55-0a3f2b9c1d01")
TV = DeviceType("TV", 1)


def outcome(fn: Callable[[Any], Any], arg: Any) -> tuple[str, Any]:
    try:
        return "ok", fn(arg)
    except ProtocolError as exc:
        return type(exc).__name__, exc.reason


# --- device ids --------------------------------------------------------------------------------
prefixes = st.sampled_from(
    ["urn:IGRS:Device:DeviceId:", "URN:igrs:device:deviceid:", "urn:igrs:Device:DEVICEID:"]
)


@PROFILE
@given(u=st.uuids(), prefix=prefixes)
def test_canonical_device_id_is_the_uuid_parse(u: uuid.UUID, prefix: str) -> None:
    fast = DeviceId.parse(prefix + str(u))
    general = DeviceId(uuid.UUID(str(u)))
    assert fast == general and not fast < general and hash(fast) == hash(general)
    assert str(fast) == str(general) == f"urn:IGRS:Device:DeviceId:{u}"
    assert repr(fast) == repr(general)
    assert fast.uuid == u and fast.uuid.int == u.int and fast.uuid.version == u.version
    assert fast.uuid.is_safe == general.uuid.is_safe
    assert pickle.loads(pickle.dumps(fast)) == fast


@PROFILE
@given(u=st.uuids(), form=st.sampled_from(["upper", "braces", "hex", "urn", "mixed"]))
def test_other_uuid_forms_are_still_read(u: uuid.UUID, form: str) -> None:
    text = {"upper": str(u).upper(), "braces": f"{{{u}}}", "hex": u.hex, "urn": u.urn,
            "mixed": str(u)[:9].upper() + str(u)[9:]}[form]
    parsed = DeviceId.parse("urn:IGRS:Device:DeviceId:" + text)
    assert parsed == DeviceId(u) and str(parsed) == f"urn:IGRS:Device:DeviceId:{u}"


@pytest.mark.parametrize("rest", ["6f1b6c2e-8d7a-4c1e-9a55-0a3f2b9c1d0", "6f1b6c2e-8d7a-4c1e-9a55-0a3f2b9c1d0g",
                                  "6f1b6c2e-8d7a-4c1e-9a55-0a3f2b9c1d011", "", " -8d7a-4c1e-9a55-0a3f2b9c1d01"])
def test_malformed_uuids_are_refused(rest: str) -> None:
    with pytest.raises(ProtocolError, match="device id has no valid UUID"):
        DeviceId.parse("urn:IGRS:Device:DeviceId:" + rest)


# --- LOCATION ----------------------------------------------------------------------------------
def general_location(value: str) -> str:
    reason = isdp._valid_location.__wrapped__(value)
    if reason is not None:
        raise ProtocolError(reason)
    return value


url_like = st.from_regex(
    r"(?i:https?|ftp|)(://|:/|//|:)?(\w+@)?([a-z0-9._~%-]{0,12}|\[[0-9a-f:.]{0,12}\]?)(:[0-9 +]{0,7})?"
    r"([/?#][ -~\t]{0,12})?",
    fullmatch=True,
)


@pytest.mark.parametrize("value", [
    "http://192.168.1.20:3880/IGRS", "https://tv.local/IGRS", "http://h", "http://h:1", "http://h:65535/",
    "http://h:0/", "http://h:00000/", "http://h:65536/", "http://h:99999/", "http://h:/", "http://:80/",
    "HTTP://h/", "ftp://h/", "http://[fe80::1]:80/", "http://[fe80::1/", "http://a@b/", "http://h:080/",
    "http://h/a b\tc", "http://h?x", "http://h#x", "http://-/", "http://h:8 0/", "http://" + "a" * 600,
])
def test_location_examples(value: str) -> None:
    assert outcome(isdp._location, value) == outcome(general_location, value)


@PROFILE
@given(value=url_like)
def test_location_fast_path_agrees_with_urlsplit(value: str) -> None:
    assert outcome(isdp._location, value) == outcome(general_location, value)


# --- percent-decoded names -----------------------------------------------------------------
escaped = st.lists(
    st.one_of(
        st.characters(codec="utf-8").map(lambda c: "".join(f"%{b:02X}" for b in c.encode())),
        st.binary(min_size=1, max_size=3).map(lambda b: "".join(f"%{x:02x}" for x in b)),
        st.sampled_from(["%", "%4", "%zz", "%%41", "%2541", " ", "a"]),
        st.characters(codec="utf-8"),
    ),
    max_size=12,
).map("".join)


def unquote_outcome(fn: Callable[[str], str], text: str) -> tuple[str, str]:
    try:
        return "ok", fn(text)
    except UnicodeDecodeError as exc:
        return "error", str(exc)


@PROFILE
@given(text=escaped)
def test_unquote_is_the_stdlib_unquote(text: str) -> None:
    assert unquote_outcome(isdp._unquote, text) == unquote_outcome(
        lambda t: unquote(t, errors="strict"), text
    )


# --- header lines -----------------------------------------------------------------------------
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+\Z")
_CTL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


def reference_parse_head(raw: bytes) -> tuple[str, list[tuple[str, str]], dict[str, list[str]]]:
    """The header parser before the fast path: every line checked on its own."""
    raw_lines = raw.split(b"\n")
    if len(raw_lines) - 1 > MAX_HEADERS:
        raise LimitExceeded(f"more than {MAX_HEADERS} header lines")
    lengths = [len(line) - line.endswith(b"\r") for line in raw_lines]
    if lengths[0] > MAX_HEADER_LINE:
        raise LimitExceeded("start line too long")
    if max(lengths) > MAX_HEADER_LINE:
        raise LimitExceeded(f"header line longer than {MAX_HEADER_LINE} bytes")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ProtocolError(f"not UTF-8 at byte {exc.start}") from None
    lines = text.replace("\r\n", "\n").split("\n")
    items: list[tuple[str, str]] = []
    index: dict[str, list[str]] = {}
    for line in lines[1:]:
        if not line:
            continue
        if line[0] in " \t":
            raise ProtocolError("obsolete header line folding")
        name, sep, value = line.partition(":")
        if not sep or not _TOKEN.match(name):
            raise ProtocolError(f"malformed header line: {line[:40]!r}")
        if _CTL.search(value):
            raise ProtocolError(f"control character in header {name}")
        value = value.strip()
        items.append((name, value))
        index.setdefault(name.lower(), []).append(value)
    return lines[0], items, index


def fast_parse_head(raw: bytes) -> tuple[str, list[tuple[str, str]], dict[str, list[str]]]:
    start, headers = httpu.parse_head(raw)
    return start, list(headers), headers._index


_pieces = st.sampled_from(["HOST", "NT", "nts", "USN", "01-DeviceName", "x", ":", ": ", " ", "\t", "\r", "\x01",
                           "\x0b", "\x1c", "\x7f", "\x85", "\xa0", "\u3000", "é", "名", "(", "@", "%41", "-"])
header_lines = st.lists(_pieces, max_size=6).map("".join)
heads = st.builds(
    lambda start, lines, eol: (start + eol + eol.join(lines)).encode(),
    st.sampled_from(["NOTIFY * HTTP/1.1", "HTTP/1.1 200 O\x01K", "M-SEARCH * HTTP/1.1"]),
    st.lists(header_lines, max_size=8),
    st.sampled_from(["\r\n", "\n", "\r\r\n"]),
)


@PROFILE
@given(raw=heads)
def test_parse_head_is_the_line_by_line_parser(raw: bytes) -> None:
    assert outcome(fast_parse_head, raw) == outcome(reference_parse_head, raw)


@pytest.mark.parametrize("raw, reason", [
    (b"NOTIFY * HTTP/1.1\r\nHOST: a\x01\r\nbad line\r\n", "control character in header HOST"),
    (b"NOTIFY * HTTP/1.1\r\nbad line\r\nHOST: a\x01\r\n", "malformed header line"),
    (b"NOTIFY * HTTP/1.1\r\nHOST: a\rb\r\n", "control character in header HOST"),
    (b"NOTIFY * HTTP/1.1\r\n HOST: a\r\n", "obsolete header line folding"),
    (b"NOTIFY * HTTP/1.1\r\nHOST\r\n", "malformed header line"),
    (b"NOTIFY * HTTP/1.1\r\nHO ST: a\r\n", "malformed header line"),
])
def test_header_line_reasons(raw: bytes, reason: str) -> None:
    httpu.parse_head(b"NOTIFY * HTTP/1.1\r\nHOST: a\r\n")  # "HOST" now a known name
    with pytest.raises(ProtocolError, match=re.escape(reason)):
        httpu.parse_head(raw)
    assert outcome(fast_parse_head, raw) == outcome(reference_parse_head, raw)


# --- headers read once --------------------------------------------------------------------------
NOTIFY = isdp.encode(
    isdp.DeviceOnlineAdvertisement(D1, TV, "http://192.168.1.20:3880/IGRS", 1800, "TV"), host=HOST
)


def with_lines(datagram: bytes, change: Callable[[list[bytes]], list[bytes]]) -> bytes:
    head, _, _ = datagram.partition(b"\r\n\r\n")
    return b"\r\n".join(change(head.split(b"\r\n"))) + b"\r\n\r\n"


@pytest.mark.parametrize("name", [b"USN", b"NT", b"NTS", b"LOCATION", b"CACHE-CONTROL", b"01-DeviceName"])
def test_a_header_repeated_in_another_case_is_refused(name: bytes) -> None:
    def repeat(lines: list[bytes]) -> list[bytes]:
        line = next(x for x in lines if x.startswith(name + b":"))
        return [*lines, name.lower() + line[len(name):]]

    with pytest.raises(ProtocolError, match="repeated"):
        isdp.decode(with_lines(NOTIFY, repeat))


def test_headers_in_any_case_decode_alike() -> None:
    def lower_names(lines: list[bytes]) -> list[bytes]:
        return [lines[0], *(n.lower() + b":" + v for n, _, v in (x.partition(b":") for x in lines[1:]))]

    assert isdp.decode(with_lines(NOTIFY, lower_names)) == isdp.decode(NOTIFY)


# --- memos ----------------------------------------------------------------------------------------
def test_memos_stay_bounded() -> None:
    for i in range(3 * isdp._MEMO_MAX):
        msg = isdp.SearchDeviceResponse(D1, DeviceType(f"T{i}", 1), "http://10.0.0.1/", 100 + i,
                                        isdp.SearchTarget("device_type", device_type=DeviceType(f"T{i}", 1)))
        data = isdp.encode(msg, host="").replace(b"EXT:", f"X-{i}:".encode())  # new names, start lines
        data = data.replace(b"HTTP/1.1 200 OK", f"HTTP/1.1 200 OK{i}".encode())
        assert isdp.decode(data) == msg
        assert isdp._device_type(f"urn:IGRS:DeviceType:T{i}:1") == DeviceType(f"T{i}", 1)
    for memo in (isdp._DEVICE_TYPES, isdp._MAX_AGES, isdp._TARGETS):
        assert 0 < len(memo) <= isdp._MEMO_MAX
    assert 0 < len(httpu._START_LINES) <= httpu._MEMO_MAX
    assert 0 < len(httpu._NAME_KEYS) <= httpu._NAME_KEYS.limit


def test_memo_empties_itself_when_full() -> None:
    memo: Memo[str, int] = Memo(3)
    assert [memo.remember(k, v) for k, v in (("a", 1), ("b", 2), ("c", 3))] == [1, 2, 3]
    assert memo.get("a") == 1 and len(memo) == 3
    assert memo.remember("d", 4) == 4  # full: emptied first, then stored
    assert dict(memo) == {"d": 4}
    with pytest.raises(ValueError):
        Memo(0)


# --- the common wire form (isdp._decode_common) ---------------------------------------------------
def general_decode(data: bytes) -> isdp.IsdpMessage:
    """The general decoder alone: header parser, then isdp._decode (as _decode_cached calls it)."""
    try:
        method, target, status, _, _, headers, _ = httpu.parse_parts(
            data, max_size=MAX_DATAGRAM, allow_body=False
        )
        return isdp._decode(method, target, status, headers)
    except ProtocolError:
        raise
    except (ValueError, UnicodeError) as exc:
        raise ProtocolError(f"malformed datagram: {exc}") from None


device_ids = st.uuids().map(DeviceId)
device_types = st.builds(DeviceType, st.sampled_from(["TV", "PC", "MediaServer", "X-1"]), st.integers(1, 3))
names = st.one_of(st.just(""), st.sampled_from(["TV", "Living room TV", "客厅 TV", "a:b", "x%y", "a  b"]),
                  st.text(st.characters(codec="utf-8", exclude_categories=["Cc", "Cs"]), max_size=20)
                  .filter(lambda n: n == n.strip() and n.isprintable()))
locations = st.sampled_from(["http://192.168.1.20:3880/IGRS", "https://tv.local/IGRS", "http://h:65535/a b",
                             "http://[fe80::1]:80/", "http://h/x?y#z"])
targets = st.one_of(st.just(isdp.SearchTarget.all()),
                    device_types.map(lambda t: isdp.SearchTarget("device_type", device_type=t)),
                    device_ids.map(lambda d: isdp.SearchTarget("device", device_id=d)))
device_messages = st.one_of(
    st.builds(isdp.DeviceOnlineAdvertisement, device_ids, device_types, locations, st.integers(60, 86400),
              names, update=st.booleans()),
    st.builds(isdp.DeviceOfflineAdvertisement, device_ids, device_types),
    st.builds(isdp.SearchDeviceRequest, targets, st.integers(1, 5), st.one_of(st.none(), device_ids)),
    st.builds(isdp.SearchDeviceResponse, device_ids, device_types, locations, st.integers(60, 86400), targets,
              names, st.one_of(st.none(), device_ids)),
)


def encoded(msg: isdp.IsdpMessage) -> bytes:
    return isdp.encode(msg, host="" if isinstance(msg, isdp.SearchDeviceResponse) else HOST)


@PROFILE
@given(msg=device_messages)
def test_common_form_is_what_the_encoder_writes(msg: isdp.IsdpMessage) -> None:
    data = encoded(msg)
    fast = isdp._decode_common(data)
    assert fast is not None, data  # the fast path is taken for every device datagram the stack sends
    general = general_decode(data)
    assert fast == general and repr(fast) == repr(general) and hash(fast) == hash(general)


ISDP_MUTATIONS = Mutations(
    starts=("NOTIFY * HTTP/1.1", "M-SEARCH * HTTP/1.1", "HTTP/1.1 200 OK", "NOTIFY / HTTP/1.1",
            "HTTP/1.1 404 Not Found", "HTTP/1.0 200 OK"),
    unknown=("X-Foo: 1", "Content-Length: 0", "Content-Length: 3", "02-DeviceName: x", "01-ServiceId: 3"),
    value_chars=("a", "1", " ", ":", "-", "%", "é", "\x01"),
    noise=(" ", "  ", "\t", "\r", "\n", "\x00", "\x7f", ":", ": ", "é", "%", "::", '"', "a", ""),
    default_line="HOST: x",
    extra_ops=("body", "man", "ext"),
)


def _isdp_extra(draw: st.DrawFn, op: str, start: str, lines: list[str], i: int) -> bytes | None:
    """A body after the head, and the MAN and extension lines of other IGRS messages."""
    if op == "body":
        return ("\r\n".join([start, *lines]) + "\r\n\r\nxyz").encode()
    if op == "man":
        lines.append(draw(st.sampled_from(['MAN: "http://www.igrs.org/spec1.0"; ns=02', 'MAN: "isdp:discover"',
                                           'MAN: "http://www.igrs.org/session"; ns=01'])))
    elif op == "ext":
        lines.append(draw(st.sampled_from(["01-IGRSVersion: IGRS/1.1", "01-IGRSVersion: IGRS/2.0",
                                           "01-IGRSMessageType: SearchServiceRequest",
                                           "01-IGRSMessageType: DeviceOfflineAdvertisement"])))
    return None


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    """A datagram the stack sends, changed the ways peers and fuzzers change them."""
    return mutate(draw, encoded(draw(device_messages)), ISDP_MUTATIONS, _isdp_extra)


@settings(PROFILE, max_examples=1500 * SCALE)
@given(data=mutated())
def test_common_form_decodes_as_the_general_path(data: bytes) -> None:
    fast = isdp._decode_common(data)  # never raises: None sends the datagram to the general path
    assert fast is None or outcome(general_decode, data) == ("ok", fast)
    assert outcome(isdp.decode, data) == outcome(general_decode, data)


@pytest.mark.parametrize("change, taken", [
    (lambda d: d, True),
    (lambda d: d.replace(b"NTS: isdp:alive", b"NTS: ISDP:ALIVE"), False),
    (lambda d: d.replace(b"LOCATION: ", b"LOCATION:  "), True),  # stripped where read
    (lambda d: d.replace(b"\r\n\r\n", b"\r\nX-Extra: 1\r\n\r\n"), False),
    (lambda d: d.replace(b"HOST: ", b"HOST: \x01"), False),
    (lambda d: d.replace(b"\r\n\r\n", b"\r\n\r\nbody"), False),
])
def test_common_form_examples(change: Callable[[bytes], bytes], taken: bool) -> None:
    data = change(NOTIFY)
    assert (isdp._decode_common(data) is not None) is taken
    assert outcome(isdp.decode, data) == outcome(general_decode, data)


# --- the search response in the encoder's layout (isdp._layout_response) --------------------------
PLAIN_LOCATIONS = ("http://192.168.1.20:3880/IGRS", "https://tv.local/IGRS", "http://h/x?y#z")


@PROFILE
@given(msg=device_messages)
def test_layout_takes_every_full_search_response_the_encoder_writes(msg: isdp.IsdpMessage) -> None:
    text = encoded(msg).decode()
    layout = isdp._layout_response(text)
    if isinstance(msg, isdp.SearchDeviceResponse) and msg.location in PLAIN_LOCATIONS:
        assert layout is not None, text
    if layout is not None:
        general = general_decode(text.encode())
        assert layout == general and repr(layout) == repr(general) and layout.server == general.server
    # the compact answer has another layout: the dict path reads it
    if isinstance(msg, isdp.SearchDeviceResponse):
        assert isdp._layout_response(isdp.encode(msg, host="", compact=True).decode()) is None


@settings(PROFILE, max_examples=1500 * SCALE)
@given(data=mutated())
def test_layout_decodes_as_the_general_path(data: bytes) -> None:
    layout = isdp._layout_response(data.decode("utf-8", "surrogatepass")) if data.isascii() else None
    assert layout is None or outcome(general_decode, data) == ("ok", layout)


RESPONSE = isdp.encode(isdp.SearchDeviceResponse(D1, TV, "http://192.168.1.20:3880/IGRS", 1800,
                                                 isdp.SearchTarget.all(), "Hall TV", D1), host="")


@pytest.mark.parametrize("change, taken", [
    (lambda d: d, True),
    (lambda d: d.replace(b":3880/", b":65535/"), True),
    (lambda d: d.replace(b":3880/", b":65536/"), False),  # not a port: refused by the general path
    (lambda d: d.replace(b":3880/", b":03880/"), False),  # leading zero: the dict path reads it
    (lambda d: d.replace(b":3880/", b":0/"), False),
    (lambda d: d.replace(b"/IGRS", b"/" + b"x" * 600), False),  # LOCATION too long
    (lambda d: d.replace(b"Hall TV", b"Hall%20TV"), True),
    (lambda d: d.replace(b"Hall TV", b"Hall%ZZ"), True),  # no escape: the name as written
    (lambda d: d.replace(b"Hall TV", b"Hall%C3"), False),  # not UTF-8: refused
    (lambda d: d.replace(b"Hall TV", b"H" * 200), False),  # name too long: refused
    (lambda d: d.replace(b"Hall TV", b"Hall TV "), False),
    (lambda d: d.replace(b"DeviceId:6f1b", b"DeviceId:6F1B"), False),
    (lambda d: d.replace(b"ST: isdp:all", b"ST: isdp:nothing"), False),
    (lambda d: d.replace(b"IGRS/1.0\r\n01", b"IGRS/1.1\r\n01"), False),
])
def test_layout_examples(change: Callable[[bytes], bytes], taken: bool) -> None:
    data = change(RESPONSE)
    assert (isdp._layout_response(data.decode()) is not None) is taken
    assert outcome(isdp.decode, data) == outcome(general_decode, data)
