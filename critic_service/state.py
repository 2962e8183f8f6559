"""What one running app holds: settings, keys, quotas, admission control, the engine and its load state."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from critic_service.admission import Admission, Drain
from critic_service.auth import KeyChecker
from critic_service.coalesce import SingleFlight
from critic_service.errors import NotReady
from critic_service.metrics import Metrics
from critic_service.ratelimit import RateLimiter
from critic_service.settings import Settings
from shared.schemas import Critique

if TYPE_CHECKING:
    from critic_service.cache import CritiqueCache
    from critic_service.critic import Critic
    from critic_service.engines.base import Engine
    from shared.answers import AnswerChecker

Phase = Literal["loading", "ready", "failed"]


@dataclass
class ServiceState:
    settings: Settings
    keys: KeyChecker
    admission: Admission
    limiter: RateLimiter
    drain: Drain = field(default_factory=Drain)
    flights: SingleFlight[Critique] = field(default_factory=SingleFlight)
    metrics: Metrics = field(default_factory=Metrics)
    engine: Engine | None = None
    critic: Critic | None = None
    checker: AnswerChecker | None = None
    cache: CritiqueCache | None = None
    phase: Phase = "loading"
    load_started: float = field(default_factory=time.monotonic)
    load_error: str | None = None
    on_load_failure: Callable[[], None] | None = None  # set by the server: stop the process (exit_on_load_failure)

    @property
    def engine_name(self) -> str:
        return self.engine.name if self.engine is not None else self.settings.engine_name

    @property
    def model_name(self) -> str:
        if self.engine is not None:
            return self.engine.model
        return self.settings.served_model_name or self.settings.model or "arithmetic-chain-checker"

    def ready_critic(self) -> Critic:
        """The critic, or `NotReady` (503 + Retry-After) while the engine is loading or after it failed to."""
        if self.critic is not None:
            return self.critic
        if self.phase == "failed":
            raise NotReady(f"the engine failed to load: {self.load_error}", retry_after=30.0)
        waited = time.monotonic() - self.load_started
        raise NotReady(f"the engine is still loading ({waited:.0f} s so far)", retry_after=5.0)
