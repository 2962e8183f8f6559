"""The critic's text schema (DESIGN.md): a tolerant parser, a canonical renderer, and a structured-output regex.

Reasoning models wrap the schema in all sorts of noise: a `<think>` block (sometimes without its opening tag),
markdown bold and headings, bullets, `Step 1: Correct.`, en/em dashes for `--`, prose before and after, code
fences. `parse` looks through that and returns a `ParsedCritique`, or raises `CritiqueParseError` listing every
problem with its line number and what was expected there. `render` always writes the canonical form, and
`parse(render(c)) == c` for every valid critique: one whose notes are single lines, whose notes and body do not
use the reserved `<think>` tags, and whose body has no code-fence lines.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from shared.answers import last_boxed
from shared.schemas import (
    CASES_WITH_PIVOT,
    AnswerCheck,
    AnswerStatus,
    Case,
    CheckResult,
    StepVerdict,
    Verdict,
)


class BodyKind:
    """The header that introduces the free-text part of a critique."""

    correction = "Correction"  # splice mode: only the corrected step N and the continuation
    solution = "Solution"  # scribe mode: the whole faithful-scribe solution


@dataclass(frozen=True)
class ParsedCritique:
    """What the critic said, in typed form."""

    case: Case
    pivotal_step: int | None
    summary: list[StepVerdict]
    body: str | None = None  # the correction (splice) or the whole solution (scribe)
    body_kind: str = BodyKind.correction


@dataclass(frozen=True)
class ParseIssue:
    """One problem found while parsing: where, what was expected, what was there."""

    line: int  # 1-based line in the text given to `parse`; 0 when the problem is about the whole text
    expected: str
    found: str = ""

    def __str__(self) -> str:
        where = f"line {self.line}" if self.line else "critique"
        found = f"; found {self.found!r}" if self.found else ""
        return f"{where}: expected {self.expected}{found}"


@dataclass
class CritiqueParseError(ValueError):
    """The text does not follow the critique schema; `issues` says where and how."""

    issues: list[ParseIssue] = field(default_factory=list)

    def __str__(self) -> str:
        return "; ".join(str(i) for i in self.issues) or "unparseable critique"


_THINK_END = re.compile(r"</think>", re.IGNORECASE)
_THINK_START = re.compile(r"<think>", re.IGNORECASE)
_FENCE = re.compile(r"^\s*```[\w-]*\s*$")
_WRAP = re.compile(r"^(?:\*\*|__|`)+|(?:\*\*|__|`)+$")
_LEAD = re.compile(r"^\s*(?:#{1,6}\s*|[-*+>]\s+|\d+[.)]\s+(?=step\b))?", re.IGNORECASE)
_M = r"(?:\*\*|__|`)?"  # optional inline markdown around the schema's own tokens
_CASE = re.compile(rf"^case{_M}(?:\s*[:=-]\s*|\s+){_M}\s*\(?([abcd])\)?{_M}(?![a-z0-9])", re.IGNORECASE)
_PIVOT = re.compile(rf"^pivotal[\s_-]*step{_M}\s*(?::|-|=)?\s*{_M}\s*(.*)$", re.IGNORECASE)
_PIVOT_VALUE = re.compile(r"^(?:step\s*)?(\d+)\b", re.IGNORECASE)
_NO_PIVOT = re.compile(r"^(?:(?:none|n/?a|null|not applicable|no pivotal step)\b.*|-+|—|–)?$", re.IGNORECASE)
_SUMMARY = re.compile(rf"^summary{_M}\s*:?\s*{_M}\s*$", re.IGNORECASE)
_BODY = re.compile(rf"^(correction|corrected solution|solution|feedback){_M}\s*(?::{_M}[ \t]?|$)", re.IGNORECASE)
_STEP_LINE = re.compile(
    rf"^step\s*(\d+){_M}\s*[:.)-]?(?:[^\w\n]|_){{0,12}}?(correct|incorrect|wrong)\b\.?{_M}\.?[ \t]*(.*)$", re.IGNORECASE
)
_STEP_LIKE = re.compile(rf"^step\s*\d+{_M}\s*[:.)-]", re.IGNORECASE)
_NOTE_SEP = re.compile(r"^(?:--+|—|–|-|:|;|,|\.)[ \t]*")
_ANSWER_END = re.compile(r"</answer>", re.IGNORECASE)


def _clean(line: str) -> str:
    """A header or summary line without its decoration: heading marks, bullets, and markdown wrapped around the
    whole line. Markdown inside the line is left to the schema regexes, so notes keep their own characters."""
    s = _LEAD.sub("", line.strip())
    if s[:1] in "*_`":
        s = _WRAP.sub("", s).strip()
    return s


def _reasoning_end(lines: list[str]) -> int:
    """Index of the first line after the model's reasoning (0 if none is marked)."""
    for i in range(len(lines) - 1, -1, -1):
        if _THINK_END.search(lines[i]):
            return i  # the rest of this line is kept (after the tag)
    return 0


def _start(lines: list[str], first: int) -> int | None:
    """The Case header to parse from: the first one followed by a Summary header, else the first one. (The
    correction may itself quote schema lines, so a later header is never preferred.)"""
    cases = [i for i in range(first, len(lines)) if _CASE.match(_clean(lines[i]))]
    if not cases:
        return None
    summaries = [i for i in range(first, len(lines)) if _SUMMARY.match(_clean(lines[i]))]
    with_summary = [i for i in cases if summaries and summaries[-1] > i]
    return (with_summary or cases)[0]


def _parse_note(rest: str) -> str:
    rest = rest.strip()
    if (sep := _NOTE_SEP.match(rest)) is not None:
        return rest[sep.end() :].strip()
    if rest.startswith("(") and rest.endswith(")"):  # "Incorrect (sign error)"
        return rest[1:-1].strip()
    return rest


def _body(lines: list[str], begin: int, first_line_rest: str) -> str:
    text_lines = ([first_line_rest] if first_line_rest.strip() else []) + lines[begin:]
    while text_lines and (_FENCE.match(text_lines[0]) or not text_lines[0].strip()):
        text_lines.pop(0)
    # A fence line ends the body: the critique was fenced, and what follows the fence is prose.
    fence = next((i for i, x in enumerate(text_lines) if _FENCE.match(x)), len(text_lines))
    text = "\n".join(text_lines[:fence])
    ends = list(_ANSWER_END.finditer(text))
    if ends:  # prose after the final answer is not part of the correction
        text = text[: ends[-1].end()]
    return text.strip()


def parse(text: str) -> ParsedCritique:
    """Parse a critic's output (reasoning and decoration allowed); raise `CritiqueParseError` if it is not one."""
    raw = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    lines = list(raw)
    first = _reasoning_end(lines)
    if _THINK_END.search(lines[first] if lines else ""):
        lines[first] = _THINK_END.split(lines[first])[-1]
    elif _THINK_START.search(text) and not _THINK_END.search(text):
        lines = [_THINK_START.sub("", x) for x in lines]
    start = _start(lines, first)
    if start is None:
        raise CritiqueParseError([ParseIssue(0, "a 'Case: A|B|C|D' line")])

    issues: list[ParseIssue] = []
    case_match = _CASE.match(_clean(lines[start]))
    assert case_match is not None
    case = Case(case_match.group(1).upper())
    pivot: int | None = None
    pivot_seen = False
    summary: list[StepVerdict] = []
    summary_seen = False
    body: str | None = None
    body_kind = BodyKind.correction

    i = start + 1
    while i < len(lines):
        line = _clean(lines[i])
        if not line or _FENCE.match(lines[i]):
            i += 1
            continue
        if (m := _BODY.match(line)) is not None:
            body_kind = BodyKind.solution if m.group(1).lower() == "solution" else BodyKind.correction
            rest = line[m.end() :]
            body = _body(lines, i + 1, rest) or None
            if body is None:
                issues.append(ParseIssue(i + 1, f"text after '{m.group(1)}:'", "nothing"))
            break
        if (m := _PIVOT.match(line)) is not None:
            if pivot_seen:
                issues.append(ParseIssue(i + 1, "one 'Pivotal step' line", line))
            pivot_seen = True
            value = m.group(1).strip()
            if (v := _PIVOT_VALUE.match(value)) is not None:
                pivot = int(v.group(1))
            elif not _NO_PIVOT.match(value):
                issues.append(ParseIssue(i + 1, "'Pivotal step: <number>' or 'Pivotal step: none'", value))
        elif _SUMMARY.match(line):
            if summary_seen:
                issues.append(ParseIssue(i + 1, "one 'Summary:' header", line))
            summary_seen = True
        elif (m := _STEP_LINE.match(line)) is not None and summary_seen:
            verdict = Verdict.correct if m.group(2).lower() == "correct" else Verdict.incorrect
            note = _parse_note(m.group(3))
            summary.append(StepVerdict(step=int(m.group(1)), verdict=verdict, note=note))
        elif _CASE.match(line):
            issues.append(ParseIssue(i + 1, "one 'Case:' line", line))
        elif summary_seen and _STEP_LIKE.match(line):
            issues.append(ParseIssue(i + 1, "'Step <i>: Correct' or 'Step <i>: Incorrect -- <reason>'", line))
        # Other prose (before the summary, or after it) is tolerated.
        i += 1

    if not summary_seen:
        issues.append(ParseIssue(0, "a 'Summary:' header followed by one line per step"))
    elif not summary:
        issues.append(ParseIssue(0, "at least one 'Step <i>: ...' line under 'Summary:'"))
    if case in CASES_WITH_PIVOT and pivot is None and not any("Pivotal" in x.expected for x in issues):
        issues.append(ParseIssue(0, f"'Pivotal step: <number>' (case {case.value} names the pivotal step)"))
    if issues:
        raise CritiqueParseError(issues)
    return ParsedCritique(case=case, pivotal_step=pivot, summary=summary, body=body, body_kind=body_kind)


def render_summary(summary: list[StepVerdict]) -> str:
    """The canonical summary block."""
    lines = ["Summary:"]
    for v in summary:
        word = "Correct" if v.verdict is Verdict.correct else "Incorrect"
        note = " ".join(v.note.split())
        lines.append(f"Step {v.step}: {word} -- {note}" if note else f"Step {v.step}: {word}")
    return "\n".join(lines)


def render(critique: ParsedCritique) -> str:
    """The canonical text of a critique."""
    lines = [f"Case: {critique.case.value}"]
    if critique.pivotal_step is not None:
        lines.append(f"Pivotal step: {critique.pivotal_step}")
    lines.append(render_summary(critique.summary))
    if critique.body is not None:
        lines.append(f"{critique.body_kind}:")
        lines.append(critique.body)
    return "\n".join(lines)


@dataclass(frozen=True)
class SchemaLimits:
    """Bounds of the structured-output regex: they cap how long a critique can be."""

    max_note_chars: int = 200
    max_step_chars: int = 1500
    max_body_steps: int = 40
    max_answer_chars: int = 200


def schema_regex(n_steps: int, *, body_kind: str = BodyKind.correction, limits: SchemaLimits | None = None) -> str:
    """A regex of canonical critiques of an `n_steps`-step solution, for structured outputs after `</think>`.

    It pins the shape: the headers, one summary line per step in order, a body of `<step_k>` blocks (none in a
    correction that only deletes the last steps) ending in `<answer>\\boxed{...}</answer>`. Which case and which
    step are right is left to semantic validation. Step text may hold any character except the start of a closing
    tag (`</`), which keeps the regex free of look-arounds that grammar backends do not support.
    """
    lim = limits or SchemaLimits()
    note = rf"( -- [^\s][^\n]{{0,{lim.max_note_chars - 1}}})?"
    summary = r"\n".join(rf"Step {i}: (Correct|Incorrect){note}" for i in range(1, n_steps + 1))
    pivot = r"(Pivotal step: [1-9][0-9]{0,2}\n)?"
    step = rf"<step_[1-9][0-9]{{0,2}}>([^<]|<[^/]){{1,{lim.max_step_chars}}}</step_[1-9][0-9]{{0,2}}>\n"
    answer = rf"<answer>\\boxed\{{[^\n]{{1,{lim.max_answer_chars}}}\}}</answer>"
    # A correction may be the answer alone (case D deleting superfluous last steps); a scribe solution has steps.
    fewest = 0 if body_kind == BodyKind.correction else 1
    body = rf"(\n{body_kind}:\n({step}){{{fewest},{lim.max_body_steps}}}{answer})?"
    return rf"Case: [ABCD]\n{pivot}Summary:\n{summary}{body}"


_FIRST_STEP = re.compile(r"<step[_ ]?(\d+)>", re.IGNORECASE)


def first_correction_step(body: str | None) -> int | None:
    """The number of the first `<step_k>` tag in a correction (None if it has none)."""
    m = _FIRST_STEP.search(body or "")
    return int(m.group(1)) if m else None


# --- Semantic validation (DESIGN.md rules 1-5), as pure functions returning one CheckResult each. ---


def _correction_start_problem(c: ParsedCritique) -> str | None:
    """Splice mode: where a correction may start. D and B take over at the pivotal step N itself; C may start
    earlier (at F <= N) to compress the student's steps F..N-1, the student having run out of room."""
    n = c.pivotal_step
    if c.case not in CASES_WITH_PIVOT or n is None or c.body is None:
        return None
    first = first_correction_step(c.body)
    if first is None and c.case is Case.D:
        # Case D with only the answer deletes steps N..: the student had the result at step N-1 and went on with
        # superfluous, wrong steps (e.g. an extra operation after the chain ended).
        return None
    if first is None:
        return f"the correction has no <step_k> block; it must start with <step_{n}>"
    if c.case is Case.C:
        if not 1 <= first <= n:
            return f"case C correction starts at <step_{first}>; it may start at <step_1> to <step_{n}>"
    elif first != n:
        return (
            f"case {c.case.value} correction starts at <step_{first}>, but it must start at the pivotal step <step_{n}>"
        )
    return None


def check_structure(c: ParsedCritique, n_steps: int, *, scribe: bool = False) -> CheckResult:
    """Rule 1: pivotal step present iff the case needs one, within 1..n_steps; a body iff one is due."""
    problems = []
    if c.case in CASES_WITH_PIVOT:
        if c.pivotal_step is None:
            problems.append(f"case {c.case.value} needs a pivotal step")
        elif not 1 <= c.pivotal_step <= n_steps:
            problems.append(f"pivotal step {c.pivotal_step} is outside 1..{n_steps}")
    elif c.pivotal_step is not None:
        problems.append(f"case A has no pivotal step, got {c.pivotal_step}")
    needs_body = scribe or c.case in CASES_WITH_PIVOT
    if needs_body and c.body is None:
        what = "the whole faithful-scribe solution ('Solution:')" if scribe else "a 'Correction:'"
        problems.append(f"case {c.case.value} needs {what}")
    if not needs_body and c.body is not None:
        problems.append("case A takes no correction")
    if not scribe and c.pivotal_step is not None and 1 <= c.pivotal_step <= n_steps:
        start = _correction_start_problem(c)
        if start is not None:
            problems.append(start)
    return CheckResult(rule="structure", passed=not problems, detail="; ".join(problems))


def check_summary(c: ParsedCritique, n_steps: int) -> CheckResult:
    """Rule 2: one summary line per student step, in order; D: steps before N correct, N incorrect; A: all correct."""
    problems = []
    numbers = [v.step for v in c.summary]
    if numbers != list(range(1, n_steps + 1)):
        problems.append(f"summary lists steps {numbers}, expected 1..{n_steps} in order, once each")
    verdicts = {v.step: v.verdict for v in c.summary}
    if c.case is Case.A:
        wrong = [s for s, v in verdicts.items() if v is Verdict.incorrect]
        if wrong:
            problems.append(f"case A but steps {wrong} are marked Incorrect")
    if c.case is Case.D and c.pivotal_step is not None:
        n = c.pivotal_step
        early = [s for s, v in verdicts.items() if s < n and v is Verdict.incorrect]
        if early:
            problems.append(f"case D with pivotal step {n}, but earlier steps {early} are marked Incorrect")
        if verdicts.get(n) is Verdict.correct:
            problems.append(f"case D: pivotal step {n} must be marked Incorrect")
    return CheckResult(rule="summary", passed=not problems, detail="; ".join(problems))


def expected_cases(check: AnswerCheck) -> frozenset[Case] | None:
    """The cases the deterministic answer check allows; None when it decided nothing."""
    return {
        AnswerStatus.no_answer: frozenset({Case.C}),
        AnswerStatus.not_equivalent: frozenset({Case.D}),
        AnswerStatus.equivalent: frozenset({Case.A, Case.B}),
    }.get(check.status)


def check_case_vs_answer(c: ParsedCritique, check: AnswerCheck) -> CheckResult:
    """Rule 3: no final answer -> C; not equivalent -> D; equivalent -> A or B; undecided is reported, not guessed."""
    allowed = expected_cases(check)
    if allowed is None:
        return CheckResult(
            rule="case_vs_answer", passed=None, detail=f"answer check {check.status.value}: case not checked"
        )
    if c.case in allowed:
        return CheckResult(rule="case_vs_answer", passed=True)
    names = " or ".join(sorted(a.value for a in allowed))
    return CheckResult(
        rule="case_vs_answer",
        passed=False,
        detail=f"case {c.case.value}, but the answer check says {check.status.value}, which means case {names}",
    )


def correction_answer(c: ParsedCritique) -> str | None:
    """The final boxed answer of the critique's body, if it has one."""
    return last_boxed(c.body) if c.body is not None else None


def check_correction_answer(c: ParsedCritique, check: AnswerCheck | None) -> CheckResult:
    """Rule 4: a correction (B, C, D) ends in a boxed answer equivalent to the reference.
    `check` compares `correction_answer(c)` with the reference; None when the critique has no body."""
    if c.case not in CASES_WITH_PIVOT:
        return CheckResult(rule="correction_answer", passed=True, detail="no correction for case A")
    if check is None or check.status is AnswerStatus.no_answer:
        return CheckResult(rule="correction_answer", passed=False, detail="the correction has no \\boxed{} answer")
    if check.status in (AnswerStatus.undecided, AnswerStatus.no_reference):
        return CheckResult(rule="correction_answer", passed=None, detail=f"answer check {check.status.value}")
    if check.status is AnswerStatus.not_equivalent:
        return CheckResult(
            rule="correction_answer",
            passed=False,
            detail=f"the correction ends in {check.student_answer!r}, not the reference {check.reference_answer!r}",
        )
    return CheckResult(rule="correction_answer", passed=True)


def check_fidelity(score: float, threshold: float, case: Case | None = None) -> CheckResult:
    """Rule 5 (scribe mode): the share of the steps the case keeps that were copied verbatim meets the threshold.
    Case C is exempt (reported, not required): the critic may compress a student who ran out of room."""
    if case is Case.C:
        return CheckResult(
            rule="fidelity", passed=None, detail=f"case C may compress the student's steps ({score:.0%} copied)"
        )
    ok = score >= threshold
    detail = "" if ok else f"only {score:.0%} of the student's steps that the case keeps were copied verbatim"
    return CheckResult(rule="fidelity", passed=ok, detail=detail + (f" (need {threshold:.0%})" if not ok else ""))


def failures(results: list[CheckResult]) -> list[CheckResult]:
    """The results that failed (undecided ones are reported, not failures)."""
    return [r for r in results if r.passed is False]
