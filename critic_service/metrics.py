"""Prometheus metrics of one app instance (its own registry, so several apps can live in one process).

Usage per key is labelled with the key's name (never the key): critiques, generated tokens and errors.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from shared.schemas import Critique

NO_KEY = "none"  # the label of requests refused before a key was recognised


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
        self.invalid_attempts = Counter(
            "stepalign_invalid_attempts", "Rejected generations before a valid critique", registry=r
        )
        self.latency = Histogram(
            "stepalign_latency_seconds",
            "Service time per critique",
            buckets=(0.005, 0.02, 0.1, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600),
            registry=r,
        )
        self.tokens = Counter("stepalign_tokens", "Tokens used by the engine", ["kind"], registry=r)
        self.in_flight = Gauge("stepalign_in_flight", "Critiques in progress", registry=r)
        self.waiting = Gauge("stepalign_waiting", "Critiques waiting for a slot", registry=r)
        self.coalesced = Counter(
            "stepalign_coalesced", "Critiques served by an identical request's engine call", registry=r
        )
        self.cache_entries = Gauge("stepalign_cache_entries", "Critiques in the result cache", registry=r)
        self.cache_evictions = Gauge("stepalign_cache_evictions", "Cache entries evicted since start", registry=r)
        self.ready = Gauge("stepalign_engine_ready", "1 once the engine has loaded", registry=r)
        self.key_critiques = Counter("stepalign_key_critiques", "Critiques served, per key", ["key"], registry=r)
        self.key_tokens = Counter(
            "stepalign_key_tokens", "Engine tokens spent for a key's critiques", ["key", "kind"], registry=r
        )
        self.key_errors = Counter("stepalign_key_errors", "Failed requests, per key", ["key", "code"], registry=r)

    def observe(self, critique: Critique, key: str, led: bool = True) -> None:
        """Count one critique served to `key`; its tokens only if this request caused the generation."""
        self.critiques.labels(case=critique.case.value, cached=str(critique.meta.cached).lower()).inc()
        self.key_critiques.labels(key=key).inc()
        if not led:
            self.coalesced.inc()
        if critique.meta.cached or not led:
            return
        self.attempts.observe(critique.meta.attempts)
        self.invalid_attempts.inc(critique.meta.attempts - 1)
        self.latency.observe(critique.meta.latency_ms / 1000)
        u = critique.meta.usage
        for kind, n in (("prompt", u.prompt_tokens), ("completion", u.completion_tokens)):
            self.tokens.labels(kind=kind).inc(n)
            self.key_tokens.labels(key=key, kind=kind).inc(n)
        self.tokens.labels(kind="reasoning").inc(u.reasoning_tokens)
        self.key_tokens.labels(key=key, kind="reasoning").inc(u.reasoning_tokens)

    def error(self, code: str, key: str | None) -> None:
        self.errors.labels(code=code).inc()
        self.key_errors.labels(key=key or NO_KEY, code=code).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)
