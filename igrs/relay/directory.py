"""The account server: RA users, RA devices, relationships and online-storage items.

Written once over the :class:`~igrs.relay.backbone.KeyValue` abstraction, so the embedded
node (SQLite) and the cluster (a JetStream key-value bucket) share the same logic.

Keys (hex = the 32-hex-digit UUID)::

    acct.<hex>              {"kind", "name", "token" (sha256), "device_type", "verify"}
    rel.<a>.<b>             {"type"}  as seen from a: owns | owned_by | linked |
                                      friend | friend_out | friend_in
    item.<owner>.<key>      {"value" (base64), "readers" [hex], "updated"}
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import re
import secrets
import time
import uuid
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any

from igrs.relay import codes
from igrs.relay.backbone.base import KeyValue
from igrs.relay.errors import RelayCode, RelayError
from igrs.relay.ids import Kind, Principal
from igrs.relay.limits import Limits
from igrs.wire.memo import Memo

RELATED = frozenset({"owns", "owned_by", "linked", "friend"})
_ITEM_KEY = re.compile(r"[A-Za-z0-9_-]{1,64}\Z")
MAX_NAME = 128
ACCOUNT_RECOUNT = 60.0  # s: the account count is re-read this often (other cluster nodes)
BIND_REFUSED = "bind refused: unknown device or wrong verification code"


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(slots=True, frozen=True)
class Account:
    principal: Principal
    name: str
    device_type: str | None


class Directory:
    """Account-server logic. ``cache_ttl``: relationship/account lookups on the message path
    are cached this long (s); local writes clear the cache at once, writes made on another
    cluster node are seen after at most ``cache_ttl``. ``executor`` runs the key stretching
    of verification codes (None: the loop's default executor), never the event loop."""

    def __init__(self, kv: KeyValue, limits: Limits, cache_ttl: float = 1.0,
                 executor: Executor | None = None) -> None:
        self.kv = kv
        self.limits = limits
        self.cache_ttl = cache_ttl
        self.executor = executor
        # keyed by the UUIDs' ints: a tuple of ints hashes in C, a UUID's hash is Python code
        self._cache: Memo[tuple[str, int, int], tuple[float, Any]] = Memo(100_000)
        self.generation = 0  # counts invalidations: a cache built on this one checks it
        self._accounts: int | None = None  # counted accounts (max_accounts)
        self._counted = 0.0

    def _cached(self, key: tuple[str, int, int]) -> tuple[bool, Any]:
        hit = self._cache.get(key)
        if hit is not None and time.monotonic() - hit[0] < self.cache_ttl:
            return True, hit[1]
        return False, None

    def _remember(self, key: tuple[str, int, int], value: Any) -> None:
        self._cache.remember(key, (time.monotonic(), value))

    def invalidate(self) -> None:
        self._cache.clear()
        self.generation += 1

    def fresh_until(self, a: uuid.UUID, b: uuid.UUID) -> float:
        """Until when (monotonic s) the cached answers "``a`` is related to ``b``" and "``b``'s
        account" stay valid; 0 if either is not cached. No I/O: the node's message path keeps
        its own cache of routes on this (with :attr:`generation`)."""
        rel = self._cache.get(("rel", a.int, b.int))
        acct = self._cache.get(("acct", b.int, b.int))
        if rel is None or acct is None or acct[1] is None or rel[1] not in RELATED:
            return 0.0
        return min(rel[0], acct[0]) + self.cache_ttl

    # ---- helpers ----
    async def _get(self, key: str) -> dict[str, Any] | None:
        raw = await self.kv.get(key)
        return None if raw is None else json.loads(raw)

    async def _put(self, key: str, obj: dict[str, Any]) -> None:
        await self.kv.put(key, json.dumps(obj, separators=(",", ":")).encode())

    async def account(self, u: uuid.UUID) -> Account | None:
        hit, value = self._cached(("acct", u.int, u.int))
        if hit:
            return value
        a = await self._get(f"acct.{u.hex}")
        acct = None if a is None else Account(
            Principal(Kind(a["kind"]), u), a["name"], a.get("device_type"))
        self._remember(("acct", u.int, u.int), acct)
        return acct

    async def require(self, u: uuid.UUID) -> Account:
        acct = await self.account(u)
        if acct is None:
            raise RelayError(RelayCode.NOT_FOUND, f"no such user or device {u}")
        return acct

    async def seal(self, code: str) -> str:
        """The stored form of a verification code, computed in the executor."""
        return await asyncio.get_running_loop().run_in_executor(self.executor, codes.seal, code)

    async def account_count(self) -> int:
        now = time.monotonic()
        if self._accounts is None or now - self._counted > ACCOUNT_RECOUNT:
            self._accounts = len(await self.kv.keys("acct."))
            self._counted = now
        return self._accounts

    async def _check_capacity(self) -> None:
        if await self.account_count() >= self.limits.max_accounts:
            raise RelayError(RelayCode.STORAGE_FULL, "the relay has reached its account cap")

    async def _create_account(self, p: Principal, record: dict[str, Any]) -> str:
        token = secrets.token_urlsafe(32)
        record = {**record, "kind": p.kind.value, "token": hash_token(token)}
        self.invalidate()
        ok = await self.kv.create(f"acct.{p.key}", json.dumps(record).encode())
        if not ok:
            raise RelayError(RelayCode.CONFLICT, f"{p} is already registered")
        if self._accounts is not None:
            self._accounts += 1
        self.invalidate()
        return token

    # ---- registration and authentication ----
    async def register_user(self, name: str, user: Principal | None = None) -> tuple[Principal, str]:
        name = _name(name)
        await self._check_capacity()
        p = user or Principal.user()
        return p, await self._create_account(p, {"name": name})

    async def register_device(
        self, device: Principal, name: str, device_type: str, verify_code: str
    ) -> str:
        if device.kind is not Kind.DEVICE:
            raise RelayError(RelayCode.BAD_FRAME, "register_device needs a device id")
        codes.check_strength(verify_code)
        record = {"name": _name(name), "device_type": _name(device_type or "Unknown")}
        await self._check_capacity()
        if await self.kv.get(f"acct.{device.key}") is not None:  # before the stretching
            raise RelayError(RelayCode.CONFLICT, f"{device} is already registered")
        record["verify"] = await self.seal(verify_code)
        return await self._create_account(device, record)

    async def authenticate(self, p: Principal, token: str) -> Account:
        a = await self._get(f"acct.{p.key}")
        if (
            a is None
            or a["kind"] != p.kind.value
            or not hmac.compare_digest(a["token"], hash_token(token))
        ):
            raise RelayError(RelayCode.NOT_AUTHENTICATED, "unknown principal or bad token")
        return Account(p, a["name"], a.get("device_type"))

    async def delete_account(self, p: Principal) -> None:
        self.invalidate()
        for other in await self.relations(p):
            await self.kv.delete(f"rel.{other.uuid.hex}.{p.key}")
            await self.kv.delete(f"rel.{p.key}.{other.uuid.hex}")
        for key in await self.kv.keys(f"rel.{p.key}."):
            await self.kv.delete(key)
        for key in await self.kv.keys(f"item.{p.key}."):
            await self.kv.delete(key)
        if await self.kv.get(f"acct.{p.key}") is not None and self._accounts is not None:
            self._accounts -= 1
        await self.kv.delete(f"acct.{p.key}")
        self.invalidate()

    # ---- account maintenance (5-9 §2.5: modify, delete, reset the verification code) ----
    async def _record(self, p: Principal) -> dict[str, Any]:
        rec = await self._get(f"acct.{p.key}")
        if rec is None or rec["kind"] != p.kind.value:
            raise RelayError(RelayCode.NOT_FOUND, f"no such user or device {p}")
        return rec

    async def modify(self, p: Principal, name: str | None, device_type: str | None) -> Account:
        """Change the name (and, of a device, the device type)."""
        rec = await self._record(p)
        if name is not None:
            rec["name"] = _name(name)
        if device_type is not None:
            if p.kind is not Kind.DEVICE:
                raise RelayError(RelayCode.BAD_FRAME, "only devices have a device type")
            rec["device_type"] = _name(device_type)
        await self._put(f"acct.{p.key}", rec)
        self.invalidate()
        return Account(p, rec["name"], rec.get("device_type"))

    async def reset_code(self, device: Principal, verify_code: str) -> None:
        """Give the device a new verification code (the old one stops binding at once)."""
        codes.check_strength(verify_code)
        rec = await self._record(device)
        if device.kind is not Kind.DEVICE:
            raise RelayError(RelayCode.BAD_FRAME, "only devices have a verification code")
        rec["verify"] = await self.seal(verify_code)
        await self._put(f"acct.{device.key}", rec)

    async def rotate_token(self, p: Principal) -> str:
        """A new token for ``p``; the old one no longer authenticates."""
        rec = await self._record(p)
        token = secrets.token_urlsafe(32)
        rec["token"] = hash_token(token)
        await self._put(f"acct.{p.key}", rec)
        return token

    # ---- relationships ----
    async def relation(self, a: uuid.UUID, b: uuid.UUID) -> str | None:
        hit, value = self._cached(("rel", a.int, b.int))
        if hit:
            return value
        r = await self._get(f"rel.{a.hex}.{b.hex}")
        rel = None if r is None else str(r["type"])
        if rel is not None:
            # Only relations are cached: a new relation made on another node must work at
            # once (no stale "unrelated"); a removed one is honoured within cache_ttl.
            self._remember(("rel", a.int, b.int), rel)
        return rel

    async def related(self, a: uuid.UUID, b: uuid.UUID) -> bool:
        return a != b and (await self.relation(a, b)) in RELATED

    async def _relate(self, a: Principal, b: Principal, ab: str, ba: str) -> None:
        self.invalidate()
        for p in (a, b):
            if len(await self.kv.keys(f"rel.{p.key}.")) >= self.limits.max_relations:
                raise RelayError(RelayCode.STORAGE_FULL, f"{p} has too many relationships")
        await self._put(f"rel.{a.key}.{b.key}", {"type": ab})
        await self._put(f"rel.{b.key}.{a.key}", {"type": ba})

    async def _unrelate(self, a: Principal, b: Principal) -> None:
        self.invalidate()
        await self.kv.delete(f"rel.{a.key}.{b.key}")
        await self.kv.delete(f"rel.{b.key}.{a.key}")

    async def relations(self, p: Principal, types: frozenset[str] = RELATED) -> list[Principal]:
        out = []
        for key in await self.kv.keys(f"rel.{p.key}."):
            r = await self._get(key)
            if r is None or r["type"] not in types:
                continue
            acct = await self.account(uuid.UUID(hex=key.rsplit(".", 1)[1]))
            if acct is not None:
                out.append(acct.principal)
        return out

    async def relation_table(self, p: Principal) -> tuple[dict[str, list[str]], dict[str, str]]:
        """``p``'s relationships by type, and the name of each party in them (so that a
        client can address a related party by its name)."""
        table: dict[str, list[str]] = {}
        names: dict[str, str] = {}
        for key in await self.kv.keys(f"rel.{p.key}."):
            r = await self._get(key)
            acct = await self.account(uuid.UUID(hex=key.rsplit(".", 1)[1]))
            if r is not None and acct is not None:
                table.setdefault(r["type"], []).append(str(acct.principal))
                names[str(acct.principal)] = acct.name
        return table, names

    async def verify(self, device: Principal, verify_code: str) -> bool:
        """Whether ``verify_code`` is the device's code. An unknown device costs the same
        stretching and gives the same False: no existence oracle."""
        rec = await self._get(f"acct.{device.key}")
        known = rec is not None and rec["kind"] == Kind.DEVICE.value and "verify" in rec
        stored = rec["verify"] if known and rec else None
        return await asyncio.get_running_loop().run_in_executor(
            self.executor, codes.matches, stored, verify_code)

    async def bind(self, user: Principal, device: Principal, verify_code: str) -> None:
        """User-Device: bind with the device's verification code (IRSP account server).
        The relay node calls :meth:`verify` and :meth:`add_owner` itself, between the
        checks of its bind guard."""
        _need(user, Kind.USER, "bind")
        if not await self.verify(device, verify_code):
            raise RelayError(RelayCode.FORBIDDEN, BIND_REFUSED)
        await self.add_owner(user, device)

    async def add_owner(self, user: Principal, device: Principal) -> None:
        """Relate a user and a device whose code the user has proved."""
        if await self.relation(user.uuid, device.uuid) == "owns":
            raise RelayError(RelayCode.CONFLICT, "device already bound to this user")
        await self._relate(user, device, "owns", "owned_by")

    async def unbind(self, user: Principal, device: Principal) -> None:
        if await self.relation(user.uuid, device.uuid) != "owns":
            raise RelayError(RelayCode.NOT_FOUND, "device is not bound to this user")
        for other in await self.relations(device, frozenset({"linked"})):
            if not await self._owned_by_other(other, user, device):
                await self._unrelate(device, other)
        await self._unrelate(user, device)

    async def _owned_by_other(self, other: Principal, user: Principal, device: Principal) -> bool:
        owners_dev = {o.uuid for o in await self.owners(device)} - {user.uuid}
        owners_other = {o.uuid for o in await self.owners(other)}
        return bool(owners_dev & owners_other)

    async def owners(self, device: Principal) -> list[Principal]:
        return await self.relations(device, frozenset({"owned_by"}))

    async def devices_of(self, user: Principal) -> list[Principal]:
        return await self.relations(user, frozenset({"owns"}))

    async def link(self, user: Principal, a: Principal, b: Principal) -> None:
        """Device-Device: a user bound to both devices links them."""
        _need(user, Kind.USER, "link")
        if a == b:
            raise RelayError(RelayCode.BAD_FRAME, "cannot link a device to itself")
        for d in (a, b):
            if await self.relation(user.uuid, d.uuid) != "owns":
                raise RelayError(RelayCode.FORBIDDEN, f"{d} is not bound to you")
        await self._relate(a, b, "linked", "linked")

    async def unlink(self, user: Principal, a: Principal, b: Principal) -> None:
        _need(user, Kind.USER, "unlink")
        if await self.relation(user.uuid, a.uuid) != "owns":
            raise RelayError(RelayCode.FORBIDDEN, f"{a} is not bound to you")
        if await self.relation(a.uuid, b.uuid) != "linked":
            raise RelayError(RelayCode.NOT_FOUND, "devices are not linked")
        await self._unrelate(a, b)

    async def friend_request(self, a: Principal, b: Principal) -> str:
        """User-User: returns the new state for a ("friend_out", or "friend" if b asked too)."""
        _need(a, Kind.USER, "friend_request")
        if b.kind is not Kind.USER or a == b:
            raise RelayError(RelayCode.BAD_FRAME, "friend requests go to another user")
        current = await self.relation(a.uuid, b.uuid)
        if current == "friend":
            raise RelayError(RelayCode.CONFLICT, "already friends")
        if current == "friend_in":
            await self._relate(a, b, "friend", "friend")
            return "friend"
        await self._relate(a, b, "friend_out", "friend_in")
        return "friend_out"

    async def friend_respond(self, a: Principal, b: Principal, accept: bool) -> None:
        """a answers b's pending request."""
        if await self.relation(a.uuid, b.uuid) != "friend_in":
            raise RelayError(RelayCode.NOT_FOUND, "no pending friend request from that user")
        if accept:
            await self._relate(a, b, "friend", "friend")
        else:
            await self._unrelate(a, b)

    async def unfriend(self, a: Principal, b: Principal) -> None:
        if await self.relation(a.uuid, b.uuid) not in ("friend", "friend_out", "friend_in"):
            raise RelayError(RelayCode.NOT_FOUND, "not friends")
        await self._unrelate(a, b)

    # ---- online storage ----
    async def item_put(
        self, owner: Principal, key: str, value: bytes, readers: list[Principal], now: float
    ) -> None:
        _item_key(key)
        if len(value) > self.limits.max_item_size:
            raise RelayError(RelayCode.TOO_LARGE, f"item larger than {self.limits.max_item_size}")
        for r in readers:
            if not await self.related(owner.uuid, r.uuid):
                raise RelayError(RelayCode.FORBIDDEN, f"reader {r} is not related to you")
        full_key = f"item.{owner.key}.{key}"
        if await self.kv.get(full_key) is None and (
            len(await self.kv.keys(f"item.{owner.key}.")) >= self.limits.max_items_per_owner
        ):
            raise RelayError(RelayCode.STORAGE_FULL, "online-storage item cap reached")
        await self._put(
            full_key,
            {
                "value": base64.b64encode(value).decode(),
                "readers": [r.key for r in readers],
                "updated": now,
            },
        )

    async def item_get(self, requester: Principal, owner: Principal, key: str) -> bytes:
        _item_key(key)
        item = await self._get(f"item.{owner.key}.{key}")
        if item is None:
            raise RelayError(RelayCode.NOT_FOUND, "no such item")
        if requester != owner and not (
            requester.key in item["readers"] and await self.related(owner.uuid, requester.uuid)
        ):
            raise RelayError(RelayCode.FORBIDDEN, "not an authorised reader of this item")
        return base64.b64decode(item["value"])

    async def item_list(self, owner: Principal) -> list[str]:
        prefix = f"item.{owner.key}."
        return sorted(k[len(prefix) :] for k in await self.kv.keys(prefix))

    async def item_delete(self, owner: Principal, key: str) -> None:
        _item_key(key)
        if await self.kv.get(f"item.{owner.key}.{key}") is None:
            raise RelayError(RelayCode.NOT_FOUND, "no such item")
        await self.kv.delete(f"item.{owner.key}.{key}")


def _need(p: Principal, kind: Kind, op: str) -> None:
    if p.kind is not kind:
        raise RelayError(RelayCode.FORBIDDEN, f"{op} is for {kind.value}s")


def _name(name: str) -> str:
    name = str(name).strip()
    if not 1 <= len(name) <= MAX_NAME or not name.isprintable():
        raise RelayError(RelayCode.BAD_FRAME, "names are 1-128 printable characters")
    return name


def _item_key(key: str) -> None:
    if not _ITEM_KEY.match(key):
        raise RelayError(RelayCode.BAD_FRAME, "item keys are 1-64 of [A-Za-z0-9_-]")
