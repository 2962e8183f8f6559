"""Rewards: the binary final-answer reward (math-verify) of GRPO, and the critic-derived one of StepAlignFB."""

from __future__ import annotations

from shared.answers import AnswerChecker, extract_final_answer
from shared.client import CriticError
from shared.schemas import AnswerStatus, Case, Critique


def binary_rewards(checker: AnswerChecker, completions: list[str], answers: list[str]) -> list[float]:
    """1.0 where the completion's final answer is equivalent to the reference, else 0.0 (undecided counts 0)."""
    checks = checker.check_many([(extract_final_answer(c), a) for c, a in zip(completions, answers, strict=True)])
    return [1.0 if c.status is AnswerStatus.equivalent else 0.0 for c in checks]


def critique_reward(result: Critique | CriticError) -> float:
    """1.0 for a right final answer (case A or B), 0.0 otherwise, and for a rollout without a critique."""
    if isinstance(result, CriticError):
        return 0.0
    return 1.0 if result.case in (Case.A, Case.B) else 0.0
