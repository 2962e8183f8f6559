"""What one running app holds: settings, engine, critic, checker, cache, metrics, admission control."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from critic_service.auth import KeyChecker
from critic_service.errors import NotReady
from critic_service.metrics import Metrics
from critic_service.settings import Settings

if TYPE_CHECKING:
    from critic_service.cache import CritiqueCache
    from critic_service.critic import Critic
    from critic_service.engines.base import Engine
    from critic_service.routes import Admission
    from shared.answers import AnswerChecker


@dataclass
class ServiceState:
    settings: Settings
    keys: KeyChecker
    admission: Admission
    metrics: Metrics = field(default_factory=Metrics)
    engine: Engine | None = None
    critic: Critic | None = None
    checker: AnswerChecker | None = None
    cache: CritiqueCache | None = None
    startup_error: str | None = None

    @property
    def engine_name(self) -> str:
        return self.engine.name if self.engine is not None else self.settings.engine_name

    @property
    def model_name(self) -> str:
        if self.engine is not None:
            return self.engine.model
        return self.settings.served_model_name or self.settings.model or "arithmetic-chain-checker"

    def ready_critic(self) -> Critic:
        """The critic, or `NotReady` (503 + Retry-After) while the engine is loading or failed to load."""
        if self.critic is None:
            raise NotReady(self.startup_error or "the engine is still loading", retry_after=5.0)
        return self.critic
