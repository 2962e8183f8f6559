"""The critique result cache: SQLite, survives restarts, keyed by everything that determines the output."""

from __future__ import annotations

import asyncio
import hashlib
import json
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

from shared.schemas import Critique


def cache_key(**parts: Any) -> str:
    """A stable hash of the inputs (problem, references, student text or steps, prompt version, model,
    sampling, feedback mode)."""
    blob = json.dumps(parts, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


class CritiqueCache:
    """A small key-value store of validated critiques. Only valid critiques are ever stored."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("CREATE TABLE IF NOT EXISTS critiques (key TEXT PRIMARY KEY, created REAL, body TEXT)")

    def _get(self, key: str) -> Critique | None:
        with self._lock:
            row = self._db.execute("SELECT body FROM critiques WHERE key = ?", (key,)).fetchone()
        return Critique.model_validate_json(row[0]) if row else None

    def _put(self, key: str, critique: Critique) -> None:
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO critiques (key, created, body) VALUES (?, ?, ?)",
                (key, time.time(), critique.model_dump_json()),
            )

    async def get(self, key: str) -> Critique | None:
        return await asyncio.to_thread(self._get, key)

    async def put(self, key: str, critique: Critique) -> None:
        await asyncio.to_thread(self._put, key, critique)

    def __len__(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM critiques").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            self._db.close()
