"""The way of one critique through the service, after auth and before the engine: quota, single flight,
admission, the critic, metrics, and the token charge. Batches go the same way, item by item."""

from __future__ import annotations

import asyncio
import uuid

from pydantic import JsonValue, ValidationError

from critic_service.critic import Critic
from critic_service.errors import InvalidRequest, ServiceError, summarize, validation_details
from critic_service.state import ServiceState
from shared.schemas import BatchCritiqueResponse, BatchItemResult, Critique, CritiqueRequest


def flight_key(critic: Critic, req: CritiqueRequest, fresh: bool) -> str:
    """Identical requests share a flight: the cache key says what decides the output. A request that bypasses
    the cache only joins others that bypass it too."""
    return critic._key(req) + ("|fresh" if fresh else "")


async def critique_one(st: ServiceState, key: str, req: CritiqueRequest, fresh: bool) -> Critique:
    """One critique for the caller `key` (quota already taken); `fresh` bypasses the cache lookup."""
    critic = st.ready_critic()

    async def work() -> Critique:
        async with st.admission.slot():
            st.metrics.in_flight.inc()
            try:
                return await critic.critique(req, use_cache=not fresh)
            finally:
                st.metrics.in_flight.dec()

    critique, led = await st.flights.run(flight_key(critic, req, fresh), work)
    if not led:  # another request's result: this caller gets its own id and request_id
        critique = critique.model_copy(update={"id": uuid.uuid4().hex, "request_id": req.request_id})
    st.metrics.observe(critique, key, led)
    if led and not critique.meta.cached:
        st.limiter.charge(key, critique.meta.usage.completion_tokens)
    return critique


def validate_item(item: CritiqueRequest | JsonValue) -> CritiqueRequest | InvalidRequest:
    """A batch item as a request, or the `invalid_request` error it gets on its own."""
    if isinstance(item, CritiqueRequest):
        return item
    try:
        return CritiqueRequest.model_validate(item)
    except ValidationError as exc:
        details = validation_details(list(exc.errors()))
        return InvalidRequest(f"invalid item: {summarize(details)}", details=details)


async def critique_batch(
    st: ServiceState, key: str, items: list[CritiqueRequest | JsonValue], fresh: bool
) -> BatchCritiqueResponse:
    """Every item critiqued concurrently (each through admission control), results in request order; a
    malformed or failed item carries its own error and status. The quota is taken for the valid items at once."""
    st.ready_critic()
    checked = [validate_item(item) for item in items]
    valid = sum(isinstance(x, CritiqueRequest) for x in checked)
    if valid:
        st.limiter.admit(key, valid)

    async def one(i: int, item: CritiqueRequest | InvalidRequest) -> BatchItemResult:
        try:
            if isinstance(item, ServiceError):
                raise item
            return BatchItemResult(index=i, status=200, critique=await critique_one(st, key, item, fresh))
        except ServiceError as exc:
            st.metrics.error(exc.code.value, key)
            return BatchItemResult(index=i, status=exc.status, error=exc.info())

    results = await asyncio.gather(*(one(i, x) for i, x in enumerate(checked)))
    return BatchCritiqueResponse(results=list(results))
