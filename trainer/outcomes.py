"""The run's one counter of critic outcomes, and the errors that stop a run because of the critic.

Every rollout of the stepalign condition ends in exactly one outcome: a valid critique (counted by case) or a
failure (counted by error code: the API's code, `http_<status>` without a body, `transport`, or `local` for a
rollout that could not be sent). The failure-rate check, the metrics, the run summary and the preflight all read
this one counter.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from shared.client import CriticError
from shared.schemas import Critique


class CriticUnavailable(RuntimeError):
    """The critic cannot serve this run: too many rollouts got no valid critique, or the preflight failed.
    The message names the critic's own error codes and one of its messages."""


def error_code(err: CriticError) -> str:
    if err.code is not None:
        return err.code
    if err.status is None:
        return "transport"
    return f"http_{err.status}"


@dataclass
class CriticOutcomes:
    """Critiques by case and failures by error code, with one example message per code."""

    cases: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    examples: dict[str, str] = field(default_factory=dict)
    reused: int = 0  # valid critiques taken from the critique log on resume (counted in `cases` too)

    @property
    def failed(self) -> int:
        return sum(self.errors.values())

    @property
    def rollouts(self) -> int:
        return sum(self.cases.values()) + self.failed

    def record(self, result: Critique | CriticError, *, reused: bool = False) -> None:
        if isinstance(result, CriticError):
            code = error_code(result)
            self.errors[code] += 1
            self.examples.setdefault(code, str(result)[:300])
        else:
            self.cases[result.case.value] += 1
            self.reused += int(reused)

    def failure_rate(self) -> float:
        return self.failed / self.rollouts if self.rollouts else 0.0

    def most_common_errors(self, n: int = 3) -> str:
        """'invalid_critique x 30, timeout x 2 (e.g. "502 invalid_critique: ...")'."""
        if not self.errors:
            return "no errors"
        top = self.errors.most_common(n)
        listed = ", ".join(f"{code} x {count}" for code, count in top)
        return f'{listed} (e.g. "{self.examples.get(top[0][0], "")}")'

    def as_dict(self) -> dict[str, Any]:
        return {
            "cases": dict(self.cases),
            "errors": dict(self.errors),
            "examples": dict(self.examples),
            "reused": self.reused,
        }

    @classmethod
    def merged(cls, parts: Iterable[dict[str, Any]]) -> CriticOutcomes:
        """One counter from several processes' `as_dict()`."""
        out = cls()
        for p in parts:
            out.cases.update(p.get("cases", {}))
            out.errors.update(p.get("errors", {}))
            for code, msg in p.get("examples", {}).items():
                out.examples.setdefault(code, msg)
            out.reused += int(p.get("reused", 0))
        return out
