"""The checker engine: an exact programmatic critic for arithmetic-chain problems, no model involved.

It verifies every `a op b = c` step with exact rational arithmetic, classifies the solution (A-D), finds the first
wrong step and writes the correction in the student's own notation, in the same text schema an LLM critic writes,
so the service's parse and validation path is exercised unchanged. It is the embedded default of
`stepalign-critic serve`, and the critic of the CPU demo and the end-to-end tests.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from fractions import Fraction

from critic_service.engines.base import Generation, Job
from critic_service.errors import InvalidRequest, UnsupportedProblem
from shared.answers import last_boxed
from shared.arithmetic import (
    ADDITIVE,
    Chain,
    NotArithmeticChain,
    StepEquation,
    equation,
    format_number,
    parse_chain,
    parse_number,
    parse_step,
)
from shared.critique_text import BodyKind, ParsedCritique, render
from shared.schemas import Case, FeedbackMode, StepVerdict, Usage, Verdict

_WORD = {"+": "Add", "-": "Subtract", "*": "Multiply by", "/": "Divide by"}


def _as_number(text: str | None) -> Fraction | None:
    if text is None:
        return None
    try:
        return parse_number(text.strip().strip("$").strip())
    except (ValueError, ZeroDivisionError):
        return None


def _wanted(ops: Sequence[tuple[str, Fraction]]) -> str:
    return " ".join(f"{_WORD[s]} {format_number(x)}." for s, x in ops)


def _step_error(chain: Chain, j: int, eq: StepEquation | None) -> tuple[str | None, int]:
    """Why a step that should start at 0-based operation j is wrong (None if it is right), and how many
    operations it stands for. A step may apply several consecutive additions/subtractions at once (the merged
    derivation); a multiplication or division always has a step of its own."""
    values = chain.values()
    n_ops = len(chain.ops)
    if j >= n_ops:
        return f"extra step: the chain has only {n_ops} operations", 0
    if eq is None:
        return "not one equation of the form 'a op b = c'", 1
    k = len(eq.ops)
    if eq.a != values[j]:
        return f"starts from {format_number(eq.a)}, but the running value is {format_number(values[j])}", k
    expected = chain.ops[j : j + k]
    if k == 1 and eq.ops[0] != expected[0]:
        symbol, operand = expected[0]
        if j + 1 < n_ops and eq.ops[0] == chain.ops[j + 1]:
            return f"skips the operation '{_WORD[symbol]} {format_number(operand)}'", k
        wanted = f"{_WORD[symbol]} {format_number(operand)}"
        return f"applies {eq.written_symbols[0]} {format_number(eq.ops[0][1])}, but the operation is '{wanted}'", k
    if k > 1 and eq.ops != expected:
        return f"applies {eq.lhs()[len(format_number(eq.a)) + 1 :]}, but the operations are '{_wanted(expected)}'", k
    if k > 1 and any(symbol not in ADDITIVE for symbol, _ in eq.ops):
        return (
            "merges a multiplication or division with other operations; only consecutive additions and "
            "subtractions may share a step",
            k,
        )
    if eq.c != values[j + k]:
        return f"{eq.lhs()} is {format_number(values[j + k])}, not {format_number(eq.c)}", k
    return None, k


def _style(equations: list[StepEquation | None], steps: list[str]) -> tuple[dict[str, str], str]:
    """The student's operator symbols and spacing, so the correction reads like the student's own steps."""
    symbols = {"+": "+", "-": "-", "*": "*", "/": "/"}
    for eq in equations:
        if eq is not None:
            for (symbol, _), written in zip(eq.ops, eq.written_symbols, strict=True):
                symbols[symbol] = written
    spaced = any(re.search(r"\d\s+\S\s+[-−\d]", s) for s, eq in zip(steps, equations, strict=True) if eq)
    return symbols, "{a} {op} {b} = {c}" if spaced or not any(equations) else "{a}{op}{b}={c}"


def _answer_step(steps: list[str]) -> bool:
    """Whether the last step only states the final answer ("So the answer is \\boxed{10}.")."""
    return bool(steps) and parse_step(steps[-1]) is None and last_boxed(steps[-1]) is not None


def critique_chain(chain: Chain, steps: list[str], student_answer: str | None, mode: FeedbackMode) -> ParsedCritique:
    """The exact critique of a solution to `chain`: each step applies the next operation (or the next few
    consecutive additions/subtractions at once); a last step that only states the boxed answer is the answer step.
    The correction writes one operation per step from the pivotal step on."""
    values = chain.values()
    n_ops = len(chain.ops)
    n = len(steps)
    has_answer_step = _answer_step(steps)
    eq_steps = steps[:-1] if has_answer_step else steps
    equations = [parse_step(s) for s in eq_steps]
    errors: list[str | None] = []
    starts: list[int] = []  # the 0-based operation each equation step starts at
    done = 0  # operations covered so far
    for eq in equations:
        err, k = _step_error(chain, done, eq)
        errors.append(err)
        starts.append(done)
        done = min(n_ops, done + k)
    first_wrong = next((i for i, e in enumerate(errors, start=1) if e is not None), None)
    answer = _as_number(student_answer)
    final = format_number(chain.answer)
    stops_early = (
        f"the chain stops here: '{_WORD[chain.ops[done][0]]} {format_number(chain.ops[done][1])}' is never applied"
        if done < n_ops
        else None
    )
    if has_answer_step:
        right = answer == chain.answer
        errors.append(None if right else (stops_early or f"the final answer {student_answer} is not {final}"))
    if student_answer is None:
        case, pivot = Case.C, first_wrong or n
    elif answer != chain.answer:
        case = Case.D
        pivot = first_wrong or n
        if first_wrong is None and not has_answer_step:
            errors[n - 1] = stops_early or f"the final answer {student_answer} is not this step's result {final}"
    elif first_wrong is not None:
        case, pivot = Case.B, first_wrong
    elif done < n_ops:  # the right value boxed without showing the remaining operations
        case, pivot = Case.B, n
        errors[n - 1] = "the remaining operations are not shown"
    else:
        case, pivot = Case.A, None

    summary = []
    for i, err in enumerate(errors, start=1):
        wrong = err is not None and pivot is not None and i >= pivot
        summary.append(StepVerdict(step=i, verdict=Verdict.incorrect if wrong else Verdict.correct, note=err or ""))

    symbols, style = _style(equations, eq_steps)
    fixed: list[str] = []
    kept_after: list[str] = []  # case B, scribe mode: the student's steps after the replaced ones
    if pivot is not None:
        # The correction starts at the operation the pivotal step starts at (after the last one shown, when the
        # pivot is the answer step); case C whose written steps are all right repeats the last written step.
        number = pivot
        first_op = done if has_answer_step and pivot == n else starts[pivot - 1] if pivot <= len(starts) else done
        end_op = n_ops
        restate = has_answer_step and student_answer is not None
        if case is Case.C and first_wrong is None and pivot <= len(eq_steps):
            fixed.append(f"<step_{pivot}>{steps[pivot - 1]}</step_{pivot}>")
            number += 1
            first_op = done
        if case is Case.B:
            # B replaces only the steps the summary marks Incorrect (pivot..last); the student's later steps are
            # spliced back after it, so the correction stops there, unless it reaches the end of the written
            # equations, where the operations never shown are inserted.
            last = max(i for i, v in enumerate(summary, start=1) if v.verdict is Verdict.incorrect)
            end_op = starts[last] if last < len(eq_steps) else n_ops
            restate = has_answer_step and last == n
        for j in range(first_op, end_op):
            s, x = chain.ops[j]
            fixed.append(f"<step_{number}>{equation(values[j], symbols[s], x, values[j + 1], style)}</step_{number}>")
            number += 1
        if restate:
            restated = steps[-1].replace(f"{{{last_boxed(steps[-1])}}}", f"{{{final}}}", 1)
            fixed.append(f"<step_{number}>{restated}</step_{number}>")
            number += 1
        if case is Case.B:
            for k in range(last + 1, n + 1):
                kept_after.append(f"<step_{number}>{steps[k - 1]}</step_{number}>")
                number += 1
    answer_tag = f"<answer>\\boxed{{{final}}}</answer>"
    if mode is FeedbackMode.scribe:
        prefix = [f"<step_{k}>{steps[k - 1]}</step_{k}>" for k in range(1, pivot or n + 1)]
        body: str | None = "\n".join([*prefix, *fixed, *kept_after, answer_tag])
    else:
        body = "\n".join([*fixed, answer_tag]) if case is not Case.A else None
    kind = BodyKind.solution if mode is FeedbackMode.scribe else BodyKind.correction
    return ParsedCritique(case=case, pivotal_step=pivot, summary=summary, body=body, body_kind=kind)


class CheckerEngine:
    """Engine protocol implementation around `critique_chain`."""

    name = "checker"
    model = "arithmetic-chain-checker"

    async def start(self) -> None:
        return None

    async def ready(self) -> bool:
        return True

    async def close(self) -> None:
        return None

    async def generate(self, job: Job) -> Generation:
        try:
            chain = parse_chain(job.request.problem)
        except NotArithmeticChain as exc:
            raise UnsupportedProblem(
                str(exc), details=[{"field": "problem", "engine": self.name, "accepted": "arithmetic chains"}]
            ) from exc
        if job.request.reference_answer is not None:
            ref = _as_number(job.request.reference_answer)
            if ref != chain.answer:
                raise InvalidRequest(
                    f"reference_answer {job.request.reference_answer!r} is not the chain's value "
                    f"{format_number(chain.answer)}",
                    details=[{"field": "reference_answer"}],
                )
        critique = critique_chain(chain, job.steps, job.student_answer, job.mode)
        return Generation(text=render(critique), usage=Usage())
