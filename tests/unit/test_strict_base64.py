"""igrs.wire.strict_base64.decode is base64.b64decode(validate=True): same bytes, same refusals."""

from __future__ import annotations

import base64
import binascii
import itertools

from hypothesis import given
from hypothesis import strategies as st

from igrs.wire import strict_base64


def _both(data: bytes | str) -> tuple[object, object]:
    def run(decode: object) -> object:
        try:
            return decode(data)  # type: ignore[operator]
        except binascii.Error:
            return binascii.Error
        except ValueError:
            return ValueError

    return run(lambda d: base64.b64decode(d, validate=True)), run(strict_base64.decode)


def test_every_short_string_over_a_small_alphabet() -> None:
    # letters of every role: two data values, the two non-letter symbols, padding, whitespace, a stranger
    checked = refused = 0
    for n in range(7):
        for chars in itertools.product(b"AQ+/= -", repeat=n):
            expected, got = _both(bytes(chars))
            assert got == expected, bytes(chars)
            checked += 1
            refused += expected is binascii.Error
    assert refused and refused < checked  # both outcomes were exercised


@given(st.binary(max_size=200))
def test_encodings_decode_to_their_bytes(raw: bytes) -> None:
    encoded = base64.b64encode(raw)
    assert _both(encoded) == (raw, raw)
    assert _both(encoded.decode("ascii")) == (raw, raw)


@given(st.binary(max_size=60), st.integers(min_value=0, max_value=90),
       st.sampled_from(b"=\n\r \t-_.:A\x00\xff"))
def test_mutated_encodings_agree(raw: bytes, where: int, byte: int) -> None:
    encoded = bytearray(base64.b64encode(raw))
    at = min(where, len(encoded))
    inserted = bytes(encoded[:at] + bytes([byte]) + encoded[at:])
    replaced = bytes(encoded[:at] + bytes([byte]) + encoded[at + 1:])
    truncated = bytes(encoded[:at])
    for data in (inserted, replaced, truncated):
        expected, got = _both(data)
        assert got == expected, data


@given(st.text(max_size=40))
def test_text_agrees(text: str) -> None:
    expected, got = _both(text)
    assert got == expected, text
