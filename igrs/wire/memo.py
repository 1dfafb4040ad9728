"""``Memo``: the one bounded memo of the stack, a dict that empties itself when full.

Parsers and encoders remember pure results keyed by their exact input (peers repeat a
handful of values: header names, MAN declarations, device types, device ids). Hostile input
of ever new values must cost no more than ``limit`` entries and no more time than the work
itself, so a full memo is emptied at once instead of evicting entry by entry: a hit stays a
plain ``dict.get`` (no recency bookkeeping, unlike ``functools.lru_cache``), a miss costs one
length check more than the work. Hot paths bind ``get`` once at module level: a bound
``dict.get`` costs the same on a ``Memo`` as on a plain dict (an attribute lookup on the
subclass would not).

    _TYPES: Memo[str, DeviceType] = Memo(256)
    _type_of = _TYPES.get
    device_type = _type_of(text) or _TYPES.remember(text, DeviceType.parse(text))
"""

from __future__ import annotations

from typing import TypeVar

K = TypeVar("K")
V = TypeVar("V")


class Memo(dict[K, V]):
    """A dict of at most ``limit`` entries: ``remember`` empties it first when it is full.

    Read it as a dict (``memo.get(key)``); write it only through ``remember``."""

    __slots__ = ("limit",)

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError("a memo holds at least one entry")
        super().__init__()
        self.limit = limit

    def remember(self, key: K, value: V) -> V:
        """Store ``value`` under ``key`` (emptying the memo first when full); return ``value``."""
        if len(self) >= self.limit:
            self.clear()
        self[key] = value
        return value


__all__ = ["Memo"]
