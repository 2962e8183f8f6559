"""The trainer's side of the critic: a `CriticPool` plus the run's critique log, callable from TRL's synchronous
code. Each training step's critiques are requested concurrently on a private event loop.

The log (`critiques.jsonl` in the run folder) gets one JSON line per rollout, written with a single `write` on
an O_APPEND descriptor, so a crash can at worst tear the last line, which is ignored on resume. Each checkpoint
records the log's length; resuming cuts the log back to it, because the steps after the checkpoint run again,
so the log never holds two lines for one rollout, nor lines of rollouts that were never trained on.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import threading
from collections.abc import Callable, Coroutine, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from shared.client import CriticError, CriticPool, RetryPolicy
from shared.schemas import Critique, CritiqueRequest
from trainer.outcomes import CriticOutcomes, CriticUnavailable

log = logging.getLogger("stepalign.trainer.critic")
T = TypeVar("T")


def rollout_key(step: int, index: int, request: CritiqueRequest) -> str:
    """Identity of one rollout's critique: the step, its index in the step, and what was sent."""
    digest = hashlib.sha256(request.model_dump_json(exclude={"request_id"}).encode()).hexdigest()[:16]
    return f"{step}:{index}:{digest}"


class CritiqueLog:
    """Append-only JSONL of critiques; survives a kill -9 with at most a torn last line."""

    def __init__(self, path: Path, *, truncate_to: int | None = None) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self.entries: dict[str, dict[str, Any]] = {}
        self.torn = 0
        if truncate_to is not None and path.exists() and path.stat().st_size > truncate_to:
            # Resuming from a checkpoint: lines written after it belong to steps that will run again.
            with path.open("r+b") as f:
                f.truncate(truncate_to)
        if path.exists():
            self._load()
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self._lock = threading.Lock()

    def _load(self) -> None:
        raw = self.path.read_bytes()
        lines = raw.split(b"\n")
        for i, line in enumerate(lines):
            if not line.strip():
                continue
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:
                if i == len(lines) - 1:  # the torn tail of an interrupted write
                    self.torn += 1
                    continue
                raise ValueError(f"{self.path}:{i + 1}: corrupt line in the critique log") from None
            self.entries[entry["key"]] = entry
        if raw and not raw.endswith(b"\n"):
            # Cut the torn tail off, so the next line starts on a line of its own.
            with self.path.open("r+b") as f:
                f.truncate(raw.rfind(b"\n") + 1)

    def append(self, entry: dict[str, Any]) -> None:
        data = (json.dumps(entry, ensure_ascii=False, separators=(",", ":")) + "\n").encode()
        with self._lock:
            os.write(self._fd, data)
            self.entries[entry["key"]] = entry

    def __len__(self) -> int:
        return len(self.entries)

    def position(self) -> int:
        """Bytes written so far: saved with each checkpoint, so a resume can cut the log back to it."""
        with self._lock:
            return os.fstat(self._fd).st_size

    def close(self) -> None:
        os.close(self._fd)


@dataclass
class CriticSettings:
    """How the trainer reaches the critic (see `trainer.config.CriticConfig` for the documented fields)."""

    urls: list[str]
    api_key: str | None = None
    max_concurrency: int = 64
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    connect_timeout_s: float = 5.0
    read_timeout_s: float = 900.0
    ready_timeout_s: float = 1800.0


class TrainerCritic:
    """Critiques for one step's rollouts, concurrently, logged and reused on resume; every outcome is counted in
    `outcomes` (the run's one counter)."""

    def __init__(self, settings: CriticSettings, log_path: Path, *, log_position: int | None = None) -> None:
        self.settings = settings
        self.log = CritiqueLog(log_path, truncate_to=log_position)
        self.outcomes = CriticOutcomes()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="critic-loop", daemon=True)
        self._thread.start()
        self._pool = self._run(self._make_pool())

    async def _make_pool(self) -> CriticPool:
        s = self.settings
        return CriticPool(
            s.urls,
            api_key=s.api_key,
            max_concurrency=s.max_concurrency,
            retry=s.retry,
            connect_timeout_s=s.connect_timeout_s,
            read_timeout_s=s.read_timeout_s,
        )

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    def wait_ready(self, progress: Callable[[str], None] | None = None, report_every_s: float = 10.0) -> None:
        """Block until a critic replica answers /readyz (a 32B model loads for minutes), with a progress line every
        `report_every_s`; `CriticUnavailable` after `ready_timeout_s`."""
        timeout = self.settings.ready_timeout_s
        poll = min(2.0, report_every_s / 2)
        try:
            index = self._run(self._pool.wait_ready(timeout, progress, poll_s=poll, report_every_s=report_every_s))
        except CriticError as exc:
            raise CriticUnavailable(f"the critic at {', '.join(self.settings.urls)} is not ready: {exc}") from exc
        log.info("critic ready: %s", self.settings.urls[index])

    def critique_many(self, requests: list[CritiqueRequest]) -> list[Critique | CriticError]:
        """Critiques without logging or counting (the preflight's)."""
        return self._run(self._pool.critique_many(requests))

    def critique_step(self, step: int, requests: Iterable[CritiqueRequest]) -> list[Critique | CriticError]:
        """Critiques of one step's rollouts, in order; failures come back as `CriticError` values. Each outcome is
        logged once and counted once."""
        reqs = list(requests)
        keys = [rollout_key(step, i, r) for i, r in enumerate(reqs)]
        results: list[Critique | CriticError | None] = [None] * len(reqs)
        todo = []
        for i, key in enumerate(keys):
            entry = self.log.entries.get(key)
            if entry is not None and entry.get("critique") is not None:
                results[i] = got = Critique.model_validate(entry["critique"])
                self.outcomes.record(got, reused=True)
            else:
                todo.append(i)
        fresh = self.critique_many([reqs[i] for i in todo]) if todo else []
        for i, got in zip(todo, fresh, strict=True):
            results[i] = got
            self.outcomes.record(got)
            entry: dict[str, Any] = {"key": keys[i], "step": step, "index": i}
            if isinstance(got, CriticError):
                entry["error"] = {"status": got.status, "code": got.code, "message": str(got)}
            else:
                entry["critique"] = got.model_dump(mode="json")
            self.log.append(entry)
        return [r for r in results if r is not None]

    def close(self) -> None:
        self._run(self._pool.aclose())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
        self.log.close()
