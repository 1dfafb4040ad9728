"""The embedded backbone: one node, everything in-process, SQLite on disk.

SQLite runs in WAL mode with ``synchronous=FULL`` for the mailbox so that a stored message
acknowledged to its sender as "stored" survives a crash of the relay process. Calls are
synchronous: each is a single indexed statement (tens of microseconds), cheaper than a
thread hop.
"""

from __future__ import annotations

import sqlite3
import uuid
from pathlib import Path

from igrs.relay.backbone.base import Backbone, NodeHooks, StoredMessage
from igrs.relay.errors import RelayCode, RelayError
from igrs.relay.ids import Principal

SCHEMA = """
CREATE TABLE IF NOT EXISTS kv (key TEXT PRIMARY KEY, value BLOB NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS mail (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    recipient BLOB NOT NULL,
    source BLOB NOT NULL,
    flags INTEGER NOT NULL,
    namespace TEXT NOT NULL,
    body BLOB NOT NULL,
    created REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS mail_recipient ON mail (recipient, id);
"""


class SqliteStore:
    """Key-value table and mailbox table in one SQLite file (``:memory:`` for tests)."""

    def __init__(self, path: str | Path) -> None:
        self.db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.executescript(SCHEMA)

    def close(self) -> None:
        self.db.close()


class SqliteKV:
    def __init__(self, store: SqliteStore) -> None:
        self.db = store.db

    async def get(self, key: str) -> bytes | None:
        row = self.db.execute("SELECT value FROM kv WHERE key = ?", (key,)).fetchone()
        return None if row is None else bytes(row[0])

    async def put(self, key: str, value: bytes) -> None:
        self.db.execute("INSERT OR REPLACE INTO kv (key, value) VALUES (?, ?)", (key, value))

    async def create(self, key: str, value: bytes) -> bool:
        cur = self.db.execute("INSERT OR IGNORE INTO kv (key, value) VALUES (?, ?)", (key, value))
        return cur.rowcount == 1

    async def delete(self, key: str) -> None:
        self.db.execute("DELETE FROM kv WHERE key = ?", (key,))

    async def keys(self, prefix: str) -> list[str]:
        # prefixes end in "." and keys are ASCII: "." + 1 == "/" bounds the range.
        hi = prefix[:-1] + chr(ord(prefix[-1]) + 1)
        rows = self.db.execute("SELECT key FROM kv WHERE key >= ? AND key < ?", (prefix, hi))
        return [r[0] for r in rows]


class SqliteMailbox:
    """Stored messages; ``max_bytes`` caps the bodies stored on the node (ERROR 509), kept
    as a running total (one sum at start)."""

    def __init__(self, store: SqliteStore, max_bytes: int | None = None) -> None:
        self.db = store.db
        self.max_bytes = max_bytes
        (total,) = self.db.execute("SELECT coalesce(sum(length(body)), 0) FROM mail").fetchone()
        self.stored_bytes = int(total)

    async def put(
        self,
        recipient: Principal,
        source: Principal,
        namespace: str,
        body: bytes,
        flags: int,
        *,
        cap: int,
        now: float,
    ) -> int:
        (count,) = self.db.execute(
            "SELECT count(*) FROM mail WHERE recipient = ?", (recipient.uuid.bytes,)
        ).fetchone()
        if count >= cap:
            raise RelayError(
                RelayCode.STORAGE_FULL, f"{recipient} already has {count} stored messages"
            )
        if self.max_bytes is not None and self.stored_bytes + len(body) > self.max_bytes:
            raise RelayError(RelayCode.NODE_STORAGE_FULL,
                             "the relay's storage for stored messages is full")
        cur = self.db.execute(
            "INSERT INTO mail (recipient, source, flags, namespace, body, created)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (recipient.uuid.bytes, source.uuid.bytes, flags, namespace, body, now),
        )
        assert cur.lastrowid is not None
        self.stored_bytes += len(body)
        return cur.lastrowid

    async def pending(self, recipient: Principal, limit: int) -> list[StoredMessage]:
        rows = self.db.execute(
            "SELECT id, source, flags, namespace, body, created FROM mail"
            " WHERE recipient = ? ORDER BY id LIMIT ?",
            (recipient.uuid.bytes, limit),
        )
        return [
            StoredMessage(r[0], recipient.uuid, uuid.UUID(bytes=r[1]), r[2], r[3], r[4], r[5])
            for r in rows
        ]

    async def ack(self, recipient: Principal, msg_id: int) -> bool:
        key = (msg_id, recipient.uuid.bytes)
        row = self.db.execute("SELECT length(body) FROM mail WHERE id = ? AND recipient = ?",
                              key).fetchone()
        if row is None:
            return False
        self.db.execute("DELETE FROM mail WHERE id = ? AND recipient = ?", key)
        self.stored_bytes -= int(row[0])
        return True

    async def purge(self, recipient: Principal) -> None:
        who = (recipient.uuid.bytes,)
        (size,) = self.db.execute(
            "SELECT coalesce(sum(length(body)), 0) FROM mail WHERE recipient = ?", who).fetchone()
        self.db.execute("DELETE FROM mail WHERE recipient = ?", who)
        self.stored_bytes -= int(size)


class EmbeddedBackbone(Backbone):
    """One node: presence is this process's connection table."""

    def __init__(self, path: str | Path = ":memory:", node_id: str = "embedded",
                 max_bytes: int | None = None) -> None:
        self.store = SqliteStore(path)
        self.kv = SqliteKV(self.store)
        self.mailbox = SqliteMailbox(self.store, max_bytes)
        self.node_id = node_id
        self._online: set[uuid.UUID] = set()
        self._hooks: NodeHooks | None = None

    async def start(self, hooks: NodeHooks) -> None:
        self._hooks = hooks

    async def close(self) -> None:
        self.store.close()

    async def set_presence(self, principal: Principal, online: bool) -> None:
        if online:
            self._online.add(principal.uuid)
        else:
            self._online.discard(principal.uuid)
        if self._hooks is not None:
            self._hooks.presence_changed(principal, online)

    async def is_online(self, principal: Principal) -> bool:
        return principal.uuid in self._online

    async def deliver_remote(self, target: Principal, frame: bytes) -> bool:
        return False

    async def mail_hint(self, target: Principal) -> None:
        return None
