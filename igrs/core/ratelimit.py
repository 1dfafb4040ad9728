"""Token buckets keyed by source, with a bounded number of tracked sources."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable


class KeyedRateLimiter:
    """``allow(key, now)`` spends one token from ``key``'s bucket.

    At most ``max_keys`` buckets are kept; the least recently used is evicted, so a flood
    of distinct sources cannot grow memory.
    """

    __slots__ = ("_buckets", "burst", "max_keys", "rate")

    def __init__(self, rate: float, burst: float, max_keys: int) -> None:
        self.rate = rate
        self.burst = burst
        self.max_keys = max_keys
        self._buckets: OrderedDict[Hashable, tuple[float, float]] = OrderedDict()

    def allow(self, key: Hashable, now: float, cost: float = 1.0) -> bool:
        tokens, stamp = self._buckets.pop(key, (self.burst, now))
        tokens = min(self.burst, tokens + max(0.0, now - stamp) * self.rate)
        allowed = tokens >= cost
        if allowed:
            tokens -= cost
        self._buckets[key] = (tokens, now)
        if len(self._buckets) > self.max_keys:
            self._buckets.popitem(last=False)
        return allowed

    def __len__(self) -> int:
        return len(self._buckets)
