"""The engine's life in the app: loaded in the background after the server binds, reported by /readyz, stopped
last on shutdown.

While the engine loads (minutes for a 32B model), /healthz answers 200 and /readyz and the critique routes
answer 503 `not_ready` with Retry-After. A load failure is logged and shown on /readyz as "failing" with its
reason; with `exit_on_load_failure` the server is then told to stop (and the process exits with status 3).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI

from critic_service.engines.base import Engine
from critic_service.state import ServiceState
from shared.schemas import Health

log = logging.getLogger("stepalign.critic")


async def load(st: ServiceState, engine: Engine | None) -> None:
    """Open the cache, start the answer checker and the engine, then build the critic (`st.phase` says how far)."""
    from critic_service.cache import CritiqueCache
    from critic_service.critic import Critic, CriticConfig
    from critic_service.engines.factory import build_engine
    from shared.answers import AnswerChecker, CheckerConfig

    s = st.settings
    st.load_started = time.monotonic()
    try:
        if s.cache_path is not None:
            st.cache = await asyncio.to_thread(CritiqueCache, s.cache_path, s.cache_max_entries)
        # The answer checker's worker processes start on the first check that needs math-verify.
        st.checker = AnswerChecker(CheckerConfig(workers=s.answer_workers, timeout_s=s.answer_timeout_s))
        st.engine = engine or build_engine(s)
        log.info("loading engine %s (%s)", st.engine.name, st.engine.model)
        await st.engine.start()
    except Exception as exc:
        st.phase = "failed"
        st.load_error = f"{type(exc).__name__}: {exc}"
        log.error("engine failed to load after %.1f s: %s", time.monotonic() - st.load_started, st.load_error)
        log.debug("load failure", exc_info=True)
        if s.exit_on_load_failure and st.on_load_failure is not None:
            log.error("exit_on_load_failure is set: stopping the server")
            st.on_load_failure()
        return
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
    st.phase = "ready"
    st.metrics.ready.set(1)
    health, _ = await readiness(st)
    if health.status == "ok":
        log.info("engine %s (%s) ready in %.1f s", st.engine.name, st.engine.model, time.monotonic() - st.load_started)
    else:
        log.warning("engine %s started, but is not ready: %s", st.engine.name, health.detail)


async def readiness(st: ServiceState) -> tuple[Health, int]:
    """What /readyz answers: the health body and its HTTP status."""
    if st.phase == "loading":
        waited = time.monotonic() - st.load_started
        detail = f"loading the {st.engine_name} engine ({st.model_name}): {waited:.0f} s so far"
        return Health(status="loading", detail=detail), 503
    if st.phase == "failed" or st.engine is None:
        return Health(status="failing", detail=f"the engine failed to load: {st.load_error}"), 503
    if await st.engine.ready():
        return Health(status="ok"), 200
    # Engines that talk to something else (the openai engine's upstream) say what is wrong.
    reason = getattr(st.engine, "unready_reason", "") or "the engine does not answer its health check"
    return Health(status="failing", detail=reason), 503


async def stop(st: ServiceState) -> None:
    """Stop the engine, the answer checker's processes and the cache (in that order)."""
    st.critic = None
    if st.engine is not None:
        try:
            await st.engine.close()
        except Exception:
            log.exception("engine %s did not close cleanly", st.engine.name)
    if st.checker is not None:
        st.checker.close()
    if st.cache is not None:
        st.cache.close()


def lifespan(st: ServiceState, engine: Engine | None) -> Any:
    """The app's lifespan: start loading in the background, and on shutdown stop what was started."""

    @contextlib.asynccontextmanager
    async def run(app: FastAPI) -> AsyncIterator[None]:
        task = asyncio.create_task(load(st, engine), name="stepalign-engine-load")
        try:
            yield
        finally:
            if not task.done():
                log.info("shutting down while the engine loads: cancelling the load")
                task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await stop(st)

    return run
