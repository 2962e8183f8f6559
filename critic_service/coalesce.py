"""Single flight: identical concurrent requests share one engine call.

Requests are identical when their cache key is (the same inputs decide the output). The first caller of a key
starts the work as its own task; later callers of the same key, while it runs, wait for the same result. The
work is cancelled only when every caller waiting for it has gone (a client that disconnects does not cancel
a critique that others still wait for).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass
class _Flight(Generic[T]):
    task: asyncio.Task[T]
    waiters: int = 0
    abandoned: bool = False  # cancelled because every caller left; a new caller starts afresh


class SingleFlight(Generic[T]):
    """At most one running task per key."""

    def __init__(self) -> None:
        self._flights: dict[str, _Flight[T]] = {}
        self.shared = 0  # callers that were served by another caller's task

    def __len__(self) -> int:
        return len(self._flights)

    async def run(self, key: str, work: Callable[[], Awaitable[T]]) -> tuple[T, bool]:
        """(result, led): `led` is True for the caller whose call started the work."""
        flight = self._flights.get(key)
        led = flight is None or flight.abandoned
        if flight is None or flight.abandoned:
            flight = self._start(key, work)
        else:
            self.shared += 1
        flight.waiters += 1
        try:
            result = await asyncio.shield(flight.task)
        except asyncio.CancelledError:
            flight.waiters -= 1
            if flight.waiters == 0 and not flight.task.done():
                flight.abandoned = True
                flight.task.cancel()  # nobody wants the result any more
            raise
        flight.waiters -= 1
        return result, led

    def _start(self, key: str, work: Callable[[], Awaitable[T]]) -> _Flight[T]:
        flight = _Flight(asyncio.ensure_future(work()))
        self._flights[key] = flight
        flight.task.add_done_callback(lambda _: self._forget(key, flight))
        return flight

    def _forget(self, key: str, flight: _Flight[T]) -> None:
        if self._flights.get(key) is flight:
            del self._flights[key]
