"""The critique result cache: SQLite, keyed by everything that determines the output, bounded, crash-safe.

- Survives restarts and `kill -9`: WAL journal, one transaction per write, so an entry is either whole or absent;
  a row that still fails to parse is dropped and counted as a miss.
- Bounded: at most `max_entries` rows; beyond that the least recently used ones are evicted.
- Never fatal at request time: a database error on read or write is logged and treated as a miss / skipped.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from shared.schemas import Critique

log = logging.getLogger("stepalign.critic")


def cache_key(**parts: Any) -> str:
    """A stable hash of the inputs (problem, references, student text or steps, prompt version, model,
    sampling, feedback mode)."""
    blob = json.dumps(parts, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


class CritiqueCache:
    """A small key-value store of validated critiques. Only valid critiques are ever stored."""

    def __init__(self, path: Path, max_entries: int = 100_000) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.max_entries = max_entries
        self.evictions = 0
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=10.0)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")  # with WAL: a process crash loses nothing committed
        self._db.execute("CREATE TABLE IF NOT EXISTS critiques (key TEXT PRIMARY KEY, created REAL, body TEXT)")
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(critiques)")}
        if "used" not in columns:  # a cache written before the size bound existed
            self._db.execute("ALTER TABLE critiques ADD COLUMN used REAL")
            self._db.execute("UPDATE critiques SET used = created")
        self._db.execute("CREATE INDEX IF NOT EXISTS critiques_used ON critiques (used)")
        self._count = int(self._db.execute("SELECT COUNT(*) FROM critiques").fetchone()[0])
        self._evict()

    def _get(self, key: str) -> Critique | None:
        with self._lock:
            row = self._db.execute("SELECT body FROM critiques WHERE key = ?", (key,)).fetchone()
            if row is None:
                return None
            try:
                critique = Critique.model_validate_json(row[0])
            except ValidationError:
                log.warning("cache: dropping an unreadable entry %s", key[:12])
                self._db.execute("DELETE FROM critiques WHERE key = ?", (key,))
                self._count -= 1
                return None
            self._db.execute("UPDATE critiques SET used = ? WHERE key = ?", (time.time(), key))
            return critique

    def _put(self, key: str, critique: Critique) -> None:
        now = time.time()
        with self._lock:
            new = self._db.execute("SELECT 1 FROM critiques WHERE key = ?", (key,)).fetchone() is None
            # A fresh critique (asked for with Cache-Control: no-cache) replaces the stored one.
            self._db.execute(
                "INSERT INTO critiques (key, created, used, body) VALUES (?, ?, ?, ?) "
                "ON CONFLICT(key) DO UPDATE SET created = excluded.created, used = excluded.used, body = excluded.body",
                (key, now, now, critique.model_dump_json()),
            )
            self._count += int(new)
            self._evict()

    def _evict(self) -> None:
        if self._count <= self.max_entries:
            return
        # Recount first: other processes may share the file. Evict down to 95% so this runs once per many writes.
        self._count = int(self._db.execute("SELECT COUNT(*) FROM critiques").fetchone()[0])
        excess = self._count - int(self.max_entries * 0.95)
        if self._count <= self.max_entries or excess <= 0:
            return
        self._db.execute(
            "DELETE FROM critiques WHERE key IN (SELECT key FROM critiques ORDER BY used LIMIT ?)", (excess,)
        )
        self._count -= excess
        self.evictions += excess

    async def get(self, key: str) -> Critique | None:
        try:
            return await asyncio.to_thread(self._get, key)
        except sqlite3.Error as exc:
            log.warning("cache: read failed (%s); treating it as a miss", exc)
            return None

    async def put(self, key: str, critique: Critique) -> None:
        try:
            await asyncio.to_thread(self._put, key, critique)
        except sqlite3.Error as exc:
            log.warning("cache: write failed (%s); the critique is not cached", exc)

    def __len__(self) -> int:
        with self._lock:
            return self._count

    def close(self) -> None:
        with self._lock:
            self._db.close()
