"""A load generator for the critic (aiohttp: an httpx client would be the bottleneck): N concurrent clients post
distinct critique requests for a while; a refused client waits what Retry-After says (capped) and goes on.

Used by the suite's short load test (test_load.py) and by bench/load.py.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import statistics
import time
from dataclasses import dataclass, field
from typing import Any


@dataclass
class LoadResult:
    statuses: collections.Counter[int] = field(default_factory=collections.Counter)
    latencies_s: list[float] = field(default_factory=list)  # of the 200s
    refusals_without_retry_after: int = 0
    duration_s: float = 0.0

    @property
    def ok(self) -> int:
        return self.statuses[200]

    def summary(self) -> dict[str, Any]:
        lat = sorted(self.latencies_s) or [0.0]
        return {
            "requests": sum(self.statuses.values()),
            "statuses": dict(sorted(self.statuses.items())),
            "critiques_per_s": round(self.ok / self.duration_s, 1) if self.duration_s else 0.0,
            "p50_ms": round(1e3 * statistics.median(lat), 1),
            "p99_ms": round(1e3 * lat[int(0.99 * (len(lat) - 1))], 1),
            "refusals_without_retry_after": self.refusals_without_retry_after,
        }


async def run_load(
    url: str,
    clients: dict[str, int],
    duration_s: float,
    bodies: list[dict[str, Any]],
    *,
    keys: dict[str, str] | None = None,
    retry_cap_s: float = 2.0,
) -> dict[str, LoadResult]:
    """`clients[name]` clients per caller name, each sending as `keys[name]` (no key if absent), for
    `duration_s`; the results per caller name."""
    import aiohttp

    results = {name: LoadResult() for name in clients}
    cycle = itertools.cycle(bodies)
    deadline = time.monotonic() + duration_s

    async def client(session: aiohttp.ClientSession, name: str) -> None:
        result = results[name]
        key = (keys or {}).get(name)
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        while time.monotonic() < deadline:
            t0 = time.perf_counter()
            async with session.post(f"{url}/v1/critiques", json=next(cycle), headers=headers) as r:
                await r.read()
                status, retry_after = r.status, r.headers.get("Retry-After")
            result.statuses[status] += 1
            if status == 200:
                result.latencies_s.append(time.perf_counter() - t0)
            elif status in (429, 503):
                if retry_after is None:
                    result.refusals_without_retry_after += 1
                await asyncio.sleep(min(float(retry_after or 1), retry_cap_s, max(0.0, deadline - time.monotonic())))

    connector = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=120)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        started = time.monotonic()
        await asyncio.gather(*(client(session, name) for name, n in clients.items() for _ in range(n)))
        for result in results.values():
            result.duration_s = time.monotonic() - started
    return results
