"""Prometheus metrics of one app instance (its own registry, so several apps can live in one process)."""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from shared.schemas import Critique


@dataclass
class Metrics:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        r = self.registry
        self.critiques = Counter("stepalign_critiques", "Critiques served", ["case", "cached"], registry=r)
        self.errors = Counter("stepalign_errors", "Requests that failed, by error code", ["code"], registry=r)
        self.attempts = Histogram(
            "stepalign_attempts", "Generations per critique", buckets=(1, 2, 3, 5, 10), registry=r
        )
        self.invalid_attempts = Counter("stepalign_invalid_attempts", "Rejected generations", registry=r)
        self.latency = Histogram(
            "stepalign_latency_seconds",
            "Service time per critique",
            buckets=(0.005, 0.02, 0.1, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600),
            registry=r,
        )
        self.tokens = Counter("stepalign_tokens", "Tokens used by the engine", ["kind"], registry=r)
        self.in_flight = Gauge("stepalign_in_flight", "Critiques in progress", registry=r)
        self.waiting = Gauge("stepalign_waiting", "Critiques waiting for a slot", registry=r)

    def observe(self, critique: Critique) -> None:
        self.critiques.labels(case=critique.case.value, cached=str(critique.meta.cached).lower()).inc()
        if critique.meta.cached:
            return
        self.attempts.observe(critique.meta.attempts)
        self.latency.observe(critique.meta.latency_ms / 1000)
        u = critique.meta.usage
        self.tokens.labels(kind="prompt").inc(u.prompt_tokens)
        self.tokens.labels(kind="completion").inc(u.completion_tokens)
        self.tokens.labels(kind="reasoning").inc(u.reasoning_tokens)

    def render(self) -> bytes:
        return generate_latest(self.registry)
