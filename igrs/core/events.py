"""Event subscriptions (clauses 9.7, 10.3 and attribute eventing), sans-IO.

Inputs are requests and ``now`` (seconds, the caller's clock); outputs are subscriptions and
``Batch``es to deliver. The caller (igrs.node.service_host) does the I/O: it takes a batch, sends
it, and reports ``delivered`` or ``failed``. One batch per subscription is in flight at a time,
so notifications arrive in order, numbered 0, 1, 2, ... (``sequence``).

Memory stays bounded (specs/events.md "Slow subscribers"): a subscription queues at most
``queue_limit`` changes; when a change would exceed that, the queue collapses to the latest
value per name ("coalesced" mode, the next batch says ``coalesced=True``); a subscription
still coalesced after ``grace`` seconds, or that fails ``max_failures`` deliveries in a row,
is ended — with a final notice (``ended`` reason) when it is still reachable.

Callback locations are checked against CallStranger (CVE-2020-12695): ``http://`` only,
the host must be the subscriber's own source address, at most ``MAX_CALLBACK_URL`` characters.
"""

from __future__ import annotations

import ipaddress
import random
from collections import OrderedDict, deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from igrs.constants import (
    DEFAULT_SUBSCRIPTION,
    EVENT_BATCH_MAX,
    EVENT_QUEUE_LIMIT,
    MAX_CALLBACK_URL,
    MAX_SUBSCRIPTION,
    MAX_SUBSCRIPTIONS,
    MAX_SUBSCRIPTIONS_PER_SUBSCRIBER,
    MIN_SUBSCRIPTION,
    NOTIFY_MAX_FAILURES,
    NOTIFY_RETRY_DELAY,
    RECENTLY_ENDED,
    SLOW_SUBSCRIBER_GRACE,
    ReturnCode,
)
from igrs.errors import IGRSError
from igrs.wire.ids import UINT32_MAX

ATTRIBUTE, DEVICE, SERVICE = "attribute", "device", "service"  # subscription kinds
Change = tuple[str, object]


def _error(code: ReturnCode, reason: str) -> IGRSError:
    return IGRSError(reason, return_code=code)


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    text = text.strip().strip("[]").partition("%")[0]
    try:
        addr = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped
    return addr


def check_callback(location: str, subscriber_address: str) -> str:
    """Accept a callback location only if it points back at the subscriber (CallStranger).

    400 if it is not a plain ``http://host[:port]/path`` URL of at most ``MAX_CALLBACK_URL``
    characters; 403 if its host is not the literal IP address the request came from.
    """
    if len(location) > MAX_CALLBACK_URL:
        raise _error(ReturnCode.BAD_MESSAGE, f"callback location longer than {MAX_CALLBACK_URL}")
    if not location.isascii() or any(c.isspace() or ord(c) < 32 for c in location):
        raise _error(ReturnCode.BAD_MESSAGE, "callback location has illegal characters")
    try:
        parts = urlsplit(location)
        port = parts.port
    except ValueError:
        raise _error(ReturnCode.BAD_MESSAGE, "malformed callback location") from None
    if parts.scheme.lower() != "http" or not parts.hostname:
        raise _error(ReturnCode.BAD_MESSAGE, "callback location must be an http:// URL")
    if parts.username is not None or parts.password is not None:
        raise _error(ReturnCode.BAD_MESSAGE, "callback location must not carry credentials")
    if port == 0:
        raise _error(ReturnCode.BAD_MESSAGE, "callback location has port 0")
    host, source = _ip(parts.hostname), _ip(subscriber_address)
    if host is None or source is None or host != source:
        raise _error(ReturnCode.FORBIDDEN, "callback location must be the subscriber's own address")
    return location


@dataclass(frozen=True, slots=True)
class Batch:
    subscription_id: int
    sequence: int
    changes: tuple[Change, ...]
    coalesced: bool = False
    ended: str = ""


@dataclass(slots=True)
class Subscription:
    subscription_id: int
    kind: str
    subscriber: str  # subscriber device id
    address: str  # its source address (CallStranger check on renew)
    location: str
    topics: frozenset[str]  # empty: everything of the kind
    expires_at: float
    service_id: int = 0  # attribute subscriptions: the service
    sequence: int = 0  # EventSequence of the next batch
    queue: deque[Change] = field(default_factory=deque)
    coalesced: OrderedDict[str, object] | None = None
    coalesced_since: float | None = None
    inflight: Batch | None = None
    failures: int = 0
    retry_at: float = 0.0
    ending: str = ""  # non-empty: a final notice with this reason is due, then removal

    @property
    def pending(self) -> int:
        return len(self.queue) + (len(self.coalesced) if self.coalesced is not None else 0)

    def wants(self, name: str) -> bool:
        return not self.topics or name in self.topics


class SubscriptionTable:
    def __init__(
        self,
        *,
        max_per_subscriber: int = MAX_SUBSCRIPTIONS_PER_SUBSCRIBER,
        max_total: int = MAX_SUBSCRIPTIONS,
        queue_limit: int = EVENT_QUEUE_LIMIT,
        batch_max: int = EVENT_BATCH_MAX,
        grace: float = SLOW_SUBSCRIBER_GRACE,
        max_failures: int = NOTIFY_MAX_FAILURES,
        retry_delay: float = NOTIFY_RETRY_DELAY,
        default_duration: float = DEFAULT_SUBSCRIPTION,
        min_duration: float = MIN_SUBSCRIPTION,
        max_duration: float = MAX_SUBSCRIPTION,
        rng: random.Random | None = None,
    ) -> None:
        self.max_per_subscriber = max_per_subscriber
        self.max_total = max_total
        self.queue_limit = queue_limit
        self.batch_max = batch_max
        self.grace = grace
        self.max_failures = max_failures
        self.retry_delay = retry_delay
        self.default_duration = default_duration
        self.min_duration = min_duration
        self.max_duration = max_duration
        self._rng = rng or random.SystemRandom()
        self._subs: dict[int, Subscription] = {}
        self._ended: OrderedDict[int, None] = OrderedDict()

    def __len__(self) -> int:
        return len(self._subs)

    def __iter__(self) -> Iterator[Subscription]:
        return iter(list(self._subs.values()))

    def get(self, subscription_id: int) -> Subscription | None:
        return self._subs.get(subscription_id)

    # --- lifetime -----------------------------------------------------------------------
    def _expiry(self, requested: float | None, now: float) -> float:
        if requested is None:
            return now + self.default_duration
        duration = requested - now
        if duration <= 0:
            raise _error(ReturnCode.BAD_MESSAGE, "expirationTime is in the past")
        return now + min(max(duration, self.min_duration), self.max_duration)

    def subscribe(
        self,
        kind: str,
        subscriber: str,
        address: str,
        location: str,
        topics: Iterable[str],
        requested_expiry: float | None,
        now: float,
        *,
        service_id: int = 0,
    ) -> Subscription:
        location = check_callback(location, address)
        expires = self._expiry(requested_expiry, now)
        mine = sum(1 for s in self._subs.values() if s.subscriber == subscriber)
        if mine >= self.max_per_subscriber:
            raise _error(ReturnCode.BUSY, f"more than {self.max_per_subscriber} subscriptions from one device")
        if len(self._subs) >= self.max_total:
            raise _error(ReturnCode.BUSY, "too many subscriptions on this device")
        while True:
            sid = self._rng.randint(1, UINT32_MAX)
            if sid not in self._subs and sid not in self._ended:
                break
        sub = Subscription(sid, kind, subscriber, address, location, frozenset(topics), expires, service_id)
        self._subs[sid] = sub
        return sub

    def _owned(self, subscription_id: int, subscriber: str, kind: str | None) -> Subscription:
        sub = self._subs.get(subscription_id)
        if sub is None or sub.subscriber != subscriber or (kind is not None and sub.kind != kind) or sub.ending:
            if subscription_id in self._ended:
                raise _error(ReturnCode.PRECONDITION_FAILED, "subscription has ended")
            raise _error(ReturnCode.NOT_FOUND, "no such subscription")
        return sub

    def renew(
        self,
        subscription_id: int,
        subscriber: str,
        address: str,
        location: str,
        requested_expiry: float | None,
        now: float,
        *,
        kind: str | None = None,
    ) -> Subscription:
        sub = self._owned(subscription_id, subscriber, kind)
        sub.location = check_callback(location, address)
        sub.address = address
        sub.expires_at = self._expiry(requested_expiry, now)
        return sub

    def unsubscribe(self, subscription_id: int, subscriber: str, *, kind: str | None = None) -> Subscription:
        sub = self._owned(subscription_id, subscriber, kind)
        self._remove(sub)
        return sub

    def _remove(self, sub: Subscription) -> None:
        self._subs.pop(sub.subscription_id, None)
        self._ended[sub.subscription_id] = None
        while len(self._ended) > RECENTLY_ENDED:
            self._ended.popitem(last=False)

    def end(self, subscription_id: int, reason: str) -> None:
        """End with a final notice (sent by the next ``take``), then remove."""
        sub = self._subs.get(subscription_id)
        if sub is not None and not sub.ending:
            sub.ending = reason or "ended"
            sub.queue.clear()
            sub.coalesced = None

    def drop(self, predicate: Iterable[int]) -> list[Subscription]:
        """Remove these subscriptions at once, without a notice."""
        gone = [self._subs[i] for i in predicate if i in self._subs]
        for sub in gone:
            self._remove(sub)
        return gone

    def drop_subscriber(self, subscriber: str) -> list[Subscription]:
        return self.drop([s.subscription_id for s in self._subs.values() if s.subscriber == subscriber])

    def expire(self, now: float) -> list[Subscription]:
        """Remove expired subscriptions; end those that stayed coalesced beyond the grace."""
        gone = self.drop([s.subscription_id for s in self._subs.values() if s.expires_at <= now])
        for sub in list(self._subs.values()):
            if sub.coalesced_since is not None and now - sub.coalesced_since > self.grace:
                self.end(sub.subscription_id, "subscriber too slow")
        return gone

    def next_deadline(self) -> float | None:
        times = [s.expires_at for s in self._subs.values()]
        times += [s.coalesced_since + self.grace for s in self._subs.values() if s.coalesced_since is not None]
        return min(times, default=None)

    # --- events -------------------------------------------------------------------------
    def push(self, sub: Subscription, changes: Iterable[Change], now: float) -> bool:
        """Queue ``changes`` for one subscription; True if it has something new to send."""
        added = False
        for name, value in changes:
            if sub.ending:
                return added
            added = True
            if sub.coalesced is not None:
                sub.coalesced[name] = value
                sub.coalesced.move_to_end(name)
                if len(sub.coalesced) > self.queue_limit:
                    self.end(sub.subscription_id, "subscriber too slow")
                continue
            sub.queue.append((name, value))
            if len(sub.queue) > self.queue_limit:
                merged: OrderedDict[str, object] = OrderedDict()
                for n, v in sub.queue:
                    merged[n] = v
                    merged.move_to_end(n)
                sub.queue.clear()
                sub.coalesced = merged
                sub.coalesced_since = now
        return added

    def publish(self, kind: str, name: str, value: object, now: float, *, service_id: int = 0) -> list[int]:
        """A change of ``name`` (an attribute, a device id, a service id); the subscriptions
        that now have something to send."""
        woken = []
        for sub in self._subs.values():
            if (
                sub.kind == kind
                and sub.service_id == service_id
                and sub.wants(name)
                and self.push(sub, ((name, value),), now)
            ):
                woken.append(sub.subscription_id)
        return woken

    def take(self, subscription_id: int, now: float) -> Batch | None:
        """The next batch to send for this subscription, or None (nothing, in flight, or
        waiting for a retry)."""
        sub = self._subs.get(subscription_id)
        if sub is None:
            return None
        if sub.inflight is not None:
            return None if sub.retry_at > now or sub.failures == 0 else sub.inflight
        if sub.ending:
            batch = Batch(sub.subscription_id, sub.sequence, (), False, sub.ending)
        elif sub.coalesced:
            items: list[Change] = []
            while sub.coalesced and len(items) < self.batch_max:
                items.append(sub.coalesced.popitem(last=False))
            batch = Batch(sub.subscription_id, sub.sequence, tuple(items), True)
            if not sub.coalesced:
                sub.coalesced = None
                sub.coalesced_since = None
        elif sub.queue:
            n = min(len(sub.queue), self.batch_max)
            batch = Batch(sub.subscription_id, sub.sequence, tuple(sub.queue.popleft() for _ in range(n)))
        else:
            return None
        sub.inflight = batch
        sub.sequence = (sub.sequence + 1) & UINT32_MAX
        return batch

    def delivered(self, subscription_id: int) -> None:
        sub = self._subs.get(subscription_id)
        if sub is None:
            return
        final = sub.inflight is not None and sub.inflight.ended
        sub.inflight = None
        sub.failures = 0
        if final:
            self._remove(sub)

    def failed(self, subscription_id: int, now: float) -> bool:
        """A delivery failed; the same batch is retried later. True if the subscription ended."""
        sub = self._subs.get(subscription_id)
        if sub is None:
            return True
        sub.failures += 1
        if sub.failures >= self.max_failures or (sub.inflight is not None and sub.inflight.ended):
            self._remove(sub)
            return True
        sub.retry_at = now + self.retry_delay * 2 ** (sub.failures - 1)
        return False


__all__ = ["ATTRIBUTE", "DEVICE", "SERVICE", "Batch", "Subscription", "SubscriptionTable", "check_callback"]
