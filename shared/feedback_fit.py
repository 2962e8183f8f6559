"""Fit a critique's faithful-scribe feedback into a teacher-context token budget without cutting the correction.

The paper lets the critic compress a student who ran out of room (case C); a truncated 2,048-token rollout makes a
feedback longer than any sensible teacher budget when its correct steps are copied whole. So when the feedback is
over budget, it is compressed in this order, each stage only as far as needed:

1. elide: the leading steps of the solution that are verbatim copies of the student's own steps are replaced by
   one line, `[Steps 1-k: the student's own steps, all correct, left out for length]`; the copies closest to the
   pivotal step stay (they are the teacher's anchor), and the critic's own words are never elided;
2. the summary's runs of `Step i: Correct` lines become `Steps a-b: Correct`;
3. only if it still does not fit does the caller cut the end (reported as `over_budget`).

Token counts come from the caller (`count`), so the same function serves any tokenizer.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from shared.steps import SegmentationError, segment

SOLUTION_HEADER = "\n\nSolution:\n"
_CORRECT = re.compile(r"^Step (\d+): Correct$")


@dataclass(frozen=True)
class FittedFeedback:
    """The feedback as it will enter the teacher prompt, and what was done to fit it."""

    text: str
    tokens: int
    elided_steps: int = 0  # leading copied student steps replaced by one line
    summary_compressed: bool = False
    over_budget: bool = False  # still too long: the caller must cut it (the correction may then be cut)


def elision_line(k: int) -> str:
    what = (
        "Step 1: the student's own step, correct," if k == 1 else f"Steps 1-{k}: the student's own steps, all correct,"
    )
    return f"[{what} left out for length]"


def compress_summary(summary: str) -> str:
    """Runs of two or more consecutive `Step i: Correct` lines as one `Steps a-b: Correct` line."""
    out: list[str] = []
    run: list[int] = []

    def flush() -> None:
        if len(run) >= 2:
            out.append(f"Steps {run[0]}-{run[-1]}: Correct")
        elif run:
            out.append(f"Step {run[0]}: Correct")
        run.clear()

    for line in summary.split("\n"):
        m = _CORRECT.match(line)
        if m and (not run or int(m.group(1)) == run[-1] + 1):
            run.append(int(m.group(1)))
            continue
        flush()
        if m:
            run.append(int(m.group(1)))
        else:
            out.append(line)
    flush()
    return "\n".join(out)


def copied_lead(solution: str, student_steps: Sequence[str]) -> list[int]:
    """Start offsets of the `<step_k>` tags of the solution's leading steps that are verbatim copies of the
    student's steps 1, 2, ... (at most all but the last step of the solution, which always stays)."""
    try:
        seg = segment(solution)
    except SegmentationError:
        return []
    starts: list[int] = []
    for i, step in enumerate(seg.steps[:-1]):
        if i >= len(student_steps) or step.text != student_steps[i]:
            break
        starts.append(solution.rfind("<step", 0, step.start))
    if starts:
        # The tag of the first step that stays: where the kept text begins.
        nxt = seg.steps[len(starts)]
        starts.append(solution.rfind("<step", 0, nxt.start))
    return starts


def fit_feedback(
    feedback: str, student_steps: Sequence[str], count: Callable[[str], int], budget: int
) -> FittedFeedback:
    """`feedback` (summary + "Solution:" + solution, as `shared.scribe.render_feedback` writes it) within `budget`
    tokens, compressed as the module docstring says; the correction is never touched here."""
    tokens = count(feedback)
    if tokens <= budget:
        return FittedFeedback(feedback, tokens)
    summary, sep, solution = feedback.partition(SOLUTION_HEADER)
    if not sep:
        return FittedFeedback(feedback, tokens, over_budget=True)
    tags = copied_lead(solution, student_steps)

    def build(head: str, k: int) -> str:
        if k == 0:
            return f"{head}{SOLUTION_HEADER}{solution}"
        return f"{head}{SOLUTION_HEADER}{elision_line(k)}\n{solution[tags[k] :]}"

    best = FittedFeedback(feedback, tokens, over_budget=True)
    for head, compressed in ((summary, False), (compress_summary(summary), True)):
        if compressed and head == summary:
            continue
        most = max(0, len(tags) - 1)
        text = build(head, most)
        n = count(text)
        if n > budget:
            best = FittedFeedback(text, n, elided_steps=most, summary_compressed=compressed, over_budget=True)
            continue
        # The fewest elided steps that fit (token counts grow with every step kept): a binary search.
        lo, hi = 0, most
        while lo < hi:
            mid = (lo + hi) // 2
            if count(build(head, mid)) <= budget:
                hi = mid
            else:
                lo = mid + 1
        text = build(head, lo)
        return FittedFeedback(text, count(text), elided_steps=lo, summary_compressed=compressed)
    return best
