"""`stepalign-train prepare-data`: the paper's data preparation, every filter counted in a manifest.

1. deduplicate by problem (OpenMathReasoning has several rows, i.e. several generated solutions, per problem);
2. a format filter on the problem (a usable statement, a checkable reference answer);
3. the solver samples `samples` solutions per problem, shared by the next three filters:
   - difficulty: keep problems the solver gets right fewer than `keep_below` times (the paper: < 5 of 16);
   - rollout format: keep problems where at least `min_format_share` of the rollouts are in the student format
     (tagged steps and an answer), so the critic's step-aligned feedback has steps to align to;
   - critic solvability: keep a problem only if the critic, through the service, returns a valid critique of one
     of the solver's wrong rollouts (case D, or C for a rollout without an answer): the service's rule 4 then
     guarantees the critic carried the problem to the reference answer. (Without it, StepAlignFB and RefSol
     degenerate into the same setup, the paper says.)
4. split by problem into test (`test_size`) and train (`train_size`, or all the rest).
"""

from __future__ import annotations

import asyncio
import json
import random
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from shared.answers import AnswerChecker, extract_final_answer
from shared.client import CriticError, CriticPool
from shared.schemas import MAX_PROBLEM_CHARS, AnswerStatus, Case, Critique, CritiqueRequest, SegmentationFormat
from shared.steps import SegmentationError, segment
from trainer.data import Problem, write_problems

Sampler = Callable[[list[str], int], list[list[str]]]
_WS = re.compile(r"\s+")


@dataclass(frozen=True)
class PrepareSettings:
    samples: int = 16
    keep_below: int = 5
    min_format_share: float = 0.5
    solvability_tries: int = 2  # wrong rollouts sent to the critic per problem, at most
    train_size: int | None = None  # None: every problem not in the test split
    test_size: int = 30
    seed: int = 0
    max_answer_chars: int = 100
    difficulty_filter: bool = True


def problem_key(text: str) -> str:
    """Problems that differ only in whitespace are the same problem."""
    return _WS.sub(" ", text).strip().lower()


def dedupe(problems: list[Problem]) -> list[Problem]:
    """One row per problem: the first one with a reference answer (else the first one)."""
    chosen: dict[str, Problem] = {}
    for p in problems:
        key = problem_key(p.problem)
        if key not in chosen or (not chosen[key].answer.strip() and p.answer.strip()):
            chosen[key] = p
    return list(chosen.values())


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


def in_student_format(text: str) -> bool:
    """Tagged steps and an <answer> block: what the student prompt asks for."""
    try:
        seg = segment(text)
    except SegmentationError:
        return False
    return seg.format is SegmentationFormat.tags and seg.answer is not None


@dataclass
class Rollouts:
    """One problem's sampled solutions and how each went."""

    texts: list[str]
    correct: list[bool]
    answered: list[bool]

    @property
    def n_correct(self) -> int:
        return sum(self.correct)

    def format_share(self) -> float:
        return sum(in_student_format(t) for t in self.texts) / max(1, len(self.texts))

    def wrong(self, limit: int) -> list[str]:
        """Wrong rollouts, those with a (wrong) answer first (case D), then those without one (case C)."""
        rows = [(t, a) for t, c, a in zip(self.texts, self.correct, self.answered, strict=True) if not c and t.strip()]
        return ([t for t, a in rows if a] + [t for t, a in rows if not a])[:limit]


def sample_rollouts(problems: list[Problem], sampler: Sampler, k: int, checker: AnswerChecker) -> list[Rollouts]:
    """k sampled solutions per problem, graded with math-verify."""
    solutions = sampler([p.problem for p in problems], k)
    answers = [[extract_final_answer(s) for s in sols] for sols in solutions]
    pairs = [(a, p.answer) for p, row in zip(problems, answers, strict=True) for a in row]
    checks = checker.check_many(pairs)
    out = []
    for i, (sols, row) in enumerate(zip(solutions, answers, strict=True)):
        verdicts = checks[i * k : (i + 1) * k]
        out.append(
            Rollouts(list(sols), [c.status is AnswerStatus.equivalent for c in verdicts], [a is not None for a in row])
        )
    return out


def solvable(problems: list[Problem], rollouts: list[Rollouts], pool: CriticPool, tries: int) -> list[str | None]:
    """Per problem: None if the critic wrote a valid case-C/D critique of one of its wrong rollouts, else why not
    (the critic's last error code, or that there was no wrong rollout to send)."""

    async def one(p: Problem, r: Rollouts) -> str | None:
        wrong = r.wrong(tries)
        if not wrong:
            return "no wrong rollout to critique"
        why = "no critique of case C or D"
        for text in wrong:
            req = CritiqueRequest(problem=p.problem, reference_answer=p.answer, reference_solution=p.solution or None,
                                  student_solution=text, request_id=f"prepare:{p.id}")  # fmt: skip
            got: Critique | CriticError
            try:
                got = await pool.critique(req)
            except CriticError as exc:
                got = exc
            if isinstance(got, Critique) and got.case in (Case.C, Case.D):
                return None
            why = f"critic: {got.code or got.status}" if isinstance(got, CriticError) else f"critic: case {got.case}"
        return why

    async def run_all() -> list[str | None]:
        try:
            return list(await asyncio.gather(*(one(p, r) for p, r in zip(problems, rollouts, strict=True))))
        finally:
            await pool.aclose()

    return asyncio.run(run_all())


def _count_reasons(reasons: list[str | None]) -> dict[str, int]:
    out: dict[str, int] = {}
    for r in reasons:
        if r is not None:
            out[r] = out.get(r, 0) + 1
    return out


def prepare(
    problems: list[Problem],
    out: Path,
    settings: PrepareSettings,
    sampler: Sampler | None,
    meta: dict[str, Any],
    critic: Callable[[], CriticPool] | None = None,
) -> dict[str, Any]:
    """Run the filters, write train.jsonl / test.jsonl / rollouts.jsonl / manifest.json, return the manifest.
    `critic` makes the pool of the solvability filter (None: no such filter)."""
    counts: dict[str, int] = {"input": len(problems)}
    unique = dedupe(problems)
    counts["after_dedup"] = len(unique)
    rejected_format = _count_reasons([format_ok(p, settings.max_answer_chars) for p in unique])
    pool = [p for p in unique if format_ok(p, settings.max_answer_chars) is None]
    counts["after_format_filter"] = len(pool)
    rejected_solvability: dict[str, int] = {}
    out.mkdir(parents=True, exist_ok=True)
    if settings.difficulty_filter:
        if sampler is None:
            raise ValueError("the difficulty filter needs a solver model (--solver) or --no-difficulty-filter")
        with AnswerChecker() as checker:
            rollouts = sample_rollouts(pool, sampler, settings.samples, checker)
        with (out / "rollouts.jsonl").open("w", encoding="utf-8") as f:
            for p, r in zip(pool, rollouts, strict=True):
                row = {"id": p.id, "correct": r.n_correct, "of": settings.samples, "format_share": r.format_share()}
                f.write(json.dumps(row) + "\n")
        kept = [(p, r) for p, r in zip(pool, rollouts, strict=True) if r.n_correct < settings.keep_below]
        counts["after_difficulty_filter"] = len(kept)
        kept = [(p, r) for p, r in kept if r.format_share() >= settings.min_format_share]
        counts["after_rollout_format_filter"] = len(kept)
        if critic is not None:
            reasons = solvable([p for p, _ in kept], [r for _, r in kept], critic(), settings.solvability_tries)
            rejected_solvability = _count_reasons(reasons)
            kept = [pr for pr, why in zip(kept, reasons, strict=True) if why is None]
            counts["after_solvability_filter"] = len(kept)
        pool = [p for p, _ in kept]
    shuffled = list(pool)
    random.Random(settings.seed).shuffle(shuffled)
    test = shuffled[: settings.test_size]
    rest = shuffled[settings.test_size :]
    train = rest if settings.train_size is None else rest[: settings.train_size]
    write_problems(train, out / "train.jsonl")
    write_problems(test, out / "test.jsonl")
    counts |= {"train": len(train), "test": len(test), "unused": len(rest) - len(train)}
    manifest = {
        "counts": counts,
        "rejected_by_format": rejected_format,
        "rejected_by_solvability": rejected_solvability,
        "settings": asdict(settings),
        **meta,
    }
    wanted = settings.test_size + (settings.train_size or 0)
    if len(pool) < wanted:
        manifest["warning"] = f"the filtered pool has {len(pool)} problems, fewer than the {wanted} asked for"
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return manifest
