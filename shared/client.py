"""The typed async HTTP client of the critic API, used by `stepalign-critic critique` and by the trainer.

Every failure surfaces as one exception type, `CriticError`, carrying the HTTP status and the API's error body,
and saying whether a retry can help (by error code: transport errors, 429, 503, 504 and 502 `engine_error` can;
502 `invalid_critique`, 4xx and 500 never do).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any, TypeVar

import httpx
from pydantic import BaseModel, Field, ValidationError

from shared.schemas import (
    BatchCritiqueRequest,
    BatchCritiqueResponse,
    Critique,
    CritiqueRequest,
    ErrorBody,
    Health,
    ServiceInfo,
)

M = TypeVar("M", bound=BaseModel)
RETRYABLE_STATUSES = frozenset({429, 503, 504})


class CriticError(Exception):
    """A critic request failed: `status` is the HTTP status (None for transport errors), `body` the error body."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        body: ErrorBody | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.body = body
        self.retry_after = retry_after

    @property
    def retryable(self) -> bool:
        """Whether a retry can help, by error code: transport errors, 429, 503 and 504 (load: the service's
        deadline counts time spent queued) yes; 502 only for `engine_error` or a proxy's body-less 502, never for
        `invalid_critique` (the critic decodes greedily, so it would write the same invalid critique again); 4xx
        and 500 (a bug) never."""
        if self.status is None or self.status in RETRYABLE_STATUSES:
            return True
        if self.status == 502:
            return self.code in (None, "engine_error")
        return False

    @property
    def code(self) -> str | None:
        return self.body.error.code.value if self.body is not None else None


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after")
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None


def raise_for_error(response: httpx.Response) -> None:
    """Turn a non-2xx response into a `CriticError` with the parsed error body (when there is one)."""
    if response.is_success:
        return
    body: ErrorBody | None = None
    try:
        body = ErrorBody.model_validate_json(response.content)
        message = f"{response.status_code} {body.error.code.value}: {body.error.message}"
    except ValidationError:
        message = f"{response.status_code}: {response.text[:300]}"
    raise CriticError(message, status=response.status_code, body=body, retry_after=_retry_after(response))


class CriticClient:
    """One critic server (base URL), with an optional bearer key and timeouts."""

    def __init__(
        self,
        base_url: str,
        *,
        api_key: str | None = None,
        connect_timeout_s: float = 5.0,
        read_timeout_s: float = 900.0,
    ) -> None:
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        timeout = httpx.Timeout(read_timeout_s, connect=connect_timeout_s)
        self.base_url = base_url.rstrip("/")
        self._http = httpx.AsyncClient(base_url=self.base_url, headers=headers, timeout=timeout)

    async def _call(self, method: str, path: str, model: type[M], json: Any = None) -> M:
        try:
            response = await self._http.request(method, path, json=json)
        except httpx.TransportError as exc:
            raise CriticError(f"{self.base_url}{path}: {type(exc).__name__}: {exc}") from exc
        raise_for_error(response)
        try:
            return model.model_validate_json(response.content)
        except ValidationError as exc:
            raise CriticError(f"{self.base_url}{path}: malformed {model.__name__}: {exc}", status=502) from exc

    async def critique(self, request: CritiqueRequest) -> Critique:
        """POST /v1/critiques."""
        return await self._call("POST", "/v1/critiques", Critique, request.model_dump(mode="json", exclude_none=True))

    async def batch(self, requests: list[CritiqueRequest]) -> BatchCritiqueResponse:
        """POST /v1/critiques/batch."""
        body = BatchCritiqueRequest(items=requests).model_dump(mode="json", exclude_none=True)
        return await self._call("POST", "/v1/critiques/batch", BatchCritiqueResponse, body)

    async def info(self) -> ServiceInfo:
        """GET /v1/info."""
        return await self._call("GET", "/v1/info", ServiceInfo)

    async def ready(self) -> Health:
        """GET /readyz (raises `CriticError` with status 503 while the engine loads)."""
        return await self._call("GET", "/readyz", Health)

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> CriticClient:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()


class RetryPolicy(BaseModel):
    """When and how long to retry: only errors a retry can fix (429, 5xx, transport), with exponential backoff
    and jitter, and never sooner than a server's Retry-After."""

    max_attempts: int = Field(default=6, ge=1, description="Tries per critique, the first included.")
    base_delay_s: float = Field(default=0.5, ge=0.0, description="Delay before the first retry.")
    max_delay_s: float = Field(default=30.0, ge=0.0, description="Cap on one delay.")
    jitter: float = Field(default=0.5, ge=0.0, le=1.0, description="Each delay is scaled by 1 +- jitter at random.")

    def delay(self, retry: int, retry_after: float | None, rng: random.Random) -> float:
        backoff = min(self.max_delay_s, self.base_delay_s * (2 ** (retry - 1)))
        backoff *= 1 + self.jitter * (2 * rng.random() - 1)
        return float(max(backoff, retry_after or 0.0))


class CriticPool:
    """Several critic replicas behind one async API: least-outstanding-requests balancing, a concurrency
    limit, retries per `RetryPolicy`; a replica that fails at the transport level is passed over until its
    cool-down ends (or until no other is left)."""

    def __init__(
        self,
        urls: list[str],
        *,
        api_key: str | None = None,
        max_concurrency: int = 64,
        retry: RetryPolicy | None = None,
        connect_timeout_s: float = 5.0,
        read_timeout_s: float = 900.0,
        cooldown_s: float = 10.0,
        seed: int | None = None,
    ) -> None:
        if not urls:
            raise ValueError("CriticPool needs at least one critic URL")
        self.clients = [
            CriticClient(u, api_key=api_key, connect_timeout_s=connect_timeout_s, read_timeout_s=read_timeout_s)
            for u in urls
        ]
        self.retry = retry or RetryPolicy()
        self.cooldown_s = cooldown_s
        self.outstanding = [0] * len(urls)
        self._down_until = [0.0] * len(urls)
        self._slots = asyncio.Semaphore(max_concurrency)
        self._rng = random.Random(seed)
        self.stats: dict[str, int] = {"requests": 0, "retries": 0, "failures": 0}

    def _pick(self) -> int:
        now = time.monotonic()
        up = [i for i in range(len(self.clients)) if self._down_until[i] <= now] or list(range(len(self.clients)))
        low = min(self.outstanding[i] for i in up)
        return self._rng.choice([i for i in up if self.outstanding[i] == low])

    async def critique(self, request: CritiqueRequest) -> Critique:
        """One critique, retried on retryable errors; raises the last `CriticError` when out of attempts."""
        async with self._slots:
            self.stats["requests"] += 1
            for attempt in range(1, self.retry.max_attempts + 1):
                i = self._pick()
                self.outstanding[i] += 1
                try:
                    return await self.clients[i].critique(request)
                except CriticError as exc:
                    if exc.status is None:
                        self._down_until[i] = time.monotonic() + self.cooldown_s
                    if not exc.retryable or attempt == self.retry.max_attempts:
                        self.stats["failures"] += 1
                        raise
                    self.stats["retries"] += 1
                    await asyncio.sleep(self.retry.delay(attempt, exc.retry_after, self._rng))
                finally:
                    self.outstanding[i] -= 1
        raise AssertionError("unreachable")

    async def wait_ready(
        self,
        timeout_s: float,
        progress: Callable[[str], None] | None = None,
        poll_s: float = 2.0,
        report_every_s: float = 10.0,
    ) -> int:
        """Poll every replica's /readyz until one answers ready; return its index. Raises `CriticError` (the last
        replica's answer) after `timeout_s`. `progress` gets a line every `report_every_s` while waiting."""
        started = time.monotonic()
        last_report = started
        last: CriticError | None = None
        while True:
            for i, client in enumerate(self.clients):
                try:
                    await client.ready()
                    return i
                except CriticError as exc:
                    last = exc
            now = time.monotonic()
            if now - started >= timeout_s:
                assert last is not None
                raise CriticError(
                    f"no critic ready after {timeout_s:g} s: {last}", status=last.status, body=last.body
                ) from last
            if progress is not None and now - last_report >= report_every_s:
                last_report = now
                progress(f"waiting for the critic ({now - started:.0f} s of at most {timeout_s:g} s): {last}")
            await asyncio.sleep(poll_s)

    async def critique_many(self, requests: list[CritiqueRequest]) -> list[Critique | CriticError]:
        """All critiques concurrently (bounded by the pool's limit); failures are returned, not raised."""

        async def one(r: CritiqueRequest) -> Critique | CriticError:
            try:
                return await self.critique(r)
            except CriticError as exc:
                return exc

        return list(await asyncio.gather(*(one(r) for r in requests)))

    async def aclose(self) -> None:
        for c in self.clients:
            await c.aclose()
