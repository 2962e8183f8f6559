"""Pure functions for evaluation and analysis: Avg@k, Maj@k, Pass@k, bootstrap intervals, majority votes over
equivalent answers, and where per-token advantages land relative to the first wrong step.

Conventions: a sample is correct only when its check says `True` (an undecided check is not a success); the
majority vote groups answers by equivalence (not string equality), ignores samples without an answer, and breaks
a tie in favour of the group whose first member came first.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass

Correct = bool | None  # None: the check could not decide


def avg_at_k(correct: Sequence[Sequence[Correct]]) -> float:
    """Mean over problems of the share of correct samples."""
    return sum(sum(c is True for c in row) / len(row) for row in correct) / len(correct)


def pass_at_k(correct: Sequence[Sequence[Correct]]) -> float:
    """Share of problems with at least one correct sample."""
    return sum(any(c is True for c in row) for row in correct) / len(correct)


def majority_group(answers: Sequence[str | None], same: Callable[[int, int], bool]) -> list[int] | None:
    """Indices of the largest group of mutually equivalent answers (greedy: each answer joins the first group
    whose first member it is equivalent to); ties go to the earliest group; None if no sample has an answer."""
    groups: list[list[int]] = []
    for i, a in enumerate(answers):
        if a is None:
            continue
        for g in groups:
            if same(g[0], i):
                g.append(i)
                break
        else:
            groups.append([i])
    if not groups:
        return None
    best = max(len(g) for g in groups)
    return next(g for g in groups if len(g) == best)


def maj_at_k(
    answers: Sequence[Sequence[str | None]],
    correct: Sequence[Sequence[Correct]],
    same: Sequence[Callable[[int, int], bool]],
) -> float:
    """Share of problems whose majority answer is correct (`same[p](i, j)`: are samples i, j of p equivalent)."""
    wins = 0
    for row_answers, row_correct, eq in zip(answers, correct, same, strict=True):
        group = majority_group(row_answers, eq)
        wins += group is not None and row_correct[group[0]] is True
    return wins / len(answers)


def bootstrap_ci(
    per_problem: Sequence[float], *, n: int = 2000, alpha: float = 0.05, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of per-problem values (problems resampled with replacement)."""
    rng = random.Random(seed)
    m = len(per_problem)
    means = sorted(sum(per_problem[rng.randrange(m)] for _ in range(m)) / m for _ in range(n))
    lo = means[int((alpha / 2) * (n - 1))]
    hi = means[int((1 - alpha / 2) * (n - 1))]
    return lo, hi


# --- Where the learning signal lands ---


def token_steps(offsets: Sequence[tuple[int, int]], spans: Sequence[tuple[int, int]]) -> list[int | None]:
    """The 1-based step each token belongs to (the step whose span holds the token's first character), None for
    tokens outside every step (tags, the answer)."""
    out: list[int | None] = []
    for start, end in offsets:
        where = None
        for k, (s, e) in enumerate(spans, start=1):
            if s <= start < e or (start == end and s <= start <= e):
                where = k
                break
        out.append(where)
    return out


@dataclass(frozen=True)
class Localisation:
    """Per-token advantages summarised around the pivotal (first wrong) step."""

    mean_prefix: float | None  # tokens of steps before the pivotal step
    mean_pivot: float | None  # tokens of the pivotal step
    mean_after: float | None  # tokens after the pivotal step (later steps and the answer)
    negative_mass_at_or_after: float | None  # share of sum(-min(A_t, 0)) on or after the pivotal step
    negative_mass_at_pivot: float | None  # share of sum(-min(A_t, 0)) on the pivotal step's own tokens
    tokens: int


def _mean(xs: list[float]) -> float | None:
    return sum(xs) / len(xs) if xs else None


def localisation(advantages: Sequence[float], steps: Sequence[int | None], pivot: int | None) -> Localisation:
    """Summary of one rollout's A_t. Tokens outside steps count as 'after' once a step at or past the pivot
    has been seen (the closing tags and the answer), and as 'prefix' before that."""
    if len(advantages) != len(steps):
        raise ValueError(f"{len(advantages)} advantages but {len(steps)} token-step labels")
    prefix: list[float] = []
    at: list[float] = []
    after: list[float] = []
    neg_total = 0.0
    neg_late = 0.0
    neg_pivot = 0.0
    reached = False
    for a, s in zip(advantages, steps, strict=True):
        if pivot is not None and s is not None and s >= pivot:
            reached = True
        late = pivot is not None and (s == pivot or (s is not None and s > pivot) or (s is None and reached))
        if pivot is None or (not late):
            prefix.append(a)
        elif s == pivot:
            at.append(a)
        else:
            after.append(a)
        if a < 0:
            neg_total += -a
            neg_late += -a if late else 0.0
            neg_pivot += -a if (pivot is not None and s == pivot) else 0.0
    return Localisation(
        mean_prefix=_mean(prefix),
        mean_pivot=_mean(at),
        mean_after=_mean(after),
        negative_mass_at_or_after=(neg_late / neg_total) if neg_total > 0 and pivot is not None else None,
        negative_mass_at_pivot=(neg_pivot / neg_total) if neg_total > 0 and pivot is not None else None,
        tokens=len(advantages),
    )


def aggregate(items: Sequence[Localisation]) -> dict[str, float | None]:
    """Means of each statistic over rollouts (rollouts where it is undefined are left out)."""
    out: dict[str, float | None] = {}
    for name in ("mean_prefix", "mean_pivot", "mean_after", "negative_mass_at_or_after", "negative_mass_at_pivot"):
        values = [getattr(x, name) for x in items if getattr(x, name) is not None]
        out[name] = sum(values) / len(values) if values else None
    out["rollouts"] = float(len(items))
    return out
