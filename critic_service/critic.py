"""The core of the service: prompt -> engine -> parse -> validate -> (resample) -> Critique.

A generation is accepted only if it parses and passes DESIGN.md's rules 1-5; otherwise the engine is asked again,
with the rejected output and its errors fed back, up to `max_attempts` times. After the last attempt the request
fails with `InvalidCritique` (502) listing every attempt's errors. The deterministic answer check runs once per
request in the answer checker's process pool (never in a thread).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass, field

from critic_service.cache import CritiqueCache, cache_key
from critic_service.engines.base import Engine, Job, Sampling
from critic_service.errors import EngineFailure, EngineTimeout, InvalidCritique, SegmentationFailed, ServiceError
from shared.answers import AnswerChecker, extract_final_answer
from shared.critique_text import (
    BodyKind,
    CritiqueParseError,
    ParsedCritique,
    SchemaLimits,
    check_case_vs_answer,
    check_correction_answer,
    check_fidelity,
    check_structure,
    check_summary,
    correction_answer,
    failures,
    parse,
    schema_regex,
)
from shared.prompts import critic_messages, critic_prompt_version
from shared.schemas import (
    CASES_WITH_PIVOT,
    AnswerCheck,
    CheckResult,
    Checks,
    Critique,
    CritiqueRequest,
    FeedbackMode,
    Meta,
    Segmentation,
    Usage,
)
from shared.scribe import fidelity, render_feedback, repair_near_copies, splice_solution
from shared.steps import SegmentationError, answer_text, segment, segment_explicit


@dataclass(frozen=True)
class CriticConfig:
    """The part of the settings the core needs."""

    sampling: Sampling
    max_attempts: int = 3
    fidelity_threshold: float = 0.9
    repair_near_copies: bool = True
    structured_outputs: bool = True
    schema_limits: SchemaLimits = field(default_factory=SchemaLimits)
    request_timeout_s: float = 600.0


def segment_request(req: CritiqueRequest) -> Segmentation:
    """The segmentation a request refers to, or `SegmentationFailed` saying why there is none."""
    try:
        if req.steps is not None:
            return segment_explicit(req.steps, req.final_answer)
        assert req.student_solution is not None
        return segment(req.student_solution)
    except SegmentationError as exc:
        where = "steps" if req.steps is not None else "student_solution"
        raise SegmentationFailed(str(exc), details=[{"field": where}]) from exc


def _add(a: Usage, b: Usage) -> Usage:
    return Usage(
        prompt_tokens=a.prompt_tokens + b.prompt_tokens,
        completion_tokens=a.completion_tokens + b.completion_tokens,
        reasoning_tokens=a.reasoning_tokens + b.reasoning_tokens,
    )


class Critic:
    """Produces validated critiques with one engine, one answer checker and an optional cache."""

    def __init__(
        self, engine: Engine, checker: AnswerChecker, config: CriticConfig, cache: CritiqueCache | None = None
    ) -> None:
        self.engine = engine
        self.checker = checker
        self.config = config
        self.cache = cache

    def _key(self, req: CritiqueRequest) -> str:
        return cache_key(
            problem=req.problem,
            reference_solution=req.reference_solution,
            reference_answer=req.reference_answer,
            student_solution=req.student_solution,
            steps=req.steps,
            final_answer=req.final_answer,
            mode=req.feedback_mode.value,
            prompt_version=critic_prompt_version(req.feedback_mode),
            engine=self.engine.name,
            model=self.engine.model,
            sampling=self.config.sampling.model_dump(),
            max_attempts=self.config.max_attempts,
            fidelity_threshold=self.config.fidelity_threshold,
        )

    async def critique(self, req: CritiqueRequest, *, use_cache: bool = True) -> Critique:
        """One validated critique; raises a `ServiceError` subclass on failure. `use_cache=False` skips the
        cache lookup (Cache-Control: no-cache); the fresh critique is still stored."""
        started = time.perf_counter()
        try:
            async with asyncio.timeout(self.config.request_timeout_s):
                return await self._critique(req, started, use_cache)
        except TimeoutError as exc:
            raise EngineTimeout(f"no critique within {self.config.request_timeout_s:g} s") from exc

    async def _critique(self, req: CritiqueRequest, started: float, use_cache: bool = True) -> Critique:
        key = self._key(req) if self.cache is not None else ""
        if use_cache and self.cache is not None and (hit := await self.cache.get(key)) is not None:
            meta = hit.meta.model_copy(update={"cached": True, "latency_ms": (time.perf_counter() - started) * 1e3})
            return hit.model_copy(update={"id": uuid.uuid4().hex, "request_id": req.request_id, "meta": meta})

        seg = segment_request(req)
        steps = [s.text for s in seg.steps]
        student_answer = req.final_answer if req.steps is not None else None
        if student_answer is None:
            student_answer = extract_final_answer(seg.text)
        # What the critic is shown as the student's final answer: the <answer> block as written, else the boxed
        # value the solution ends with, else nothing (its case rules C and D depend on it).
        written_answer = answer_text(seg)
        if written_answer is None and student_answer is not None:
            written_answer = f"\\boxed{{{student_answer}}}"
        reference = req.reference_answer or extract_final_answer(req.reference_solution or "")
        answer_check = await self.checker.acheck(student_answer, reference)

        mode = req.feedback_mode
        kind = BodyKind.solution if mode is FeedbackMode.scribe else BodyKind.correction
        regex = None
        if self.config.structured_outputs:
            regex = schema_regex(len(steps), body_kind=kind, limits=self.config.schema_limits)
        request_id = uuid.uuid4().hex
        previous: list[tuple[str, list[str]]] = []
        rejected: list[dict[str, object]] = []
        usage = Usage()
        for attempt in range(1, self.config.max_attempts + 1):
            job = Job(
                request_id=f"{request_id}-{attempt}",
                messages=critic_messages(
                    problem=req.problem,
                    steps=steps,
                    student_answer=written_answer,
                    reference_answer=req.reference_answer,
                    reference_solution=req.reference_solution,
                    mode=mode,
                    previous=previous,
                ),
                request=req,
                steps=steps,
                student_answer=student_answer,
                mode=mode,
                sampling=self.config.sampling,
                schema_regex=regex,
            )
            try:
                generation = await self.engine.generate(job)
            except ServiceError:
                raise
            except Exception as exc:  # an engine bug or crash is the engine's failure, not the caller's
                raise EngineFailure(f"engine {self.engine.name} failed: {type(exc).__name__}: {exc}") from exc
            usage = _add(usage, generation.usage)
            errors, parsed, results, solution, score = await self._validate(
                generation.text, seg, answer_check, reference, mode
            )
            if not errors:
                assert parsed is not None
                critique = Critique(
                    id=uuid.uuid4().hex,
                    request_id=req.request_id,
                    case=parsed.case,
                    pivotal_step=parsed.pivotal_step,
                    summary=parsed.summary,
                    correction=parsed.body,
                    feedback=render_feedback(parsed, solution),
                    feedback_mode=mode,
                    steps=seg,
                    answer_check=answer_check,
                    checks=Checks(results=results, fidelity=score),
                    meta=Meta(
                        engine=self.engine.name,
                        model=self.engine.model,
                        prompt_version=critic_prompt_version(mode),
                        attempts=attempt,
                        latency_ms=(time.perf_counter() - started) * 1e3,
                        usage=usage,
                    ),
                )
                if self.cache is not None:
                    await self.cache.put(key, critique)
                return critique
            rejected.append({"attempt": attempt, "errors": errors, "output_excerpt": generation.text[-800:]})
            previous.append((generation.text, errors))
        raise InvalidCritique(
            f"the critic produced no valid critique in {self.config.max_attempts} attempts", details=rejected
        )

    async def _validate(
        self, text: str, seg: Segmentation, answer_check: AnswerCheck, reference: str | None, mode: FeedbackMode
    ) -> tuple[list[str], ParsedCritique | None, list[CheckResult], str, float | None]:
        """(errors, parsed, check results, faithful-scribe solution, fidelity) of one generation."""
        try:
            parsed = parse(text)
        except CritiqueParseError as exc:
            return [f"parse: {i}" for i in exc.issues], None, [], "", None
        n = len(seg.steps)
        scribe = mode is FeedbackMode.scribe
        results = [
            check_structure(parsed, n, scribe=scribe),
            check_summary(parsed, n),
            check_case_vs_answer(parsed, answer_check),
        ]
        boxed = correction_answer(parsed)
        correction_check = None
        if parsed.case in CASES_WITH_PIVOT and boxed is not None:
            correction_check = await self.checker.acheck(boxed, reference)
        results.append(check_correction_answer(parsed, correction_check))
        score: float | None = None
        if scribe and parsed.body is not None:
            solution = parsed.body
            if self.config.repair_near_copies:
                solution = repair_near_copies(seg, parsed, solution)
            score = fidelity(seg, parsed, solution)
            results.append(check_fidelity(score, self.config.fidelity_threshold, parsed.case))
        else:
            solution = splice_solution(seg, parsed)
        errors = [f"{r.rule}: {r.detail}" for r in failures(results)]
        return errors, parsed, results, solution, score
