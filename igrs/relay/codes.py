"""Device verification codes: the minimum strength and the key stretching.

A code is printed on the device or shown on its screen and typed by the owner at ``bind``
(5-9 §2.5). It can only be tested online, against the bind guard
(:mod:`igrs.relay.guard`: 5 tries, then a lock-out of 30 s doubling to 1 h), so a modest
code suffices: the weakest accepted one (6 digits, about 10^6 values) needs on average
more than ten years of guessing at the guard's steady state of 5 tries an hour.

Stored as PBKDF2-SHA256 with a random salt, computed off the event loop by the caller
(:meth:`igrs.relay.directory.Directory.stretch`).
"""

from __future__ import annotations

import hashlib
import itertools
import secrets

from igrs.relay.errors import RelayCode, RelayError

MIN_CODE_LENGTH = 6
MAX_CODE_LENGTH = 64
MIN_DISTINCT = 3
PBKDF2_ITERATIONS = 10_000
SALT_BYTES = 16


def check_strength(code: str) -> None:
    """Refuse (400) a code an owner could not rely on: too short or long, not printable,
    fewer than 3 distinct characters (``000000``, ``121212``) or a straight run
    (``123456``, ``654321``, ``abcdef``)."""
    if not MIN_CODE_LENGTH <= len(code) <= MAX_CODE_LENGTH or not code.isprintable():
        raise RelayError(RelayCode.BAD_FRAME, f"verification code must be {MIN_CODE_LENGTH}-"
                                              f"{MAX_CODE_LENGTH} printable characters")
    if len(set(code)) < MIN_DISTINCT:
        raise RelayError(RelayCode.BAD_FRAME,
                         f"verification code needs at least {MIN_DISTINCT} different characters")
    steps = {ord(b) - ord(a) for a, b in itertools.pairwise(code)}
    if steps in ({1}, {-1}):
        raise RelayError(RelayCode.BAD_FRAME, "verification code must not be a straight run")


def new_salt() -> str:
    return secrets.token_hex(SALT_BYTES)


def stretch(code: str, salt: str) -> str:
    """PBKDF2-SHA256 of the code (hex). CPU-bound for milliseconds: run it in an executor."""
    return hashlib.pbkdf2_hmac("sha256", code.encode(), bytes.fromhex(salt),
                               PBKDF2_ITERATIONS).hex()
