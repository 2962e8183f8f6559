"""The HTTP routes of DESIGN.md. Handlers only translate: the work is in `dispatch` and `critic.Critic`.

Every route but the probes (/healthz, /readyz) needs a key when keys are configured; /metrics and the docs
only when `metrics_public` / `docs_public` say so.
"""

from __future__ import annotations

import email.message
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Request, Response
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

import shared
from critic_service import dispatch
from critic_service.admission import run_for_client
from critic_service.docs import build_docs_router
from critic_service.errors import UnsupportedMediaType
from critic_service.lifecycle import readiness
from critic_service.state import ServiceState
from shared.prompts import critic_prompt_version
from shared.schemas import (
    BatchCritiqueRequest,
    BatchCritiqueResponse,
    Critique,
    CritiqueRequest,
    ErrorBody,
    FeedbackMode,
    Health,
    Limits,
    ServiceInfo,
)


def _error(description: str, retry_after: bool = False) -> dict[str, Any]:
    response: dict[str, Any] = {"model": ErrorBody, "description": description}
    if retry_after:
        response["headers"] = {
            "Retry-After": {"description": "Seconds to wait before retrying.", "schema": {"type": "string"}}
        }
    return response


AUTH_ERRORS: dict[int | str, dict[str, Any]] = {401: _error("Missing or invalid API key.")}
CRITIQUE_ERRORS: dict[int | str, dict[str, Any]] = {
    **AUTH_ERRORS,
    413: _error("The body is larger than max_body_bytes."),
    415: _error("The body is not application/json."),
    422: _error("Invalid request (schema), or a problem/solution the critic cannot handle."),
    429: _error("The key is over its quota.", retry_after=True),
    502: _error("No valid critique within max_attempts, or the engine failed."),
    503: _error("The engine is loading or overloaded, or the service is shutting down.", retry_after=True),
    504: _error("No critique within request_timeout_s."),
}


async def get_state(request: Request) -> ServiceState:  # async: FastAPI runs plain-def dependencies in a thread
    st: ServiceState = request.app.state.service
    return st


State = Annotated[ServiceState, Depends(get_state)]
_bearer = HTTPBearer(auto_error=False, description="An API key of the service: `Authorization: Bearer <key>`.")


async def authenticate(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> str:
    """The caller's key name (`anonymous` without keys); 401 otherwise. The name goes to the request log."""
    st: ServiceState = request.app.state.service
    name = st.keys.check(f"Bearer {credentials.credentials}" if credentials is not None else None)
    request.state.key_name = name
    return name


Caller = Annotated[str, Depends(authenticate)]


async def metrics_access(request: Request, st: State) -> None:
    if not st.settings.metrics_public:
        await authenticate(request, await _bearer(request))


async def docs_access(request: Request, st: State) -> None:
    if not st.settings.docs_public:
        await authenticate(request, await _bearer(request))


async def require_json(_: Caller, content_type: Annotated[str | None, Header(include_in_schema=False)] = None) -> None:
    """The body must be sent as application/json (FastAPI does not read a body without that type; curl -d sends
    a form type: say so). Authentication comes first: a caller without a key learns nothing about the body."""
    if content_type is not None and content_type.startswith("application/json"):
        return  # the common case, without parsing the header
    if content_type is None:
        raise UnsupportedMediaType(
            "the request has no Content-Type: send the body as JSON with Content-Type: application/json",
            details=[{"content_type": None, "expected": "application/json"}],
        )
    message = email.message.Message()
    message["content-type"] = content_type
    subtype = message.get_content_subtype()
    if message.get_content_maintype() == "application" and (subtype == "json" or subtype.endswith("+json")):
        return
    hint = " (with curl -d, add -H 'Content-Type: application/json')" if "form" in content_type else ""
    raise UnsupportedMediaType(
        f"Content-Type must be application/json, not {content_type!r}{hint}",
        details=[{"content_type": content_type, "expected": "application/json"}],
    )


async def bypass_cache(
    cache_control: Annotated[
        str | None, Header(description="`no-cache`: compute a fresh critique instead of reading the cache.")
    ] = None,
) -> bool:
    return cache_control is not None and "no-cache" in [d.strip().lower() for d in cache_control.split(",")]


Fresh = Annotated[bool, Depends(bypass_cache)]

probes = APIRouter(tags=["probes"])
api = APIRouter(prefix="/v1", tags=["critiques"])


@probes.get("/healthz", response_model=Health)
async def healthz() -> Health:
    """The process is alive (also while the engine loads)."""
    return Health(status="ok")


@probes.get(
    "/readyz",
    response_model=Health,
    responses={503: {"model": Health, "description": "Loading, or failing (the detail says why)."}},
)
async def readyz(st: State) -> JSONResponse:
    """The engine is loaded and answering."""
    health, status = await readiness(st)
    headers = {"Retry-After": "5"} if status != 200 else None
    return JSONResponse(health.model_dump(), status_code=status, headers=headers)


@probes.get("/metrics", include_in_schema=False, dependencies=[Depends(metrics_access)])
async def metrics(st: State) -> Response:
    st.metrics.waiting.set(st.admission.waiting)
    if st.cache is not None:
        st.metrics.cache_entries.set(len(st.cache))
        st.metrics.cache_evictions.set(st.cache.evictions)
    return Response(st.metrics.render(), media_type="text/plain; version=0.0.4")


@api.get("/info", response_model=ServiceInfo, responses=AUTH_ERRORS)
async def info(st: State, _: Caller) -> ServiceInfo:
    """Engine, model, prompt version and limits."""
    return ServiceInfo(
        engine=st.engine_name,
        model=st.model_name,
        prompt_version=critic_prompt_version(FeedbackMode.splice),
        feedback_modes=list(FeedbackMode),
        max_attempts=st.settings.max_attempts,
        limits=Limits(max_body_bytes=st.settings.max_body_bytes),
        version=shared.__version__,
    )


@api.post("/critiques", response_model=Critique, responses=CRITIQUE_ERRORS, dependencies=[Depends(require_json)])
async def critique(body: CritiqueRequest, request: Request, st: State, key: Caller, fresh: Fresh) -> Response:
    """A validated faithful-scribe critique of one student solution."""
    st.ready_critic()
    st.limiter.admit(key)
    result = await run_for_client(request, dispatch.critique_one(st, key, body, fresh), st.drain)
    if result is None:
        return Response(status_code=499)  # the client left; nobody reads this
    return JSONResponse(result.model_dump(mode="json"))


@api.post(
    "/critiques/batch",
    response_model=BatchCritiqueResponse,
    responses=CRITIQUE_ERRORS,
    dependencies=[Depends(require_json)],
)
async def batch(body: BatchCritiqueRequest, request: Request, st: State, key: Caller, fresh: Fresh) -> Response:
    """Several critiques, in request order. Each item is validated and critiqued on its own: a malformed or
    failed item carries its error (and the status it would have had alone) and the others still return."""
    result = await run_for_client(request, dispatch.critique_batch(st, key, body.items, fresh), st.drain)
    if result is None:
        return Response(status_code=499)
    return JSONResponse(result.model_dump(mode="json"))


router = APIRouter()
router.include_router(probes)
router.include_router(api)
router.include_router(build_docs_router(docs_access))
