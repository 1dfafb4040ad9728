"""``base64.b64decode(data, validate=True)`` without its regular expression.

The standard function checks the alphabet with ``re.fullmatch`` before decoding: about as
much work as the decoding itself for a sealed record (benchmarks/README.md, bench_core).
``binascii.a2b_base64(data, strict_mode=True)`` (C, Python 3.11+) accepts and refuses the
same inputs and gives the same bytes; tests/unit/test_strict_base64.py checks it on every
short string over a small alphabet and on generated ones.
"""

from __future__ import annotations

import binascii


def decode(data: bytes | str) -> bytes:
    """The bytes of strict base64 (no whitespace, padding only at the end); ``binascii.Error``
    otherwise, ``ValueError`` for a non-ASCII str -- as ``b64decode(validate=True)``."""
    return binascii.a2b_base64(data, strict_mode=True)


__all__ = ["decode"]
