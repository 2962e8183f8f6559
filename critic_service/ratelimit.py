"""Per-key quotas: critiques per minute and generated tokens per minute, as token buckets.

The request bucket holds up to `burst` critiques (default: one minute's worth) and refills continuously at the
per-minute rate; a request (a batch counts one per item) takes from it up front. Generated tokens are known only
after a critique, so they are charged afterwards and may drive the token bucket into debt; while it is in debt
the key's next requests are refused, with `Retry-After` set to the time the debt takes to refill. Each key has
its own buckets, so one team's burst never eats another's quota.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field

from critic_service.errors import RateLimited


class RateLimit(BaseModel):
    """Quotas of one key; null = unlimited."""

    model_config = ConfigDict(extra="forbid")

    requests_per_min: int | None = Field(default=None, ge=1, description="Critiques per minute (batch items count).")
    burst: int | None = Field(
        default=None, ge=1, description="Critiques a key may send at once; default: a minute's worth."
    )
    tokens_per_min: int | None = Field(default=None, ge=1, description="Generated (completion) tokens per minute.")


@dataclass
class _Bucket:
    per_min: int
    capacity: int
    level: float
    stamp: float

    @property
    def rate(self) -> float:
        return self.per_min / 60.0

    def refill(self, now: float) -> None:
        self.level = min(float(self.capacity), self.level + (now - self.stamp) * self.rate)
        self.stamp = now

    def wait_for(self, amount: float) -> float:
        """Seconds until the bucket holds `amount` (0 if it does now)."""
        return max(0.0, (amount - self.level) / self.rate)


class RateLimiter:
    """The buckets of every key that has a limit; keys without one are never refused."""

    def __init__(
        self,
        default: RateLimit,
        per_key: dict[str, RateLimit] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.default = default
        self.per_key = per_key or {}
        self._clock = clock
        self._lock = threading.Lock()
        self._requests: dict[str, _Bucket] = {}
        self._tokens: dict[str, _Bucket] = {}

    def limit(self, key: str) -> RateLimit:
        return self.per_key.get(key, self.default)

    def _bucket(self, table: dict[str, _Bucket], key: str, per_min: int, now: float, capacity: int) -> _Bucket:
        bucket = table.get(key)
        if bucket is None or (bucket.per_min, bucket.capacity) != (per_min, capacity):
            bucket = table[key] = _Bucket(per_min, capacity, float(capacity), now)
        bucket.refill(now)
        return bucket

    def admit(self, key: str, requests: int = 1) -> None:
        """Take `requests` critiques from `key`'s quota, or raise `RateLimited` with the wait."""
        limit = self.limit(key)
        with self._lock:
            now = self._clock()
            if limit.tokens_per_min is not None:
                tokens = self._bucket(self._tokens, key, limit.tokens_per_min, now, limit.tokens_per_min)
                if tokens.level < 0:  # in debt: the wait is until it is paid back
                    raise self._refused(key, "tokens_per_min", limit.tokens_per_min, tokens.wait_for(0.0))
            if limit.requests_per_min is not None:
                burst = limit.burst or limit.requests_per_min
                reqs = self._bucket(self._requests, key, limit.requests_per_min, now, burst)
                if requests > burst:
                    raise RateLimited(
                        f"a batch of {requests} items exceeds the limit of key {key!r}: {burst} critiques at once; "
                        "send smaller batches",
                        details=[{"key": key, "limit": "burst", "value": burst}],
                        retry_after=60.0,
                    )
                if reqs.level < requests:
                    raise self._refused(key, "requests_per_min", limit.requests_per_min, reqs.wait_for(requests))
                reqs.level -= requests

    def charge(self, key: str, tokens: int) -> None:
        """Count `tokens` generated for `key` (after the fact; the bucket may go into debt)."""
        limit = self.limit(key)
        if limit.tokens_per_min is None or tokens <= 0:
            return
        with self._lock:
            bucket = self._bucket(self._tokens, key, limit.tokens_per_min, self._clock(), limit.tokens_per_min)
            bucket.level -= tokens

    @staticmethod
    def _refused(key: str, which: str, value: int, wait: float) -> RateLimited:
        unit = "critiques" if which == "requests_per_min" else "generated tokens"
        retry = max(1, math.ceil(wait))
        return RateLimited(
            f"key {key!r} is over its limit of {value} {unit} per minute; retry in {retry} s",
            details=[{"key": key, "limit": which, "value": value, "retry_after_s": round(wait, 3)}],
            retry_after=float(retry),
        )
