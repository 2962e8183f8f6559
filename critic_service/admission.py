"""Admission control: how many critiques run and wait at once, and how long one may run.

A critique runs until it finishes, its client goes away (the work is cancelled, so the engine aborts it), or a
graceful shutdown's drain time is up (the client gets a clean 503 `not_ready` with `Retry-After`, so it can
retry on another replica, instead of a dropped connection).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable
from typing import TypeVar

from starlette.requests import Request

from critic_service.errors import NotReady, Overloaded

T = TypeVar("T")


class Admission:
    """At most `concurrency` critiques run at once and at most `queue` wait; beyond that, 503 + Retry-After."""

    def __init__(self, concurrency: int, queue: int) -> None:
        self._slots = asyncio.Semaphore(concurrency)
        self._queue = queue
        self.waiting = 0
        self.running = 0

    @contextlib.asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        if self._slots.locked() and self.waiting >= self._queue:
            raise Overloaded("too many critiques in progress; retry later", retry_after=1.0)
        self.waiting += 1
        try:
            await self._slots.acquire()
        finally:
            self.waiting -= 1
        self.running += 1
        try:
            yield
        finally:
            self.running -= 1
            self._slots.release()


class Drain:
    """The graceful-shutdown clock: once `begin` is called, in-flight critiques have `timeout_s` to finish."""

    def __init__(self) -> None:
        self.expired = asyncio.Event()
        self.started_at: float | None = None

    @property
    def draining(self) -> bool:
        return self.started_at is not None

    def begin(self, timeout_s: float) -> None:
        if self.started_at is not None:
            return
        self.started_at = time.monotonic()
        asyncio.get_running_loop().call_later(timeout_s, self.expired.set)


async def run_for_client(request: Request, work: Awaitable[T], drain: Drain, poll_s: float = 0.2) -> T | None:
    """Run `work` for one request: its result; None if the client went away first (the work is cancelled);
    `NotReady` if the drain time of a shutdown ran out first (the work is cancelled too)."""
    task = asyncio.ensure_future(work)
    try:
        while True:
            done, _ = await asyncio.wait({task}, timeout=poll_s)
            if done:
                return task.result()
            # Checked once per poll (not awaited): one task per request is cheaper, and 0.2 s late is soon enough.
            if drain.expired.is_set():
                raise NotReady("the service is shutting down; retry (on another replica)", retry_after=1.0)
            if await request.is_disconnected():
                return None
    finally:
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
