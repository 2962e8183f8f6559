"""`create_app(settings)`: the FastAPI application, with a lifespan that builds the engine and tears it down."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

import shared
from critic_service.auth import KeyChecker
from critic_service.engines.base import Engine
from critic_service.errors import InternalError, InvalidRequest, MethodNotAllowed, NotFound, ServiceError
from critic_service.middleware import BodyLimit
from critic_service.routes import Admission, build_router
from critic_service.settings import Settings
from critic_service.state import ServiceState

log = logging.getLogger("stepalign.critic")


def error_response(exc: ServiceError) -> JSONResponse:
    headers = {"Retry-After": f"{max(1, round(exc.retry_after))}"} if exc.retry_after is not None else None
    return JSONResponse(exc.body().model_dump(mode="json"), status_code=exc.status, headers=headers)


def _validation_details(exc: RequestValidationError) -> list[dict[str, Any]]:
    # The offending input is not echoed back: it can be large, and it is the caller's own data anyway.
    return [
        {"loc": [str(p) for p in e.get("loc", ())], "msg": e.get("msg", ""), "type": e.get("type", "")}
        for e in exc.errors()
    ]


def install_error_handlers(app: FastAPI, st: ServiceState) -> None:
    @app.exception_handler(ServiceError)
    async def _service_error(request: Request, exc: ServiceError) -> JSONResponse:
        st.metrics.errors.labels(code=exc.code.value).inc()
        return error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        details = _validation_details(exc)
        where = ", ".join(".".join(d["loc"][1:] or d["loc"]) + f": {d['msg']}" for d in details[:5])
        err = InvalidRequest(f"invalid request: {where}", details=details)
        st.metrics.errors.labels(code=err.code.value).inc()
        return error_response(err)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        # Routing raises only these two; anything else is reported as the internal error it is.
        if exc.status_code == 404:
            return error_response(NotFound(f"no route {request.method} {request.url.path}"))
        if exc.status_code == 405:
            return error_response(MethodNotAllowed(f"{request.method} is not allowed on {request.url.path}"))
        return error_response(InternalError(f"unexpected HTTP error {exc.status_code}: {exc.detail}"))

    @app.exception_handler(Exception)
    async def _crash(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return error_response(InternalError(f"internal error: {type(exc).__name__}"))


async def _start(st: ServiceState, engine: Engine | None) -> None:
    from critic_service.cache import CritiqueCache
    from critic_service.critic import Critic, CriticConfig
    from critic_service.engines.factory import build_engine
    from shared.answers import AnswerChecker, CheckerConfig

    s = st.settings
    st.checker = AnswerChecker(CheckerConfig(workers=s.answer_workers, timeout_s=s.answer_timeout_s))
    st.cache = CritiqueCache(s.cache_path) if s.cache_path is not None else None
    await st.checker.acheck("1", "2")  # start the worker processes now, not on the first request
    st.engine = engine or build_engine(s)
    t0 = time.perf_counter()
    await st.engine.start()
    log.info("engine %s (%s) ready in %.1f s", st.engine.name, st.engine.model, time.perf_counter() - t0)
    config = CriticConfig(
        sampling=s.effective_sampling,
        max_attempts=s.max_attempts,
        fidelity_threshold=s.fidelity_threshold,
        repair_near_copies=s.repair_near_copies,
        structured_outputs=s.structured_outputs,
        schema_limits=s.schema_limits,
        request_timeout_s=s.request_timeout_s,
    )
    st.critic = Critic(st.engine, st.checker, config, st.cache)


async def _stop(st: ServiceState) -> None:
    st.critic = None
    if st.engine is not None:
        await st.engine.close()
    if st.checker is not None:
        st.checker.close()
    if st.cache is not None:
        st.cache.close()


def create_app(settings: Settings | None = None, *, engine: Engine | None = None) -> FastAPI:
    """The critic service. `engine` replaces the configured one (tests inject fakes for fault injection)."""
    settings = settings or Settings()
    st = ServiceState(
        settings=settings,
        keys=KeyChecker(settings.keys()),
        admission=Admission(settings.max_concurrency, settings.max_queue),
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        try:
            await _start(st, engine)
        except Exception as exc:
            st.startup_error = f"{type(exc).__name__}: {exc}"
            await _stop(st)
            raise
        try:
            yield
        finally:
            await _stop(st)

    app = FastAPI(
        title="StepAlign critic",
        version=shared.__version__,
        description="Schema-validated faithful-scribe critiques of step-by-step math solutions.",
        lifespan=lifespan,
    )
    app.state.service = st
    install_error_handlers(app, st)
    app.include_router(build_router())
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    return app
