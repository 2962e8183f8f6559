"""`stepalign-train prepare-data`: the paper's data preparation. A format filter (a usable statement and a
checkable final answer), then the difficulty filter: keep the problems the solver gets right fewer than
`keep_below` times in `samples` samples (the paper: fewer than 5 of 16). Writes train/test splits and a
manifest of counts, seed and filters."""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from shared.answers import AnswerChecker, extract_final_answer
from shared.schemas import MAX_PROBLEM_CHARS, AnswerStatus
from trainer.data import Problem, write_problems

Sampler = Callable[[list[str], int], list[list[str]]]


@dataclass(frozen=True)
class PrepareSettings:
    samples: int = 16
    keep_below: int = 5
    test_size: int = 30
    seed: int = 0
    max_answer_chars: int = 100
    difficulty_filter: bool = True


def format_ok(p: Problem, max_answer_chars: int) -> str | None:
    """None if the problem is usable, else why not."""
    if not p.problem.strip():
        return "empty problem"
    if len(p.problem) > MAX_PROBLEM_CHARS:
        return "problem too long"
    if not p.answer.strip():
        return "no reference answer"
    if len(p.answer) > max_answer_chars:
        return "answer too long to check"
    return None


def correct_counts(problems: list[Problem], sampler: Sampler, k: int, checker: AnswerChecker) -> list[int]:
    """How many of k sampled solutions get each problem right (math-verify)."""
    solutions = sampler([p.problem for p in problems], k)
    pairs = [(extract_final_answer(s), p.answer) for p, sols in zip(problems, solutions, strict=True) for s in sols]
    checks = checker.check_many(pairs)
    return [sum(c.status is AnswerStatus.equivalent for c in checks[i * k : (i + 1) * k]) for i in range(len(problems))]


def prepare(
    problems: list[Problem], out: Path, settings: PrepareSettings, sampler: Sampler | None, meta: dict[str, Any]
) -> dict[str, Any]:
    rejected: dict[str, int] = {}
    usable = []
    for p in problems:
        why = format_ok(p, settings.max_answer_chars)
        if why is None:
            usable.append(p)
        else:
            rejected[why] = rejected.get(why, 0) + 1
    counts: list[int] | None = None
    kept = usable
    if settings.difficulty_filter:
        if sampler is None:
            raise ValueError("the difficulty filter needs a solver model (--solver) or --no-difficulty-filter")
        with AnswerChecker() as checker:
            counts = correct_counts(usable, sampler, settings.samples, checker)
        kept = [p for p, c in zip(usable, counts, strict=True) if c < settings.keep_below]
        out.mkdir(parents=True, exist_ok=True)
        with (out / "difficulty.jsonl").open("w", encoding="utf-8") as f:
            for p, c in zip(usable, counts, strict=True):
                f.write(json.dumps({"id": p.id, "correct": c, "of": settings.samples}) + "\n")
    shuffled = list(kept)
    random.Random(settings.seed).shuffle(shuffled)
    test = shuffled[: settings.test_size]
    train = shuffled[settings.test_size :]
    write_problems(train, out / "train.jsonl")
    write_problems(test, out / "test.jsonl")
    manifest = {
        "counts": {
            "input": len(problems),
            "after_format_filter": len(usable),
            "after_difficulty_filter": len(kept),
            "train": len(train),
            "test": len(test),
        },
        "rejected_by_format": rejected,
        "settings": asdict(settings),
        **meta,
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return manifest
