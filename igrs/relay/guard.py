"""Attempt limits of the relay's account server (specs/relay.md "Limits").

* :class:`BindGuard` - online guessing of a device verification code. The PIN guard of
  pairing (:class:`igrs.core.security.pairing.PairingGuard`, specs/security.md §4.5: a
  lock-out after N failures that doubles each time) kept per **device**, per **account**
  and per **source address**, so neither reconnecting nor registering new accounts nor
  spreading guesses over devices escapes it. An attempt counts from the moment it is
  accepted: concurrent guesses cannot overrun the limit while the key stretching runs.
* :class:`AddressBuckets` - a token bucket per source address (registration rate).
* :class:`AddressSlots` - a count of held slots per source address (pre-auth connections).

Source addresses are keyed by :func:`address_key`: an IPv4 address, or the /64 of an IPv6
one (one host owns a whole /64). Every table is bounded; time comes in as ``now``.
"""

from __future__ import annotations

import collections
import ipaddress
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Any

from igrs.core.security.pairing import DEFAULT_LOCKOUT, DEFAULT_MAX_FAILURES, MAX_LOCKOUT, PairingGuard
from igrs.relay.limits import TokenBucket

MAX_ENTRIES = 100_000  # per table: memory stays bounded whatever the attacker sends


def address_key(peer: Any) -> str:
    """The source-address key of a ``peername`` (host, port, ...) tuple."""
    host = str(peer[0]) if isinstance(peer, tuple) and peer else str(peer)
    try:
        ip = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return host
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


class GuardTable:
    """One :class:`PairingGuard` per key, plus the attempts still being evaluated.

    An entry is forgotten once it is unlocked and its last failure is ``max_lockout`` old
    (waiting that long gains an attacker no more than the steady state of the guard), or
    when the table is full (least recently used first)."""

    def __init__(self, max_failures: int, lockout: float, max_lockout: float,
                 max_entries: int = MAX_ENTRIES) -> None:
        self.max_failures = max_failures
        self.lockout = lockout
        self.max_lockout = max_lockout
        self.max_entries = max_entries
        self._guards: collections.OrderedDict[Hashable, tuple[PairingGuard, float]] = (
            collections.OrderedDict())
        self._pending: collections.Counter[Hashable] = collections.Counter()

    def __len__(self) -> int:
        return len(self._guards)

    def _get(self, key: Hashable, now: float) -> PairingGuard | None:
        entry = self._guards.get(key)
        if entry is None:
            return None
        guard, last = entry
        if guard.locked_for(now) == 0 and now - last >= self.max_lockout:
            del self._guards[key]
            return None
        return guard

    def locked_for(self, key: Hashable, now: float) -> float:
        """Seconds this key is refused; > 0 also when evaluations in flight fill its quota."""
        guard = self._get(key, now)
        wait = 0.0 if guard is None else guard.locked_for(now)
        failures = 0 if guard is None else guard.failures
        if wait == 0 and failures + self._pending[key] >= self.max_failures:
            wait = 1.0  # the attempts in flight may be the last allowed ones: try again
        return wait

    def begin(self, key: Hashable) -> None:
        self._pending[key] += 1

    def end(self, key: Hashable, now: float, *, failed: bool, reset: bool = False) -> None:
        self._pending[key] -= 1
        if self._pending[key] <= 0:
            del self._pending[key]
        guard = self._get(key, now)
        if failed:
            if guard is None:
                guard = PairingGuard(self.max_failures, self.lockout, self.max_lockout)
            guard.record_failure(now)
            self._guards[key] = (guard, now)
            self._guards.move_to_end(key)
            while len(self._guards) > self.max_entries:
                self._guards.popitem(last=False)
        elif reset and guard is not None:
            del self._guards[key]


@dataclass(slots=True, frozen=True)
class BindAttempt:
    device: Hashable
    account: Hashable
    address: str

    def parts(self) -> tuple[tuple[str, Hashable], ...]:
        return (("device", self.device), ("account", self.account), ("address", self.address))


class BindGuard:
    """Verification-code attempts: a lock on the device, the account or the address refuses.

    A right code clears the device's record only: clearing the account's or the address's
    would let an attacker interleave binds of its own device with guesses at others."""

    def __init__(self, max_failures: int = DEFAULT_MAX_FAILURES, lockout: float = DEFAULT_LOCKOUT,
                 max_lockout: float = MAX_LOCKOUT, max_entries: int = MAX_ENTRIES) -> None:
        self.tables = {kind: GuardTable(max_failures, lockout, max_lockout, max_entries)
                       for kind in ("device", "account", "address")}
        self.evaluated = 0  # codes actually checked (tests and statistics)

    def locked_for(self, attempt: BindAttempt, now: float) -> float:
        return max(self.tables[kind].locked_for(key, now) for kind, key in attempt.parts())

    def begin(self, attempt: BindAttempt) -> None:
        self.evaluated += 1
        for kind, key in attempt.parts():
            self.tables[kind].begin(key)

    def end(self, attempt: BindAttempt, now: float, *, right: bool) -> None:
        for kind, key in attempt.parts():
            self.tables[kind].end(key, now, failed=not right, reset=right and kind == "device")


class AddressBuckets:
    """A token bucket per source address; full (idle) buckets are dropped when the table is
    full."""

    def __init__(self, rate: float, burst: float, max_entries: int = MAX_ENTRIES) -> None:
        self.rate = rate
        self.burst = burst
        self.max_entries = max_entries
        self._buckets: collections.OrderedDict[str, TokenBucket] = collections.OrderedDict()

    def take(self, address: str, now: float) -> bool:
        bucket = self._buckets.get(address)
        if bucket is None:
            bucket = self._buckets[address] = TokenBucket(self.rate, self.burst, now)
            while len(self._buckets) > self.max_entries:
                self._buckets.popitem(last=False)
        self._buckets.move_to_end(address)
        return bucket.take(now)


class AddressSlots:
    """Slots held per source address, at most ``per_address`` each (owner -> address)."""

    def __init__(self, per_address: int) -> None:
        self.per_address = per_address
        self._held: collections.Counter[str] = collections.Counter()
        self._owner: dict[Hashable, str] = {}

    def held(self, address: str) -> int:
        return self._held[address]

    def acquire(self, owner: Hashable, address: str) -> bool:
        if self._held[address] >= self.per_address:
            return False
        self._held[address] += 1
        self._owner[owner] = address
        return True

    def release(self, owner: Hashable) -> None:
        address = self._owner.pop(owner, None)
        if address is not None:
            self._held[address] -= 1
            if self._held[address] <= 0:
                del self._held[address]
