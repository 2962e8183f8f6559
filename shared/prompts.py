"""Versioned prompt templates: the critic (splice and scribe), the student, and the two teachers.

Each template's `version` is a hash of its text, so a critique or a training run records exactly which wording
produced it, and the critic's result cache is keyed by it. Templates use `$name` placeholders (string.Template)
because the texts themselves are full of LaTeX braces.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from string import Template

from shared.schemas import FeedbackMode


class PromptError(KeyError):
    """A template was rendered without one of its fields."""


@dataclass(frozen=True)
class PromptTemplate:
    """A named template whose version is a stable hash of its text."""

    name: str
    text: str

    @property
    def version(self) -> str:
        return hashlib.sha256(f"{self.name}\n{self.text}".encode()).hexdigest()[:12]

    @property
    def fields(self) -> frozenset[str]:
        return frozenset(
            m.group("named") or m.group("braced")
            for m in Template.pattern.finditer(self.text)
            if m.group("named") or m.group("braced")
        )

    def render(self, **values: str) -> str:
        missing = sorted(self.fields - values.keys())
        if missing:
            raise PromptError(f"prompt {self.name!r} needs {missing}; got {sorted(values)}")
        return Template(self.text).substitute(values)


_CRITIC_RULES = """You are a meticulous mathematics grader acting as a faithful scribe. You receive a problem, a \
reference (a final answer and often a worked solution) and a student's solution split into numbered steps. You \
judge the student's work step by step and write feedback that stays as close to the student's own work as possible.

Decide the case, in this order:
- C: the student never states a final answer (the solution stops early). The pivotal step is the first wrong \
step if there is one, otherwise the last step the student wrote.
- D: the student's final answer is not equivalent to the reference. The pivotal step is the first step that is \
wrong: the earliest step whose claim is false or does not follow from the problem and the steps before it. Every \
step before it is correct.
- B: the final answer is right, but one step that is not routine is unjustified or invalid. The pivotal step is \
that step.
- A: the final answer is right and every step is correct. There is no pivotal step.

Judge each step on its own mathematics, not on its style. A step that only repeats or follows from an earlier \
error is Incorrect too. A Correct step needs no explanation; an Incorrect one gets a short phrase naming the error.

Write your answer in exactly this format, and nothing after it:

Case: <A, B, C or D>
Pivotal step: <number>            (omit this line for case A)
Summary:
Step 1: Correct
Step 2: Incorrect -- <what is wrong, in a few words>
...                               (one line per student step, in order, for every step)
$body_spec"""

_SPLICE_BODY = """Correction:                       (omit this section for case A)
<step_N>the corrected step N, in the student's notation and at the student's level of detail</step_N>
<step_N+1>...the continuation, in the same style, up to the right answer...</step_N+1>
<answer>\\boxed{<the reference answer>}</answer>

The student's steps before the pivotal step N are copied from the student's text automatically, so never repeat \
them. What the correction holds depends on the case:
- D: the corrected step N, then the continuation to the right answer.
- B: only the fixed or justified step N, numbered N (with any missing step you insert right before or after it, \
numbered on from N). The student's steps after it are copied after your correction automatically, renumbered if \
you inserted a step. If the summary marks several steps Incorrect, your correction replaces the steps from N to \
the last Incorrect one.
- C: the completion from step N to the answer, in few steps. The student ran out of room, so you may also \
compress the student's correct work: start your correction at an earlier step F (1 <= F <= N) with a condensed \
version of the student's steps F to N-1; then only the student's steps 1 to F-1 are copied."""

_SCRIBE_BODY = """Solution:
<step_1>...</step_1>
...
<answer>\\boxed{<the reference answer>}</answer>

The solution is the student's solution as a faithful scribe would write it: copy every step before the pivotal \
step exactly, character for character; rewrite step N correctly, in the student's notation; then continue to the \
right answer in the student's style. For case A copy the whole solution exactly. For case B fix or justify only \
step N (inserting a missing step if needed) and copy every other step exactly, the steps after N included. For \
case C the student ran out of room: you may compress the correct steps before N into fewer steps, then finish."""

_CRITIC_USER = """Problem:
$problem

Reference:
$reference

Student's solution ($n_steps steps):
$student_steps

Student's final answer: $student_answer

Critique the student's solution in the required format."""

CRITIC_SYSTEM = {
    FeedbackMode.splice: PromptTemplate(
        "critic-system-splice", Template(_CRITIC_RULES).safe_substitute(body_spec=_SPLICE_BODY)
    ),
    FeedbackMode.scribe: PromptTemplate(
        "critic-system-scribe", Template(_CRITIC_RULES).safe_substitute(body_spec=_SCRIBE_BODY)
    ),
}
CRITIC_USER = PromptTemplate("critic-user", _CRITIC_USER)

CRITIC_RETRY = PromptTemplate(
    "critic-retry",
    """Your critique was rejected because:
$errors

Write the whole critique again in the required format, fixing these problems.""",
)

STUDENT = PromptTemplate(
    "student",
    """$problem

Solve the problem step by step. Put each step in its own tags, <step_1>...</step_1>, <step_2>...</step_2>, and so \
on, then give the final answer as <answer>\\boxed{...}</answer>.""",
)

TEACHER_STEPALIGN = PromptTemplate(
    "teacher-stepalign",
    """$problem

An expert reviewed an attempt at this problem and wrote this feedback:
=== Feedback Begin ===
$feedback
=== Feedback End ===

Use what the feedback shows to solve the problem yourself. Write a complete, self-contained solution as if it \
were your first attempt: never mention the feedback, an expert or an earlier attempt. Put each step in its own \
tags, <step_1>...</step_1>, <step_2>...</step_2>, and so on, then give the final answer as \
<answer>\\boxed{...}</answer>.""",
)

TEACHER_REFSOL = PromptTemplate(
    "teacher-refsol",
    """$problem

Here is a reference solution to this problem:
=== Reference Solution Begin ===
$reference_solution
=== Reference Solution End ===

Read the reference solution and understand each step, then solve the problem in your own words: do not copy or \
paraphrase the reference, and reach the same final answer. Put each step in its own tags, <step_1>...</step_1>, \
<step_2>...</step_2>, and so on, then give the final answer as <answer>\\boxed{...}</answer>.""",
)


def critic_prompt_version(mode: FeedbackMode) -> str:
    """One version for everything the critic sees in `mode` (system, user and retry templates)."""
    parts = [CRITIC_SYSTEM[mode].version, CRITIC_USER.version, CRITIC_RETRY.version]
    return hashlib.sha256("/".join(parts).encode()).hexdigest()[:12]


def format_reference(reference_answer: str | None, reference_solution: str | None) -> str:
    """The reference block of the critic prompt."""
    lines = []
    if reference_solution:
        lines.append(f"Worked solution:\n{reference_solution}")
    if reference_answer:
        lines.append(f"Final answer: {reference_answer}")
    return "\n\n".join(lines)


NO_FINAL_ANSWER = "none (the solution ends without a final answer)"


def format_student_answer(answer: str | None) -> str:
    """The student's final answer as written (the content of its <answer> block), or a plain statement that
    there is none: the critic's case rules (C: no answer, D: a wrong one) depend on it."""
    if answer is None or not answer.strip():
        return NO_FINAL_ANSWER
    return answer.strip()


def format_student_steps(steps: Sequence[str]) -> str:
    """The student's steps as the critic sees them: one tagged block per step."""
    return "\n".join(f"<step_{i}>{s}</step_{i}>" for i, s in enumerate(steps, start=1))


def critic_messages(
    *,
    problem: str,
    steps: Sequence[str],
    student_answer: str | None,
    reference_answer: str | None,
    reference_solution: str | None,
    mode: FeedbackMode = FeedbackMode.splice,
    previous: Sequence[tuple[str, Sequence[str]]] = (),
) -> list[dict[str, str]]:
    """Chat messages for one critique; `student_answer` is the student's final answer as written (None: there is
    none); `previous` holds (rejected output, its errors) of earlier attempts."""
    user = CRITIC_USER.render(
        problem=problem,
        reference=format_reference(reference_answer, reference_solution),
        n_steps=str(len(steps)),
        student_steps=format_student_steps(steps),
        student_answer=format_student_answer(student_answer),
    )
    messages = [
        {"role": "system", "content": CRITIC_SYSTEM[mode].render()},
        {"role": "user", "content": user},
    ]
    for output, errors in previous:
        messages.append({"role": "assistant", "content": output})
        messages.append({"role": "user", "content": CRITIC_RETRY.render(errors="\n".join(f"- {e}" for e in errors))})
    return messages


def student_prompt(problem: str) -> str:
    """The student's (thinking-off) prompt."""
    return STUDENT.render(problem=problem)


def teacher_prompt(condition: str, *, problem: str, feedback: str = "", reference_solution: str = "") -> str:
    """The self-teacher's prompt for a condition: 'stepalign' (critic feedback) or 'refsol' (reference solution)."""
    if condition == "stepalign":
        return TEACHER_STEPALIGN.render(problem=problem, feedback=feedback)
    if condition == "refsol":
        return TEACHER_REFSOL.render(problem=problem, reference_solution=reference_solution)
    raise PromptError(f"no teacher prompt for condition {condition!r}; expected 'stepalign' or 'refsol'")
