"""`create_app(settings)`: the FastAPI application. The server binds at once; the engine loads in the
background (see `lifecycle`)."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

import shared
from critic_service.admission import Admission
from critic_service.auth import KeyChecker
from critic_service.docs import openapi_document
from critic_service.engines.base import Engine
from critic_service.errors import install_error_handlers
from critic_service.lifecycle import lifespan
from critic_service.middleware import AccessLog, BodyLimit
from critic_service.ratelimit import RateLimiter
from critic_service.routes import router
from critic_service.settings import Settings
from critic_service.state import ServiceState


def create_app(settings: Settings | None = None, *, engine: Engine | None = None) -> FastAPI:
    """The critic service. `engine` replaces the configured one (tests inject fakes for fault injection)."""
    settings = settings or Settings()
    st = ServiceState(
        settings=settings,
        keys=KeyChecker(settings.named_keys()),
        admission=Admission(settings.max_concurrency, settings.max_queue),
        limiter=RateLimiter(settings.rate_limit, settings.key_rate_limits),
    )
    app = FastAPI(
        title="StepAlign critic",
        version=shared.__version__,
        description="Schema-validated faithful-scribe critiques of step-by-step math solutions.",
        lifespan=lifespan(st, engine),
        docs_url=None,  # served by critic_service.docs, from local files
        redoc_url=None,
        openapi_url=None,
    )
    app.state.service = st

    def openapi() -> dict[str, Any]:
        return openapi_document(app, st.keys.enabled)

    app.openapi = openapi  # type: ignore[method-assign]
    install_error_handlers(app)
    app.include_router(router)
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    app.add_middleware(AccessLog)
    return app
