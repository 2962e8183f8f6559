"""The checker engine: an exact programmatic critic for arithmetic-chain problems, no model involved.

It verifies every `a op b = c` step with exact rational arithmetic, classifies the solution (A-D), finds the first
wrong step and writes the correction in the student's own notation, in the same text schema an LLM critic writes,
so the service's parse and validation path is exercised unchanged. It is the embedded default of
`stepalign-critic serve`, and the critic of the CPU demo and the end-to-end tests.
"""

from __future__ import annotations

import re
from fractions import Fraction

from critic_service.engines.base import Generation, Job
from critic_service.errors import InvalidRequest, UnsupportedProblem
from shared.answers import last_boxed
from shared.arithmetic import (
    Chain,
    Equation,
    NotArithmeticChain,
    equation,
    format_number,
    parse_chain,
    parse_equation,
    parse_number,
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


def _step_error(chain: Chain, i: int, eq: Equation | None) -> str | None:
    """Why 1-based step i is wrong, or None if it is exactly the expected equation."""
    values = chain.values()
    if i > len(chain.ops):
        return f"extra step: the chain has only {len(chain.ops)} operations"
    if eq is None:
        return "not one equation of the form 'a op b = c'"
    symbol, operand = chain.ops[i - 1]
    if eq.a != values[i - 1]:
        return f"starts from {format_number(eq.a)}, but the running value is {format_number(values[i - 1])}"
    if (eq.symbol, eq.b) != (symbol, operand):
        if i < len(chain.ops) and (eq.symbol, eq.b) == chain.ops[i]:
            return f"skips the operation '{_WORD[symbol]} {format_number(operand)}'"
        wanted = f"{_WORD[symbol]} {format_number(operand)}"
        return f"applies {eq.written_symbol} {format_number(eq.b)}, but the operation is '{wanted}'"
    if eq.c != values[i]:
        lhs = f"{format_number(eq.a)} {eq.written_symbol} {format_number(eq.b)}"
        return f"{lhs} is {format_number(values[i])}, not {format_number(eq.c)}"
    return None


def _style(equations: list[Equation | None], steps: list[str]) -> tuple[dict[str, str], str]:
    """The student's operator symbols and spacing, so the correction reads like the student's own steps."""
    symbols = {"+": "+", "-": "-", "*": "*", "/": "/"}
    for eq in equations:
        if eq is not None:
            symbols[eq.symbol] = eq.written_symbol
    spaced = any(re.search(r"\d\s+\S\s+[-−\d]", s) for s, eq in zip(steps, equations, strict=True) if eq)
    return symbols, "{a} {op} {b} = {c}" if spaced or not any(equations) else "{a}{op}{b}={c}"


def _answer_step(steps: list[str]) -> bool:
    """Whether the last step only states the final answer ("So the answer is \\boxed{10}.")."""
    return bool(steps) and parse_equation(steps[-1]) is None and last_boxed(steps[-1]) is not None


def critique_chain(chain: Chain, steps: list[str], student_answer: str | None, mode: FeedbackMode) -> ParsedCritique:
    """The exact critique of a solution to `chain`: step i must be the equation of operation i; a last step that
    only states the boxed answer is the answer step."""
    values = chain.values()
    n_ops = len(chain.ops)
    n = len(steps)
    has_answer_step = _answer_step(steps)
    eq_steps = steps[:-1] if has_answer_step else steps
    n_eq = len(eq_steps)
    equations = [parse_equation(s) for s in eq_steps]
    errors: list[str | None] = [_step_error(chain, i, eq) for i, eq in enumerate(equations, start=1)]
    first_wrong = next((i for i, e in enumerate(errors, start=1) if e is not None), None)
    answer = _as_number(student_answer)
    final = format_number(chain.answer)
    stops_early = (
        f"the chain stops here: '{_WORD[chain.ops[n_eq][0]]} {format_number(chain.ops[n_eq][1])}' is never applied"
        if n_eq < n_ops
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
    elif n_eq < n_ops:  # the right value boxed without showing the remaining operations
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
        # Step pivot corresponds to operation pivot, except when the pivot is the answer step.
        first_op = n_eq + 1 if has_answer_step and pivot == n else pivot
        last_op = n_ops
        restate = has_answer_step and student_answer is not None
        if case is Case.B:
            # B replaces only the steps the summary marks Incorrect (pivot..last); the student's later steps are
            # spliced back after it, so the correction stops there, unless it reaches the end of the written
            # equations, where the operations never shown are inserted.
            last = max(i for i, v in enumerate(summary, start=1) if v.verdict is Verdict.incorrect)
            last_op = last if last < n_eq else n_ops
            restate = has_answer_step and last == n
        number = pivot
        for j in range(first_op, last_op + 1):
            s, x = chain.ops[j - 1]
            fixed.append(f"<step_{number}>{equation(values[j - 1], symbols[s], x, values[j], style)}</step_{number}>")
            number += 1
        if case is Case.C and first_wrong is None and pivot <= n_eq:
            # Case C whose written steps are all right: the last written step is repeated, then finished.
            fixed[0] = f"<step_{pivot}>{steps[pivot - 1]}</step_{pivot}>"
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
