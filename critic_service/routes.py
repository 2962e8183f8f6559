"""The HTTP routes of DESIGN.md. Handlers only translate: the work is in `critic.Critic`."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Depends, Header, Request, Response
from fastapi.responses import JSONResponse

import shared
from critic_service.errors import Overloaded, ServiceError
from critic_service.state import ServiceState
from shared.prompts import critic_prompt_version
from shared.schemas import (
    BatchCritiqueRequest,
    BatchCritiqueResponse,
    BatchItemResult,
    Critique,
    CritiqueRequest,
    ErrorBody,
    FeedbackMode,
    Health,
    Limits,
    ServiceInfo,
)

T = TypeVar("T")
_ERRORS: dict[int | str, dict[str, Any]] = {s: {"model": ErrorBody} for s in (401, 413, 422, 429, 502, 503, 504)}


def state(request: Request) -> ServiceState:
    st: ServiceState = request.app.state.service
    return st


async def require_key(
    request: Request, authorization: Annotated[str | None, Header(include_in_schema=False)] = None
) -> None:
    state(request).keys.check(authorization)


class Admission:
    """At most `concurrency` critiques run at once and at most `queue` wait; beyond that, 503 + Retry-After."""

    def __init__(self, concurrency: int, queue: int) -> None:
        self._slots = asyncio.Semaphore(concurrency)
        self._queue = queue
        self.waiting = 0

    @contextlib.asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        if self._slots.locked() and self.waiting >= self._queue:
            raise Overloaded("too many critiques in progress; retry later", retry_after=1.0)
        self.waiting += 1
        try:
            await self._slots.acquire()
        finally:
            self.waiting -= 1
        try:
            yield
        finally:
            self._slots.release()


async def until_disconnect(request: Request, work: Awaitable[T], poll_s: float = 0.2) -> T | None:
    """Run `work`, cancelling it (and so aborting it in the engine) if the client goes away first."""
    task = asyncio.ensure_future(work)
    while True:
        done, _ = await asyncio.wait({task}, timeout=poll_s)
        if done:
            return task.result()
        if await request.is_disconnected():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            return None


async def _one(st: ServiceState, item: CritiqueRequest) -> Critique:
    async with st.admission.slot():
        st.metrics.in_flight.inc()
        try:
            critique = await st.ready_critic().critique(item)
        finally:
            st.metrics.in_flight.dec()
    st.metrics.observe(critique)
    return critique


def build_router() -> APIRouter:
    probes = APIRouter(tags=["probes"])
    api = APIRouter(prefix="/v1", tags=["critiques"], dependencies=[Depends(require_key)], responses=_ERRORS)

    @probes.get("/healthz", response_model=Health)
    async def healthz() -> Health:
        """The process is alive."""
        return Health(status="ok")

    @probes.get("/readyz", response_model=Health, responses={503: {"model": Health}})
    async def readyz(request: Request) -> Response:
        """The engine is loaded and answering."""
        st = state(request)
        if st.startup_error is not None:
            body = Health(status="failing", detail=st.startup_error)
        elif st.engine is not None and await st.engine.ready():
            return JSONResponse(Health(status="ok").model_dump())
        else:
            body = Health(status="loading", detail="the engine is not ready yet")
        return JSONResponse(body.model_dump(), status_code=503, headers={"Retry-After": "5"})

    @probes.get("/metrics", include_in_schema=False)
    async def metrics(
        request: Request, authorization: Annotated[str | None, Header(include_in_schema=False)] = None
    ) -> Response:
        st = state(request)
        if not st.settings.metrics_public:
            st.keys.check(authorization)
        st.metrics.waiting.set(st.admission.waiting)
        return Response(st.metrics.render(), media_type="text/plain; version=0.0.4")

    @api.get("/info", response_model=ServiceInfo)
    async def info(request: Request) -> ServiceInfo:
        """Engine, model, prompt version and limits."""
        st = state(request)
        return ServiceInfo(
            engine=st.engine_name,
            model=st.model_name,
            prompt_version=critic_prompt_version(FeedbackMode.splice),
            feedback_modes=list(FeedbackMode),
            max_attempts=st.settings.max_attempts,
            limits=Limits(max_body_bytes=st.settings.max_body_bytes),
            version=shared.__version__,
        )

    @api.post("/critiques", response_model=Critique)
    async def critique(body: CritiqueRequest, request: Request) -> Response:
        """A validated faithful-scribe critique of one student solution."""
        st = state(request)
        st.ready_critic()
        result = await until_disconnect(request, _one(st, body))
        if result is None:
            return Response(status_code=499)  # the client left; nobody reads this
        return JSONResponse(result.model_dump(mode="json"))

    @api.post("/critiques/batch", response_model=BatchCritiqueResponse)
    async def batch(body: BatchCritiqueRequest, request: Request) -> Response:
        """Several critiques, in request order; a failed item carries its error and the others still return."""
        st = state(request)
        st.ready_critic()

        async def item(i: int, req: CritiqueRequest) -> BatchItemResult:
            try:
                return BatchItemResult(index=i, status=200, critique=await _one(st, req))
            except ServiceError as exc:
                st.metrics.errors.labels(code=exc.code.value).inc()
                return BatchItemResult(index=i, status=exc.status, error=exc.info())

        work = asyncio.gather(*(item(i, r) for i, r in enumerate(body.items)))
        results = await until_disconnect(request, work)
        if results is None:
            return Response(status_code=499)
        return JSONResponse(BatchCritiqueResponse(results=list(results)).model_dump(mode="json"))

    root = APIRouter()
    root.include_router(probes)
    root.include_router(api)
    return root
